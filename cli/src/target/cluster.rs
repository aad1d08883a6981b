//! The verbs against a cluster: Functions through the API, calls through the API server's
//! service proxy (as Kubeless did, so it works from a laptop; the pods proxy for hosts in
//! another namespace), logs and metrics through the pods
//! proxy to each host's admin port.

use std::time::Duration;

use anyhow::{Context, anyhow};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};

use wasmless_api::admin::{self, FunctionInfo};
use wasmless_api::cluster::{PORT_NAME, SERVICE_NAME_LABEL, TOKEN_SECRET_ANNOTATION, admin_port};
use wasmless_api::function::{Function, Phase};
use wasmless_api::{FunctionKey, Sha256Digest, address};
use wasmless_runtime::token;

use super::{Answer, Call, Cursors, Desired, LogLine, Progress, TargetArgs, View, already_exists};

/// A running host pod, reached through the API server's proxy (`logs`, `top`, `deploy`'s
/// wait).
struct ProxiedHost {
    /// `namespace/name`.
    name: String,
    /// The API path of its admin port's proxy.
    prefix: String,
    token: Option<String>,
}

pub struct Cluster {
    client: Client,
    url: String,
    namespace: String,
    host_selector: String,
}

impl Cluster {
    pub async fn connect(args: &TargetArgs) -> anyhow::Result<Self> {
        let options = KubeConfigOptions {
            context: args.context.clone(),
            ..KubeConfigOptions::default()
        };
        let loaded = match &args.kubeconfig {
            Some(path) => match Kubeconfig::read_from(path) {
                Ok(kc) => Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            None if args.context.is_some() => Config::from_kubeconfig(&options)
                .await
                .map_err(|e| e.to_string()),
            None => Config::infer().await.map_err(|e| e.to_string()),
        };
        let mut config = loaded.map_err(|e| {
            anyhow!(
                "no cluster configured ({e}): set KUBECONFIG or --context, or start `wasmless up` and pass --local"
            )
        })?;
        config.connect_timeout = Some(Duration::from_secs(10));
        // A command answers at once; kube's retries would also re-send a call to a function that
        // itself answers 503 (or 429), for minutes.
        config.default_retry = false;
        let url = config.cluster_url.to_string();
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).context("cannot set up the Kubernetes client")?;
        Ok(Self {
            client,
            url,
            namespace,
            host_selector: args.host_selector.clone(),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn functions(&self, namespace: &str) -> Api<Function> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// One line for any failed API call: the server's own message, or that nothing answered.
    fn error(&self, e: kube::Error) -> anyhow::Error {
        match e {
            kube::Error::Api(s)
                if s.code == 404 && s.message.contains("could not find the requested resource") =>
            {
                anyhow!(
                    "the Function CRD is not installed at {}: kubectl apply -f charts/wasmless/crds/functions.yaml",
                    self.url
                )
            }
            kube::Error::Api(s) => anyhow!("{} (HTTP {})", s.message, s.code),
            other => {
                let cause = super::root_cause(&other);
                anyhow!(
                    "no cluster reachable at {} ({cause}): check KUBECONFIG and --context, or start `wasmless up` and pass --local",
                    self.url
                )
            }
        }
    }

    pub async fn apply(&self, desired: &Desired, create: bool) -> anyhow::Result<Option<i64>> {
        let key = &desired.key;
        let api = self.functions(&key.namespace);
        let mut function = if create {
            let mut f = Function::new(&key.name, desired.spec.clone());
            f.metadata.namespace = Some(key.namespace.clone());
            f
        } else {
            let mut f = api
                .get_opt(&key.name)
                .await
                .map_err(|e| self.error(e))?
                .ok_or_else(|| super::not_found(key))?;
            f.spec = desired.spec.clone();
            f
        };
        function.metadata.labels = Some(desired.labels.clone()).filter(|l| !l.is_empty());
        let written = if create {
            api.create(&PostParams::default(), &function).await
        } else {
            // The read's resourceVersion makes a concurrent change fail rather than vanish.
            api.replace(&key.name, &PostParams::default(), &function)
                .await
        };
        match written {
            Ok(f) => Ok(f.metadata.generation),
            Err(kube::Error::Api(s)) if s.is_already_exists() => Err(already_exists(key)),
            Err(e) => Err(self.error(e)),
        }
    }

    pub async fn progress(
        &self,
        key: &FunctionKey,
        generation: Option<i64>,
    ) -> anyhow::Result<Progress> {
        let f = self
            .functions(&key.namespace)
            .get_opt(&key.name)
            .await
            .map_err(|e| self.error(e))?
            .ok_or_else(|| super::not_found(key))?;
        let status = f.status.unwrap_or_default();
        let current = status.observed_generation >= generation;
        Ok(match (current, status.phase) {
            (true, Phase::Ready) => Progress::Ready {
                url: status.url,
                artifact: status.artifact.map(|a| a.revision()),
            },
            (true, Phase::Failed) => Progress::Failed(built_message(&status.conditions)),
            (_, Phase::Building) => Progress::Waiting("building".into()),
            (true, Phase::Loading) => Progress::Waiting("loading".into()),
            _ => Progress::Waiting("pending".into()),
        })
    }

    pub async fn get(&self, key: &FunctionKey) -> anyhow::Result<Option<View>> {
        let found = self
            .functions(&key.namespace)
            .get_opt(&key.name)
            .await
            .map_err(|e| self.error(e))?;
        Ok(found.map(view))
    }

    pub async fn list(&self, namespace: Option<&str>) -> anyhow::Result<Vec<View>> {
        let api = match namespace {
            Some(ns) => self.functions(ns),
            None => Api::all(self.client.clone()),
        };
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| self.error(e))?;
        Ok(list.items.into_iter().map(view).collect())
    }

    pub async fn delete(&self, key: &FunctionKey) -> anyhow::Result<()> {
        match self
            .functions(&key.namespace)
            .delete(&key.name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_not_found() => Err(super::not_found(key)),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Whether every running host serves `artifact` (hosts that cannot be asked are skipped).
    pub async fn serving(
        &self,
        key: &FunctionKey,
        artifact: &Sha256Digest,
    ) -> anyhow::Result<bool> {
        let hosts = match self.hosts().await {
            Ok(hosts) => hosts,
            Err(e) => {
                tracing::warn!("{e:#}");
                return Ok(true);
            }
        };
        for host in hosts {
            let answer = self.host_get(&host, admin::FUNCTIONS_PATH).await?;
            let Ok(loaded) = serde_json::from_slice::<Vec<FunctionInfo>>(&answer.body) else {
                tracing::warn!(host = %host.name, status = %answer.status, "cannot list its functions");
                continue;
            };
            let serves = loaded.iter().any(|f| {
                f.namespace == key.namespace && f.name == key.name && f.revision == *artifact
            });
            if !serves {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Through `services/<name>:http-function-port/proxy`, as Kubeless did; the host routes by
    /// the `/fn/<namespace>/<name>/` path, since the proxy's Host header names the pod. The
    /// service proxy only proxies to pods in the Service's own namespace, so a function whose
    /// hosts all run elsewhere is called through the pods proxy of one of them. Which of the two
    /// is read from the function's EndpointSlices, before the call, which also lets a new
    /// Service's endpoints arrive instead of failing on the proxy's "no endpoints" 503.
    pub async fn call(&self, key: &FunctionKey, call: Call) -> anyhow::Result<Answer> {
        // A just-created Service gets its endpoints within seconds: wait that long for them.
        let started = std::time::Instant::now();
        loop {
            let path = match self.route(key).await? {
                Some(path) => path,
                None if started.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                None => anyhow::bail!(
                    "no wasmless host serves {key} (its Service has no ready endpoints): is wasmless-host running and ready?"
                ),
            };
            // The route ends with `/`, the function's path starts with one.
            let path = format!("{path}{}", call.path.as_str().trim_start_matches('/'));
            return self.send(request(&path, &call)?).await;
        }
    }

    /// The API path that reaches `key`: its Service's proxy when a ready host is in its
    /// namespace (or when its EndpointSlices cannot be read: the proxy then decides), else the
    /// pods proxy of a ready host elsewhere; `None` when no host is ready.
    async fn route(&self, key: &FunctionKey) -> anyhow::Result<Option<String>> {
        let (ns, name) = (&key.namespace, &key.name);
        let slices: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let list = match slices
            .list(&ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={name}")))
            .await
        {
            Ok(list) => list,
            Err(kube::Error::Api(s)) if s.code == 403 => return Ok(Some(service_proxy(key))),
            Err(e) => return Err(self.error(e)),
        };
        Ok(route_through(key, &list.items))
    }

    async fn send(&self, request: http::Request<Vec<u8>>) -> anyhow::Result<Answer> {
        let response = self
            .client
            .send(request.map(kube::client::Body::from))
            .await
            .map_err(|e| self.error(e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect_bytes()
            .await
            .map_err(|e| self.error(e))?;
        Ok(Answer {
            status,
            body: body.to_vec(),
        })
    }

    /// The running host pods, with the path prefix of their admin port's proxy and the token
    /// their admin data requires.
    async fn hosts(&self) -> anyhow::Result<Vec<ProxiedHost>> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let list = pods
            .list(&ListParams::default().labels(&self.host_selector))
            .await
            .map_err(|e| self.error(e))?;
        let mut hosts = Vec::new();
        let running = list.items.iter().filter(|p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.phase.as_deref() == Some("Running") && s.pod_ip.is_some())
        });
        for p in running {
            let port = admin_port(p);
            let ns = p.namespace().unwrap_or_default();
            let name = p.name_any();
            hosts.push(ProxiedHost {
                name: format!("{ns}/{name}"),
                prefix: format!("/api/v1/namespaces/{ns}/pods/{name}:{port}/proxy"),
                token: self.host_token(p, &ns).await,
            });
        }
        if hosts.is_empty() {
            anyhow::bail!(
                "no running wasmless host pods (label {}) at {}: deploy wasmless-host, or pass --host-selector",
                self.host_selector,
                self.url
            );
        }
        Ok(hosts)
    }

    /// The token of the Secret the pod's [`TOKEN_SECRET_ANNOTATION`] names (key `token`), if
    /// this user may read it.
    async fn host_token(&self, pod: &Pod, namespace: &str) -> Option<String> {
        let secret = pod.annotations().get(TOKEN_SECRET_ANNOTATION)?;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        match secrets.get(secret).await {
            Ok(s) => {
                let token = s.data?.get("token")?.0.clone();
                Some(String::from_utf8_lossy(&token).trim().to_string())
            }
            Err(e) => {
                tracing::warn!("cannot read the hosts' token (Secret {namespace}/{secret}): {e}");
                None
            }
        }
    }

    async fn host_get(&self, host: &ProxiedHost, path: &str) -> anyhow::Result<Answer> {
        let mut request = http::Request::get(format!("{}{path}", host.prefix));
        // The API server takes `Authorization` for itself: the token goes in its own header.
        if let Some(token) = &host.token {
            request = request.header(token::HEADER, token);
        }
        let request = request
            .body(Vec::new())
            .context("cannot build the request")?;
        self.send(request).await
    }

    pub async fn logs(
        &self,
        key: &FunctionKey,
        cursors: &mut Cursors,
    ) -> anyhow::Result<Vec<LogLine>> {
        let mut out = Vec::new();
        for host in self.hosts().await? {
            let since = cursors.get(&host.name).copied().unwrap_or(0);
            let path = format!("{}?since={since}", admin::logs_path(key));
            let answer = self.host_get(&host, &path).await?;
            let host = host.name;
            match answer.status.as_u16() {
                200 => {
                    let lines: Vec<LogLine> = serde_json::from_slice(&answer.body)
                        .with_context(|| format!("host {host} answered logs that are not JSON"))?;
                    if let Some(last) = lines.last() {
                        cursors.insert(host, last.seq);
                    }
                    out.extend(lines);
                }
                // This host has not run the function.
                404 => {}
                other => tracing::warn!(%host, status = other, "cannot read logs"),
            }
        }
        Ok(out)
    }

    pub async fn metrics(&self) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for host in self.hosts().await? {
            let answer = self.host_get(&host, "/metrics").await?;
            let host = host.name;
            if answer.status.is_success() {
                out.push(String::from_utf8_lossy(&answer.body).into_owned());
            } else {
                tracing::warn!(%host, status = %answer.status, "cannot read metrics");
            }
        }
        Ok(out)
    }
}

/// Where a call to `key` goes, from its EndpointSlices: the Service's proxy when a ready host
/// pod is in `key`'s namespace (the service proxy reaches only those), else the pods proxy of
/// the first ready host elsewhere; `None` when no host is ready.
fn route_through(key: &FunctionKey, slices: &[EndpointSlice]) -> Option<String> {
    let (ns, route) = (&key.namespace, address::path(key));
    let mut elsewhere = None;
    for slice in slices {
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(PORT_NAME))
            .and_then(|p| p.port)
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false);
            let pod = endpoint.target_ref.as_ref();
            match (
                ready,
                pod.and_then(|p| p.kind.as_deref()),
                pod.and_then(|p| p.namespace.as_deref()),
                pod.and_then(|p| p.name.as_deref()),
            ) {
                (true, Some("Pod"), Some(pod_ns), _) if pod_ns == ns => {
                    return Some(service_proxy(key));
                }
                (true, Some("Pod"), Some(pod_ns), Some(pod)) => {
                    elsewhere.get_or_insert_with(|| {
                        format!("/api/v1/namespaces/{pod_ns}/pods/{pod}:{port}/proxy{route}")
                    });
                }
                _ => {}
            }
        }
    }
    elsewhere
}

/// `key`'s Service proxy, with the path route the host reads.
fn service_proxy(key: &FunctionKey) -> String {
    let (ns, name, route) = (&key.namespace, &key.name, address::path(key));
    format!("/api/v1/namespaces/{ns}/services/{name}:{PORT_NAME}/proxy{route}")
}

fn built_message(conditions: &[wasmless_api::function::Condition]) -> String {
    conditions
        .iter()
        .find(|c| c.type_ == "Built")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn view(f: Function) -> View {
    let status = f.status.clone().unwrap_or_default();
    let message = match status.phase {
        Phase::Failed => built_message(&status.conditions),
        _ => String::new(),
    };
    View {
        key: FunctionKey::new(&f.namespace().unwrap_or_default(), &f.name_any()),
        labels: f.labels().clone(),
        spec: f.spec.clone(),
        phase: format!("{:?}", status.phase),
        message,
        url: status.url,
        artifact: status.artifact.map(|a| a.revision()),
        origin: "cluster".into(),
        raw: serde_json::to_value(&f).unwrap_or_default(),
    }
}

/// `call` as a request to `path`.
fn request(path: &str, call: &Call) -> anyhow::Result<http::Request<Vec<u8>>> {
    let mut request = http::Request::builder()
        .method(call.method.clone())
        .uri(path);
    if let Some(headers) = request.headers_mut() {
        headers.extend(call.headers.clone());
    }
    request
        .body(call.body.clone())
        .context("cannot build the request")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};

    /// A host pod `namespace/name` behind the function's port.
    fn endpoint(namespace: &str, name: &str, ready: Option<bool>) -> Endpoint {
        Endpoint {
            addresses: vec!["198.18.0.5".into()],
            conditions: Some(EndpointConditions {
                ready,
                ..EndpointConditions::default()
            }),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                ..ObjectReference::default()
            }),
            ..Endpoint::default()
        }
    }

    fn slice(port: &str, endpoints: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            address_type: "IPv4".into(),
            endpoints,
            ports: Some(vec![EndpointPort {
                name: Some(port.into()),
                port: Some(8080),
                ..EndpointPort::default()
            }]),
            ..EndpointSlice::default()
        }
    }

    fn key() -> FunctionKey {
        FunctionKey::new("team", "hello")
    }

    const SERVICE: &str =
        "/api/v1/namespaces/team/services/hello:http-function-port/proxy/fn/team/hello/";

    #[test]
    fn a_ready_host_in_the_functions_namespace_goes_through_the_service() {
        let slices = [slice(
            PORT_NAME,
            vec![
                endpoint("wasmless", "host-a", Some(true)),
                endpoint("team", "host-b", None),
            ],
        )];
        assert_eq!(route_through(&key(), &slices).as_deref(), Some(SERVICE));
    }

    #[test]
    fn hosts_only_elsewhere_go_through_the_first_ready_pods_proxy() {
        let slices = [slice(
            PORT_NAME,
            vec![
                endpoint("wasmless", "host-a", Some(false)),
                endpoint("wasmless", "host-b", Some(true)),
                endpoint("wasmless", "host-c", Some(true)),
            ],
        )];
        assert_eq!(
            route_through(&key(), &slices).as_deref(),
            Some("/api/v1/namespaces/wasmless/pods/host-b:8080/proxy/fn/team/hello/")
        );
    }

    #[test]
    fn no_ready_host_or_no_function_port_is_no_route() {
        let not_ready = [slice(
            PORT_NAME,
            vec![endpoint("team", "host", Some(false))],
        )];
        assert_eq!(route_through(&key(), &not_ready), None);
        let other_port = [slice("metrics", vec![endpoint("team", "host", Some(true))])];
        assert_eq!(route_through(&key(), &other_port), None);
        assert_eq!(route_through(&key(), &[]), None);
    }

    #[test]
    fn an_endpoint_that_is_no_pod_is_skipped() {
        let mut node = endpoint("team", "node-1", Some(true));
        if let Some(r) = node.target_ref.as_mut() {
            r.kind = Some("Node".into());
        }
        let slices = [slice(PORT_NAME, vec![node])];
        assert_eq!(route_through(&key(), &slices), None);
    }
}
