//! Where the verbs act: a cluster through kubeconfig ([`cluster`]), or a local `wasmless up`
//! through its admin listener ([`local`]). Both answer the same questions in the same shapes,
//! so each verb is written once.

pub mod cluster;
pub mod local;

use std::collections::BTreeMap;
use std::path::PathBuf;

use wasmless_api::cluster::DEFAULT_HOST_SELECTOR;
use wasmless_api::{FunctionKey, FunctionSpec, Sha256Digest};

use cluster::Cluster;
use local::Local;

/// The admin address of `wasmless up` by default.
pub const LOCAL_ADMIN: &str = "http://127.0.0.1:9090";

#[derive(clap::Args)]
pub struct TargetArgs {
    /// Use a local `wasmless up` instead of a cluster: its admin URL.
    #[arg(long, global = true, num_args = 0..=1, require_equals = true,
          default_missing_value = LOCAL_ADMIN, value_name = "ADMIN_URL")]
    pub local: Option<String>,
    /// The kubeconfig context [default: the current one].
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The kubeconfig file [default: $KUBECONFIG or ~/.kube/config].
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace [default: the context's, or `default`].
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// Labels of the host pods `logs` and `top` read from (cluster only).
    #[arg(
        long,
        global = true,
        default_value = DEFAULT_HOST_SELECTOR
    )]
    pub host_selector: String,
}

pub enum Target {
    Cluster(Cluster),
    Local(Local),
}

/// What a deploy or update asks for.
pub struct Desired {
    pub key: FunctionKey,
    pub labels: BTreeMap<String, String>,
    pub spec: FunctionSpec,
}

/// One function as `ls` and `describe` show it.
pub struct View {
    pub key: FunctionKey,
    pub labels: BTreeMap<String, String>,
    pub spec: FunctionSpec,
    pub phase: String,
    /// The build error, when the last build failed.
    pub message: String,
    pub url: Option<String>,
    /// The artifact serving now.
    pub artifact: Option<Sha256Digest>,
    /// Where it comes from: a file, the API (local) or the cluster.
    pub origin: String,
    /// The whole object, for `-o json|yaml`.
    pub raw: serde_json::Value,
}

/// Where a deploy stands.
pub enum Progress {
    /// Not settled; the phase to show.
    Waiting(String),
    /// Built: the URL, and the artifact hosts must load before calls reach it.
    Ready {
        url: Option<String>,
        artifact: Option<Sha256Digest>,
    },
    Failed(String),
}

/// One line of a function's stderr, as the hosts keep them.
pub use wasmless_api::admin::LogLine;

/// A request to a function: what `call` sends.
pub struct Call {
    /// The path (and query) the function sees, `/` or `/sub/path?q=1`.
    pub path: http::uri::PathAndQuery,
    pub method: http::Method,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

/// A function's answer.
pub struct Answer {
    pub status: http::StatusCode,
    pub body: Vec<u8>,
}

/// Per-host read positions in the log buffers, for `logs -f`.
pub type Cursors = BTreeMap<String, u64>;

impl Target {
    pub async fn connect(args: &TargetArgs) -> anyhow::Result<Self> {
        Ok(match &args.local {
            Some(url) => Target::Local(Local::new(url, args.namespace.clone())?),
            None => Target::Cluster(Cluster::connect(args).await?),
        })
    }

    pub fn namespace(&self) -> &str {
        match self {
            Target::Cluster(c) => c.namespace(),
            Target::Local(l) => l.namespace(),
        }
    }

    pub fn key(&self, name: &str) -> FunctionKey {
        FunctionKey::new(self.namespace(), name)
    }

    /// Creates (`create`) or replaces the function; returns a token for `progress`.
    pub async fn apply(&self, desired: &Desired, create: bool) -> anyhow::Result<Option<i64>> {
        match self {
            Target::Cluster(c) => c.apply(desired, create).await,
            Target::Local(l) => l.apply(desired, create).await.map(|()| None),
        }
    }

    pub async fn progress(
        &self,
        key: &FunctionKey,
        token: Option<i64>,
    ) -> anyhow::Result<Progress> {
        match self {
            Target::Cluster(c) => c.progress(key, token).await,
            Target::Local(l) => l.progress(key).await,
        }
    }

    /// Whether the hosts serve `artifact` of `key` (local mode loads before it says Ready).
    pub async fn serving(
        &self,
        key: &FunctionKey,
        artifact: &Sha256Digest,
    ) -> anyhow::Result<bool> {
        match self {
            Target::Cluster(c) => c.serving(key, artifact).await,
            Target::Local(_) => Ok(true),
        }
    }

    pub async fn get(&self, key: &FunctionKey) -> anyhow::Result<View> {
        let found = match self {
            Target::Cluster(c) => c.get(key).await?,
            Target::Local(l) => l.get(key).await?,
        };
        found.ok_or_else(|| not_found(key))
    }

    /// Functions in `namespace`, or in all when `None`.
    pub async fn list(&self, namespace: Option<&str>) -> anyhow::Result<Vec<View>> {
        match self {
            Target::Cluster(c) => c.list(namespace).await,
            Target::Local(l) => l.list(namespace).await,
        }
    }

    pub async fn delete(&self, key: &FunctionKey) -> anyhow::Result<()> {
        match self {
            Target::Cluster(c) => c.delete(key).await,
            Target::Local(l) => l.delete(key).await,
        }
    }

    pub async fn call(&self, key: &FunctionKey, call: Call) -> anyhow::Result<Answer> {
        // Checked first so a missing function is one clear line, not a proxy's 404 or 503.
        self.get(key).await?;
        match self {
            Target::Cluster(c) => c.call(key, call).await,
            Target::Local(l) => l.call(key, call).await,
        }
    }

    /// New log lines of `key` on every host after `cursors`, oldest first.
    pub async fn logs(
        &self,
        key: &FunctionKey,
        cursors: &mut Cursors,
    ) -> anyhow::Result<Vec<LogLine>> {
        let mut lines = match self {
            Target::Cluster(c) => c.logs(key, cursors).await?,
            Target::Local(l) => l.logs(key, cursors).await?,
        };
        lines.sort_by(|a, b| a.time.total_cmp(&b.time).then(a.seq.cmp(&b.seq)));
        Ok(lines)
    }

    /// The Prometheus text of every host.
    pub async fn metrics(&self) -> anyhow::Result<Vec<String>> {
        match self {
            Target::Cluster(c) => c.metrics().await,
            Target::Local(l) => l.metrics().await.map(|m| vec![m]),
        }
    }
}

pub fn already_exists(key: &FunctionKey) -> anyhow::Error {
    anyhow::anyhow!(
        "function {} already exists in namespace {}: use `wasmless function update`",
        key.name,
        key.namespace
    )
}

pub fn not_found(key: &FunctionKey) -> anyhow::Error {
    anyhow::anyhow!(
        "function {} not found in namespace {}: see `wasmless function ls`",
        key.name,
        key.namespace
    )
}

/// The innermost cause of an error (such as "Connection refused"): what a user can act on.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
