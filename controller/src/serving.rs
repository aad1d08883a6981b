//! Which artifacts the ready host pods serve, so that `Ready` in a Function's status means the
//! hosts answer with its artifact, not only that the build is stored. Each host lists what it
//! has loaded on its admin listener (`GET /functions`); the answers are kept for a moment, so
//! many Functions checked at once (a host pod joining reconciles all of them) cost one request
//! per host. A host that refused to load a Function says why at `/status`; that reason goes to
//! the Function's status too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;
use wasmless_api::FunctionKey;
use wasmless_api::admin::{self, FunctionInfo, FunctionState};
use wasmless_api::digest::Sha256Digest;
use wasmless_api::function::Phase;

use wasmless_runtime::token::Token;

use crate::children::HostPod;
use wasmless_build::status::Count;

/// How long a host's list is reused: shorter than a load, longer than a burst of reconciles.
const FRESH: Duration = Duration::from_millis(300);
/// A host that does not answer within this serves nothing, as far as status goes.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Each admin URL's last answer, as JSON.
type Lists = HashMap<String, (Instant, Arc<serde_json::Value>)>;

#[derive(Clone, Default)]
pub struct Serving {
    http: reqwest::Client,
    lists: Arc<Mutex<Lists>>,
    /// What the hosts' admin data requires.
    token: Option<Token>,
}

impl Serving {
    pub fn new(token: Option<Token>) -> Self {
        Self {
            token,
            ..Self::default()
        }
    }

    /// Asks every host in `hosts` (concurrently) whether it serves `digest` for `key`.
    pub async fn count(
        &self,
        hosts: &[HostPod],
        key: &FunctionKey,
        digest: Option<&Sha256Digest>,
    ) -> Count {
        let refused = self.refused(hosts, key).await;
        // Nothing built yet: no host can serve it, so none is asked.
        let Some(digest) = digest else {
            return Count {
                serving: 0,
                hosts: hosts.len(),
                refused,
            };
        };
        let lists = futures::future::join_all(
            hosts
                .iter()
                .map(|h| self.read::<Vec<FunctionInfo>>(h, admin::FUNCTIONS_PATH)),
        )
        .await;
        let serving = lists
            .iter()
            .filter(|list| {
                list.as_ref().is_some_and(|l| {
                    l.iter().any(|f| {
                        f.namespace == key.namespace && f.name == key.name && f.revision == *digest
                    })
                })
            })
            .count();
        Count {
            serving,
            hosts: hosts.len(),
            refused,
        }
    }

    /// Why a host refused to load `key`, if one did (say, a Secret's key it reads is missing):
    /// `host <pod>: <message>`.
    async fn refused(&self, hosts: &[HostPod], key: &FunctionKey) -> Option<String> {
        for host in hosts {
            let states = self
                .read::<Vec<FunctionState>>(host, admin::STATUS_PATH)
                .await;
            let failed = states.into_iter().flatten().find(|s| {
                s.namespace == key.namespace
                    && s.name == key.name
                    && s.status.phase == Phase::Failed
            });
            if let Some(failed) = failed {
                return Some(format!("host {}: {}", host.name, failed.status.message));
            }
        }
        None
    }

    /// `path` of `host`'s admin listener, read as `T`.
    async fn read<T: DeserializeOwned>(&self, host: &HostPod, path: &str) -> Option<T> {
        let json = self.list(host, path).await?;
        serde_json::from_value(Value::clone(&json)).ok()
    }

    async fn list(&self, host: &HostPod, path: &str) -> Option<Arc<serde_json::Value>> {
        let ip = host.ips.first()?;
        let url = if ip.contains(':') {
            format!("http://[{ip}]:{}{path}", host.admin_port)
        } else {
            format!("http://{ip}:{}{path}", host.admin_port)
        };
        if let Ok(lists) = self.lists.lock()
            && let Some((at, list)) = lists.get(&url)
            && at.elapsed() < FRESH
        {
            return Some(list.clone());
        }
        let asked = Instant::now();
        let list = match self.fetch(&url).await {
            Ok(list) => Arc::new(list),
            Err(e) => {
                tracing::debug!(host = %host.name, %url, "cannot list what the host serves: {e}");
                return None;
            }
        };
        if let Ok(mut lists) = self.lists.lock() {
            lists.retain(|_, (at, _)| at.elapsed() < FRESH);
            lists.insert(url, (asked, list.clone()));
        }
        Some(list)
    }

    async fn fetch(&self, url: &str) -> reqwest::Result<serde_json::Value> {
        let mut request = self.http.get(url).timeout(TIMEOUT);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.secret());
        }
        request.send().await?.error_for_status()?.json().await
    }
}

/// Counting against real hosts' admin listeners (the runtime's own `admin_app`), on loopback.
#[cfg(test)]
mod tests {
    use super::*;
    use wasmless_api::FunctionSpec;
    use wasmless_api::function::SourceStatus;
    use wasmless_runtime::{FunctionDef, Host, HostConfig, engine, server};

    const HELLO: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;
    const SECRET: &str = "a-token-of-thirty-two-characters-at-least";

    fn key() -> FunctionKey {
        FunctionKey::new("team", "f")
    }

    /// The revision a test names `name`.
    fn digest(name: &str) -> Sha256Digest {
        Sha256Digest::of(name.as_bytes())
    }

    /// A host serving `key` at `revision` (none: nothing loaded), its admin listener guarded by
    /// `SECRET`, as a pod would be.
    async fn host_pod(name: &str, revision: Option<&str>) -> (HostPod, Arc<Host>) {
        let host = Host::new(HostConfig::default()).expect("a host");
        if let Some(revision) = revision {
            let compiled = engine::compile(host.engine(), HELLO.as_bytes()).expect("compiles");
            let spec = FunctionSpec::default();
            let def =
                FunctionDef::from_spec(key(), &spec, digest(revision), 1 << 30, Default::default())
                    .expect("the default limits");
            host.load(def, &compiled).expect("loads");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let token = Token::new(SECRET, "test").expect("token");
        let app = server::admin_app(host.clone(), Some(token));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let pod = HostPod {
            namespace: "wasmless".into(),
            name: name.into(),
            uid: None,
            ips: vec!["127.0.0.1".into()],
            node_name: None,
            port: 8080,
            admin_port: i32::from(port),
        };
        (pod, host)
    }

    fn serving() -> Serving {
        Serving::new(Some(Token::new(SECRET, "test").expect("token")))
    }

    #[tokio::test]
    async fn every_host_serving_the_digest_is_all_and_an_older_one_is_not() {
        let (a, _ha) = host_pod("a", Some("sha256:new")).await;
        let (b, _hb) = host_pod("b", Some("sha256:new")).await;
        let (c, _hc) = host_pod("c", Some("sha256:old")).await;
        let both = serving()
            .count(&[a.clone(), b], &key(), Some(&digest("sha256:new")))
            .await;
        assert_eq!((both.serving, both.hosts), (2, 2));
        assert!(both.all());
        let behind = serving()
            .count(&[a, c], &key(), Some(&digest("sha256:new")))
            .await;
        assert_eq!((behind.serving, behind.hosts), (1, 2));
        assert!(!behind.all());
        assert!(!Count::default().all(), "no host serves nothing");
    }

    #[tokio::test]
    async fn a_host_that_cannot_be_asked_serves_nothing() {
        let (a, _ha) = host_pod("a", Some("sha256:new")).await;
        let mut gone = a.clone();
        gone.name = "gone".into();
        gone.admin_port = 1; // nothing listens there
        let count = serving()
            .count(&[a.clone(), gone], &key(), Some(&digest("sha256:new")))
            .await;
        assert_eq!((count.serving, count.hosts), (1, 2));
        // Without the hosts' token their lists are refused: nothing counts as served.
        let count = Serving::new(None)
            .count(&[a], &key(), Some(&digest("sha256:new")))
            .await;
        assert_eq!(count.serving, 0);
    }

    #[tokio::test]
    async fn a_hosts_refusal_is_reported_with_its_name() {
        let (a, _ha) = host_pod("a", None).await;
        let (b, hb) = host_pod("b", None).await;
        hb.set_status(
            &key(),
            Some(SourceStatus {
                phase: Phase::Failed,
                message: "secret team/db has no key password".into(),
                serving: None,
            }),
        );
        let count = serving()
            .count(&[a, b], &key(), Some(&digest("sha256:new")))
            .await;
        assert_eq!(count.serving, 0);
        assert_eq!(
            count.refused.as_deref(),
            Some("host b: secret team/db has no key password")
        );
    }
}
