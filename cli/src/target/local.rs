//! The verbs against a local `wasmless up`, through its admin listener (see `up/api.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use reqwest::{Method, StatusCode};

use wasmless_api::admin::{self, ErrorBody, FunctionState, ManifestEntry, UpInfo};
use wasmless_api::function::{API_VERSION, DEFAULT_NAMESPACE, KIND, Metadata, Phase, SourceStatus};
use wasmless_api::{FunctionKey, FunctionManifest, address};

use super::{Answer, Call, Cursors, Desired, LogLine, Progress, View, already_exists, not_found};

pub struct Local {
    admin: String,
    namespace: String,
    http: reqwest::Client,
}

impl Local {
    pub fn new(admin: &str, namespace: Option<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self {
            admin: admin.trim_end_matches('/').to_string(),
            namespace: namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
            http,
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        let cause = super::root_cause(&e);
        anyhow!(
            "no wasmless up answering at {} ({cause}): start `wasmless up`, or pass --local=ADMIN_URL",
            self.admin
        )
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<(StatusCode, Vec<u8>)> {
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.unreachable(e))?;
        Ok((status, body.to_vec()))
    }

    async fn admin(&self, method: Method, path: &str) -> anyhow::Result<(StatusCode, Vec<u8>)> {
        self.send(self.http.request(method, format!("{}{path}", self.admin)))
            .await
    }

    /// GET an admin route that answers JSON.
    async fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let (status, body) = self.admin(Method::GET, path).await?;
        if !status.is_success() {
            bail!(
                "{}{path} answered {status}: is this a `wasmless up` of this version?",
                self.admin
            );
        }
        serde_json::from_slice(&body).with_context(|| format!("{}{path}: not JSON", self.admin))
    }

    async fn functions_url(&self) -> anyhow::Result<String> {
        let info: UpInfo = self.json(admin::UP_INFO_PATH).await?;
        // An unspecified bind address is reachable on loopback.
        Ok(info
            .functions
            .replace("0.0.0.0", "127.0.0.1")
            .replace("[::]", "[::1]"))
    }

    fn function_path(key: &FunctionKey) -> String {
        format!("/functions/{}/{}", key.namespace, key.name)
    }

    pub async fn apply(&self, desired: &Desired, create: bool) -> anyhow::Result<()> {
        let key = &desired.key;
        if !desired.labels.is_empty() {
            tracing::warn!("labels apply in a cluster; wasmless up does not keep them");
        }
        let manifest = FunctionManifest {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            metadata: Metadata {
                name: key.name.clone(),
                namespace: Some(key.namespace.clone()),
            },
            spec: desired.spec.clone(),
        };
        let precondition = if create { "if-none-match" } else { "if-match" };
        let request = self
            .http
            .put(format!("{}{}", self.admin, Self::function_path(key)))
            .header(precondition, "*")
            .json(&manifest);
        let (status, body) = self.send(request).await?;
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::PRECONDITION_FAILED => Err(already_exists(key)),
            StatusCode::NOT_FOUND => Err(not_found(key)),
            _ => Err(refused(status, &body)),
        }
    }

    async fn statuses(&self) -> anyhow::Result<BTreeMap<FunctionKey, SourceStatus>> {
        let list: Vec<FunctionState> = self.json(admin::STATUS_PATH).await?;
        Ok(list
            .into_iter()
            .map(|s| (FunctionKey::new(&s.namespace, &s.name), s.status))
            .collect())
    }

    pub async fn progress(&self, key: &FunctionKey) -> anyhow::Result<Progress> {
        let status = self.statuses().await?.remove(key).unwrap_or_default();
        Ok(match status.phase {
            Phase::Ready => Progress::Ready {
                url: Some(self.url(key).await?),
                artifact: None,
            },
            Phase::Failed => Progress::Failed(status.message),
            Phase::Building => Progress::Waiting("building".into()),
            Phase::Loading => Progress::Waiting("loading".into()),
            Phase::Pending => Progress::Waiting("pending".into()),
        })
    }

    async fn url(&self, key: &FunctionKey) -> anyhow::Result<String> {
        Ok(format!(
            "{}{}",
            self.functions_url().await?,
            address::path(key)
        ))
    }

    pub async fn get(&self, key: &FunctionKey) -> anyhow::Result<Option<View>> {
        let all = self.list(Some(&key.namespace)).await?;
        Ok(all.into_iter().find(|v| &v.key == key))
    }

    pub async fn list(&self, namespace: Option<&str>) -> anyhow::Result<Vec<View>> {
        let listed: Vec<ManifestEntry> = self.json(admin::UP_MANIFESTS_PATH).await?;
        let mut statuses = self.statuses().await?;
        let functions = self.functions_url().await?;
        let mut views = Vec::new();
        for ManifestEntry { manifest, origin } in listed {
            let key = manifest.key();
            if namespace.is_some_and(|ns| ns != key.namespace) {
                continue;
            }
            let status = statuses.remove(&key).unwrap_or_default();
            let url = format!("{functions}{}", address::path(&key));
            let mut raw = serde_json::to_value(&manifest).unwrap_or_default();
            raw["status"] = serde_json::json!({
                "phase": status.phase,
                "message": status.message,
                "serving": status.serving,
                "url": url,
            });
            views.push(View {
                key,
                labels: BTreeMap::new(),
                spec: manifest.spec,
                phase: format!("{:?}", status.phase),
                message: status.message,
                url: Some(url),
                artifact: status.serving,
                origin,
                raw,
            });
        }
        views.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(views)
    }

    pub async fn delete(&self, key: &FunctionKey) -> anyhow::Result<()> {
        let (status, body) = self
            .admin(Method::DELETE, &Self::function_path(key))
            .await?;
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(not_found(key)),
            _ => Err(refused(status, &body)),
        }
    }

    pub async fn call(&self, key: &FunctionKey, call: Call) -> anyhow::Result<Answer> {
        // The URL ends with `/`, the function's path starts with one.
        let url = format!(
            "{}{}",
            self.url(key).await?,
            call.path.as_str().trim_start_matches('/')
        );
        let request = self
            .http
            .request(call.method, url)
            .headers(call.headers)
            .body(call.body);
        let (status, body) = self.send(request).await?;
        Ok(Answer { status, body })
    }

    pub async fn logs(
        &self,
        key: &FunctionKey,
        cursors: &mut Cursors,
    ) -> anyhow::Result<Vec<LogLine>> {
        let since = cursors.get("up").copied().unwrap_or(0);
        let path = format!("{}?since={since}", admin::logs_path(key));
        let (status, body) = self.admin(Method::GET, &path).await?;
        if status == StatusCode::NOT_FOUND {
            // No buffer yet: the function has not loaded, or does not exist.
            return match self.get(key).await? {
                Some(_) => Ok(Vec::new()),
                None => Err(not_found(key)),
            };
        }
        if !status.is_success() {
            return Err(refused(status, &body));
        }
        let lines: Vec<LogLine> = serde_json::from_slice(&body).context("logs are not JSON")?;
        if let Some(last) = lines.last() {
            cursors.insert("up".into(), last.seq);
        }
        Ok(lines)
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        let (status, body) = self.admin(Method::GET, "/metrics").await?;
        if !status.is_success() {
            return Err(refused(status, &body));
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

/// The `{"error": …}` of an admin answer as one line.
fn refused(status: StatusCode, body: &[u8]) -> anyhow::Error {
    let message = ErrorBody::message_of(body)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    anyhow!("{message} (HTTP {})", status.as_u16())
}
