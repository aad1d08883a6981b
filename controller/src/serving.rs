//! Which artifacts the ready host pods serve, so that `Ready` in a Function's status means the
//! hosts answer with its artifact, not only that the build is stored. Each host lists what it
//! has loaded on its admin listener (`GET /functions`); the answers are kept for a moment, so
//! many Functions checked at once (a host pod joining reconciles all of them) cost one request
//! per host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmless_runtime::FunctionKey;
use wasmless_runtime::registry::FunctionInfo;

use wasmless_runtime::token::Token;

use crate::children::Host;

/// How long a host's list is reused: shorter than a load, longer than a burst of reconciles.
const FRESH: Duration = Duration::from_millis(300);
/// A host that does not answer within this serves nothing, as far as status goes.
const TIMEOUT: Duration = Duration::from_secs(2);

/// How many of the ready hosts serve an artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count {
    pub serving: usize,
    pub hosts: usize,
}

impl Count {
    /// Every ready host serves it, and there is one.
    pub fn all(&self) -> bool {
        self.hosts > 0 && self.serving == self.hosts
    }
}

type Lists = HashMap<String, (Instant, Arc<Vec<FunctionInfo>>)>;

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
    pub async fn count(&self, hosts: &[Host], key: &FunctionKey, digest: &str) -> Count {
        let lists = futures::future::join_all(hosts.iter().map(|h| self.list(h))).await;
        let serving = lists
            .iter()
            .filter(|list| {
                list.as_ref().is_some_and(|l| {
                    l.iter().any(|f| {
                        f.namespace == key.namespace && f.name == key.name && f.revision == digest
                    })
                })
            })
            .count();
        Count {
            serving,
            hosts: hosts.len(),
        }
    }

    async fn list(&self, host: &Host) -> Option<Arc<Vec<FunctionInfo>>> {
        let ip = host.ips.first()?;
        let url = if ip.contains(':') {
            format!("http://[{ip}]:{}/functions", host.admin_port)
        } else {
            format!("http://{ip}:{}/functions", host.admin_port)
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

    async fn fetch(&self, url: &str) -> reqwest::Result<Vec<FunctionInfo>> {
        let mut request = self.http.get(url).timeout(TIMEOUT);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.secret());
        }
        request.send().await?.error_for_status()?.json().await
    }
}
