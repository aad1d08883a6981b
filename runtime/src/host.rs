//! The host: one engine, the registry of loaded functions, and how a request becomes a call.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{Response, StatusCode, header};
use thiserror::Error;
use wasmtime::Engine;

use crate::abi::{CallError, Invocation, Linkers, PrepareError, Prepared};
use crate::admission::{Admission, AdmissionLimits, RETRY_AFTER_SECONDS, Reason, Rejected};
use crate::engine::{Compiled, EngineConfig, EngineError, LoadAgain};
use crate::logs::Logs;
use crate::metrics::Metrics;
use crate::outbound::OutboundPolicy;
use crate::registry::{FunctionDef, LoadedFunction, Registry};
use crate::resident::{Code, Reload, Resident};
use crate::routes::Routes;
use crate::server::ConnectionLimits;
use crate::values::{Data, MountDirs};
use crate::warm::{WarmBudget, WarmLimits};
use wasmless_api::admin::ErrorBody;
use wasmless_api::function::{FunctionKey, SourceStatus};

/// Everything that configures a host.
#[derive(Clone, Debug)]
pub struct HostConfig {
    pub engine: EngineConfig,
    /// Request bodies above this get 413.
    pub max_body_bytes: usize,
    /// Lines of stderr kept per function for `wasmless function logs`.
    pub log_lines: usize,
    /// The port functions are told they serve on (`FUNC_PORT`).
    pub port: u16,
    /// Instances at once, their queue and their memory budget.
    pub admission: AdmissionLimits,
    /// The longest `timeout` a function may have here; longer ones are not loaded.
    pub max_timeout: Duration,
    /// What a WAGI function may write to stdout (its response) per request.
    pub max_stdout_bytes: usize,
    /// What an instance may write to stderr per request, and what a function's log buffer
    /// keeps.
    pub max_log_bytes: usize,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    /// The function listener's connections: how many, and how long and large their headers.
    pub connections: ConnectionLimits,
    /// Idle instances kept across all functions (each function's own number is its
    /// `warmInstances`).
    pub warm: WarmLimits,
    /// Functions whose compiled code stays loaded at most (0: no bound); past it, the least
    /// recently used are dropped and loaded again at their next request ([`crate::resident`]).
    pub max_resident: usize,
    /// Whether `/fn/<namespace>/<name>/` routes when the Host names no function: on in `wasmless
    /// up`; off in a cluster unless asked for, since an ingress that forwards any path for one
    /// function's Host would otherwise reach every function.
    pub path_routing: bool,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            engine: EngineConfig::default(),
            max_body_bytes: 8 << 20,
            log_lines: 1_000,
            port: wasmless_api::cluster::FUNCTION_PORT,
            admission: AdmissionLimits::default(),
            max_timeout: wasmless_api::validate::MAX_TIMEOUT,
            max_stdout_bytes: 16 << 20,
            max_log_bytes: 1 << 20,
            body_timeout: Duration::from_secs(30),
            connections: ConnectionLimits::default(),
            warm: WarmLimits::default(),
            max_resident: DEFAULT_MAX_RESIDENT,
            path_routing: false,
        }
    }
}

/// Well under what `vm.max_map_count`'s default (65,530, ~2.1 mappings per module) allows,
/// and under half of a common open-files limit (20,000 here): with `--memory-init-cow` each
/// loaded module with initial data holds a memfd of its image.
pub const DEFAULT_MAX_RESIDENT: usize = 10_000;

#[derive(Debug, Error)]
pub enum HostError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot set up WASI imports: {0:#}")]
    Linker(wasmtime::Error),
    #[error("cannot load {key}: {source}")]
    Prepare {
        key: FunctionKey,
        source: PrepareError,
    },
    #[error("cannot load {key}: {message}")]
    Refused { key: FunctionKey, message: String },
}

pub struct Host {
    engine: Engine,
    /// Shared with every reload: a linker holds every import's definition (~100 KiB each).
    linkers: Arc<Linkers>,
    registry: Registry,
    /// The hostnames and paths HTTPTriggers route ([`crate::routes`]).
    routes: Routes,
    metrics: Metrics,
    logs: Logs,
    admission: Arc<Admission>,
    warm: Arc<WarmBudget>,
    resident: Arc<Resident>,
    outbound_refused: prometheus_client::metrics::counter::Counter,
    config: HostConfig,
    ready: AtomicBool,
    statuses: Mutex<BTreeMap<FunctionKey, SourceStatus>>,
}

impl Host {
    pub fn new(config: HostConfig) -> Result<Arc<Self>, HostError> {
        let engine = config.engine.build()?;
        let linkers = Arc::new(Linkers::new(&engine).map_err(HostError::Linker)?);
        let metrics = Metrics::default();
        let outbound_refused = metrics.rejected_counter(Reason::outbound);
        Ok(Arc::new(Self {
            engine,
            linkers,
            registry: Registry::default(),
            routes: Routes::default(),
            metrics,
            logs: Logs::new(config.log_lines, config.max_log_bytes),
            admission: Admission::new(config.admission.clone()),
            warm: WarmBudget::new(config.warm),
            resident: Resident::new(config.max_resident),
            outbound_refused,
            config,
            ready: AtomicBool::new(false),
            statuses: Mutex::default(),
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn logs(&self) -> &Logs {
        &self.logs
    }

    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// Counts and logs a refused request, and answers it.
    pub fn reject(&self, key: Option<&FunctionKey>, rejected: &Rejected) -> Response<Body> {
        self.metrics.reject(rejected.reason);
        let status = rejected.reason.status();
        match key {
            Some(key) => {
                tracing::warn!(function = %key, reason = ?rejected.reason, %status, "refused: {rejected}")
            }
            None => tracing::warn!(reason = ?rejected.reason, %status, "refused: {rejected}"),
        }
        let mut response = json_error(status, &rejected.message, key);
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, RETRY_AFTER_SECONDS.into());
        }
        response
    }

    /// Refuses a definition this host's limits cannot run.
    fn check_limits(&self, def: &FunctionDef) -> Result<(), HostError> {
        let above = |message: String| {
            Err(HostError::Refused {
                key: def.key.clone(),
                message,
            })
        };
        let (timeout, memory) = (def.limits.timeout, def.limits.memory_bytes);
        if timeout > self.config.max_timeout {
            return above(format!(
                "timeout {} s is above this host's maximum of {} s",
                timeout.as_secs(),
                self.config.max_timeout.as_secs()
            ));
        }
        let budget = self.config.admission.memory_budget_bytes;
        if memory > budget {
            return above(format!(
                "memory {memory} bytes is above this host's memory budget of {budget} bytes"
            ));
        }
        Ok(())
    }

    /// Set once the function source has loaded what it had at start-up.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Records what the function source last did with `key` (shown at the admin `/status`).
    pub fn set_status(&self, key: &FunctionKey, status: Option<SourceStatus>) {
        let mut map = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
        match status {
            Some(s) => map.insert(key.clone(), s),
            None => map.remove(key),
        };
    }

    pub fn statuses(&self) -> BTreeMap<FunctionKey, SourceStatus> {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Prepares `compiled` and swaps it in atomically. On error nothing changes: the revision
    /// already serving keeps serving. Its code is never dropped (see [`Host::load_with`]).
    pub fn load(
        &self,
        def: FunctionDef,
        compiled: &Compiled,
    ) -> Result<Arc<LoadedFunction>, HostError> {
        self.load_with(def, compiled, None, None)
    }

    /// [`Host::load`], with how to compile it again (`reload`, from its artifact): its code may
    /// then be dropped while other functions are used, and loaded again at its next request.
    /// `files`: the archive `def.files` names (checked by whoever fetched it), read-only to the
    /// function at `/kubeless` ([`wasmless_api::files`]).
    pub fn load_with(
        &self,
        def: FunctionDef,
        compiled: &Compiled,
        reload: Option<LoadAgain>,
        files: Option<&[u8]>,
    ) -> Result<Arc<LoadedFunction>, HostError> {
        self.check_limits(&def)?;
        let mounts = function_mounts(&def, files)?;
        let outbound =
            OutboundPolicy::new(&def.allowed_outbound_hosts).map_err(|e| HostError::Refused {
                key: def.key.clone(),
                message: format!("spec.allowedOutboundHosts: {e}"),
            })?;
        let prepared = Prepared::new(
            &self.linkers,
            compiled,
            def.limits.warm_instances,
            self.warm.clone(),
        )
        .map_err(|source| HostError::Prepare {
            key: def.key.clone(),
            source,
        })?;
        let mounts = MountDirs::write(&mounts).map_err(|e| HostError::Refused {
            key: def.key.clone(),
            message: format!("cannot write its mounted files: {e}"),
        })?;
        let reload = reload.map(|compile| -> Reload {
            let (linkers, warm) = (self.linkers.clone(), self.warm.clone());
            let keep_warm = def.limits.warm_instances;
            Arc::new(move || {
                let compiled = compile().map_err(|e| e.to_string())?;
                Prepared::new(&linkers, &compiled, keep_warm, warm.clone())
                    .map_err(|e| e.to_string())
            })
        });
        let function = Arc::new(LoadedFunction {
            code: Code::new(prepared, reload, &self.resident),
            env: def.environment(self.config.port).into(),
            mounts: Arc::new(mounts),
            metrics: self.metrics.for_function(&def.key),
            logs: self.logs.buffer(&def.key),
            outbound: Arc::new(outbound),
            def,
        });
        let previous = self.registry.insert(function.clone());
        self.metrics
            .functions_loaded
            .set(self.registry.len() as i64);
        self.drop_oldest();
        match previous {
            Some(p) => {
                tracing::info!(function = %function.def.key, from = %p.def.revision, to = %function.def.revision, "replaced")
            }
            None => {
                tracing::info!(function = %function.def.key, revision = %function.def.revision, abi = function.code.abi().as_str(), "loaded")
            }
        }
        Ok(function)
    }

    /// Called whenever the resident count may have changed (a load, a reload, an unload):
    /// past the bound, drops the least recently used functions' code; keeps the gauge.
    fn drop_oldest(&self) {
        if self.resident.over() {
            let all = self.registry.snapshot();
            let dropped = self.resident.drop_oldest(all.values().map(|f| &f.code));
            if dropped > 0 {
                tracing::debug!(
                    dropped,
                    resident = self.resident.loaded(),
                    "dropped the code of the least recently used functions"
                );
            }
        }
        self.metrics
            .functions_resident
            .set(self.resident.loaded() as i64);
    }

    pub fn unload(&self, key: &FunctionKey) -> bool {
        let removed = self.registry.remove(key).is_some();
        self.metrics
            .functions_loaded
            .set(self.registry.len() as i64);
        self.drop_oldest();
        if removed {
            tracing::info!(function = %key, "unloaded");
        }
        removed
    }

    /// Runs one request through a fresh instance of `function` and records it.
    pub async fn invoke(
        &self,
        function: Arc<LoadedFunction>,
        parts: http::request::Parts,
        body: Bytes,
        remote_addr: Option<SocketAddr>,
    ) -> Response<Body> {
        let started = Instant::now();
        let method = parts.method.clone();
        let limits = &function.def.limits;
        let key = &function.def.key;
        let permit = match self.admission.admit(key, limits.memory_bytes).await {
            Ok(permit) => permit,
            Err(rejected) => return self.reject(Some(key), &rejected),
        };
        let call = Invocation {
            parts,
            body,
            env: function.env.clone(),
            mounts: function.mounts.clone(),
            logs: function.logs.clone(),
            memory_bytes: limits.memory_bytes,
            deadline: tokio::time::Instant::now() + limits.timeout,
            remote_addr,
            instances_live: self.metrics.instances_live.clone(),
            permit,
            max_stdout_bytes: self.config.max_stdout_bytes,
            max_log_bytes: self.config.max_log_bytes,
            outbound: function.outbound.clone(),
            outbound_refused: self.outbound_refused.clone(),
        };
        let prepared = match function.code.get() {
            Ok((prepared, reloaded)) => {
                if reloaded {
                    self.drop_oldest();
                }
                prepared
            }
            Err(e) => {
                let error = format!("cannot load its code again: {e}");
                tracing::warn!(function = %key, "{error}");
                return json_error(StatusCode::INTERNAL_SERVER_ERROR, &error, Some(key));
            }
        };
        let response = match prepared.call(call).await {
            Ok(response) => response,
            // Refused like an admission: not a call of the function.
            Err(error @ CallError::PoolFull(_)) => {
                let rejected = Rejected {
                    reason: Reason::host_concurrency,
                    message: error.to_string(),
                };
                return self.reject(Some(&function.def.key), &rejected);
            }
            Err(error) => call_error_response(&function.def.key, &error),
        };
        let status = response.status();
        let failed = status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT;
        self.metrics
            .observe(&function.metrics, &method, started.elapsed(), failed);
        response
    }
}

fn call_error_response(key: &FunctionKey, error: &CallError) -> Response<Body> {
    let status = match error {
        CallError::Timeout => StatusCode::REQUEST_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    tracing::warn!(function = %key, %status, "{error}");
    json_error(status, &error.to_string(), Some(key))
}

/// An error answer ([`ErrorBody`]), about `key` or about no function.
pub fn json_error(status: StatusCode, message: &str, key: Option<&FunctionKey>) -> Response<Body> {
    let body = serde_json::to_vec(&ErrorBody::new(message, key)).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Loading, replacing and unloading at the host's seam, with WAT functions.
/// What `def` reads from files: its Secret and ConfigMap volumes, and its own files' archive.
fn function_mounts(
    def: &FunctionDef,
    files: Option<&[u8]>,
) -> Result<Vec<(String, Data)>, HostError> {
    use wasmless_api::files::{ARCHIVE, DIR};
    let refused = |message: String| HostError::Refused {
        key: def.key.clone(),
        message,
    };
    let mut mounts = def.values.mounts.clone();
    match (&def.files, files) {
        (None, None) => {}
        (Some(_), Some(files)) => {
            if mounts
                .iter()
                .any(|(path, _)| path.trim_end_matches('/') == DIR)
            {
                return Err(refused(format!(
                    "a volume is mounted at {DIR}, where this function's own files are"
                )));
            }
            mounts.push((
                DIR.to_string(),
                Data::from([(ARCHIVE.to_string(), files.to_vec())]),
            ));
        }
        _ => return Err(refused("its files and its definition disagree".to_string())),
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn key() -> FunctionKey {
        FunctionKey::new("ns", "f")
    }

    #[test]
    fn a_functions_files_are_mounted_at_kubeless_and_a_volume_there_is_refused() {
        let files = wasmless_api::files::FilesRef {
            digest: wasmless_api::digest::Sha256Digest::of(b"zip"),
            size: 3,
        };
        let def = testing::def(&key(), "r1").with_files(Some(files));
        let archive = Data::from([("function.zip".to_string(), b"zip".to_vec())]);
        let mounts = function_mounts(&def, Some(b"zip")).expect("mounts");
        assert_eq!(mounts, vec![("/kubeless".to_string(), archive)]);
        // Files the definition does not name, or named and missing: never loaded.
        assert!(function_mounts(&def, None).is_err());
        assert!(function_mounts(&testing::def(&key(), "r1"), Some(b"zip")).is_err());
        let mut clash = def.clone();
        clash.values.mounts.push(("/kubeless/".into(), Data::new()));
        let e = function_mounts(&clash, Some(b"zip"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("a volume is mounted at /kubeless"), "{e}");
    }

    #[tokio::test]
    async fn a_replacement_serves_its_revision_and_a_bad_one_leaves_the_old_serving() {
        let host = testing::host(HostConfig::default());
        let first = testing::load(&host, &key(), "r1", &testing::wagi("one")).expect("loads");
        assert_eq!(testing::get(&host, first).await, (200, "one".into()));

        testing::load(&host, &key(), "r2", &testing::wagi("two")).expect("replaces");
        let serving = host.registry().get(&key()).expect("loaded");
        assert_eq!(serving.def.revision, testing::revision("r2"));
        assert_eq!(testing::get(&host, serving).await, (200, "two".into()));

        // Links, but is no WASI command: refused at load, not at the first request.
        let Err(error) = testing::load(&host, &key(), "r3", "(module)") else {
            panic!("a module with no _start loaded");
        };
        assert!(error.to_string().contains("_start"), "{error}");
        let serving = host.registry().get(&key()).expect("still loaded");
        assert_eq!(serving.def.revision, testing::revision("r2"));
        assert_eq!(testing::get(&host, serving).await, (200, "two".into()));
    }

    #[tokio::test]
    async fn an_unloaded_function_is_gone_once() {
        let host = testing::host(HostConfig::default());
        testing::load(&host, &key(), "r1", &testing::wagi("one")).expect("loads");
        assert_eq!(host.registry().len(), 1);
        assert!(host.unload(&key()));
        assert!(host.registry().get(&key()).is_none());
        assert!(!host.unload(&key()), "nothing left to unload");
        assert_eq!(host.registry().len(), 0);
    }

    #[tokio::test]
    async fn each_request_gets_a_fresh_command_instance() {
        let host = testing::host(HostConfig::default());
        let f = testing::load(&host, &key(), "r1", &testing::wagi("call {n}")).expect("loads");
        for _ in 0..3 {
            // The instance's own call count: 1 every time, as no instance serves twice.
            assert_eq!(testing::get(&host, f.clone()).await, (200, "call 1".into()));
        }
    }

    #[tokio::test]
    async fn a_trap_answers_500_naming_the_function_and_the_next_request_is_served() {
        let host = testing::host(HostConfig::default());
        let trap = FunctionKey::new("ns", "trap");
        let trapping = testing::load(&host, &trap, "r1", testing::TRAP).expect("loads");
        let (status, body) = testing::get(&host, trapping.clone()).await;
        assert_eq!(status, 500);
        assert!(body.contains(r#""function":"trap""#), "{body}");
        assert!(body.contains("unreachable"), "{body}");
        let (status, _) = testing::get(&host, trapping).await;
        assert_eq!(status, 500, "a trap again, not a poisoned host");

        let other = testing::load(&host, &key(), "r1", &testing::wagi("fine")).expect("loads");
        assert_eq!(testing::get(&host, other).await, (200, "fine".into()));
    }

    /// `wat` loaded as `ns/<name>` keeping `warm` idle instances.
    fn load_warm(host: &Host, name: &str, wat: &str, warm: usize) -> Arc<LoadedFunction> {
        let compiled = crate::engine::compile(host.engine(), wat.as_bytes()).expect("compiles");
        let mut def = testing::def(&FunctionKey::new("ns", name), "r1");
        def.limits.warm_instances = warm;
        def.limits.timeout = Duration::from_millis(300);
        host.load(def, &compiled).expect("loads")
    }

    #[tokio::test]
    async fn a_warm_instance_serves_its_own_function_only() {
        let host = testing::host(HostConfig::default());
        let wat = testing::reactor("call {n}", None);
        // The same code: were instances pooled by module, g would get f's.
        let (f, g) = (
            load_warm(&host, "f", &wat, 1),
            load_warm(&host, "g", &wat, 1),
        );
        assert_eq!(testing::get(&host, f.clone()).await, (200, "call 1".into()));
        assert_eq!(testing::get(&host, f.clone()).await, (200, "call 2".into()));
        assert_eq!(testing::get(&host, g.clone()).await, (200, "call 1".into()));
        assert_eq!(testing::get(&host, f).await, (200, "call 3".into()));
        assert_eq!(testing::get(&host, g).await, (200, "call 2".into()));
    }

    #[tokio::test]
    async fn a_trapped_instance_is_never_reused() {
        let host = testing::host(HostConfig::default());
        let f = load_warm(
            &host,
            "f",
            &testing::reactor("call {n}", Some(testing::Fail::Trap(2))),
            1,
        );
        assert_eq!(testing::get(&host, f.clone()).await, (200, "call 1".into()));
        assert_eq!(
            testing::get(&host, f.clone()).await.0,
            500,
            "its second call traps"
        );
        // A new instance: the trapped one would have answered "call 3".
        assert_eq!(testing::get(&host, f.clone()).await, (200, "call 1".into()));
        assert_eq!(testing::get(&host, f).await.0, 500);
    }

    #[tokio::test]
    async fn a_timed_out_instance_is_never_reused() {
        let host = testing::host(HostConfig::default());
        let spin = testing::reactor("call {n}", Some(testing::Fail::Spin(2)));
        let f = load_warm(&host, "f", &spin, 1);
        assert_eq!(testing::get(&host, f.clone()).await, (200, "call 1".into()));
        assert_eq!(
            testing::get(&host, f.clone()).await.0,
            408,
            "its second call spins"
        );
        assert_eq!(testing::get(&host, f).await, (200, "call 1".into()));
    }

    #[tokio::test]
    async fn without_warm_instances_a_reactor_starts_anew_each_request() {
        let host = testing::host(HostConfig::default());
        let f = load_warm(&host, "f", &testing::reactor("call {n}", None), 0);
        for _ in 0..3 {
            assert_eq!(testing::get(&host, f.clone()).await, (200, "call 1".into()));
        }
    }

    #[test]
    fn limits_above_the_hosts_are_refused_at_load() {
        let host = testing::host(HostConfig {
            max_timeout: Duration::from_secs(1),
            ..HostConfig::default()
        });
        let compiled =
            crate::engine::compile(host.engine(), testing::wagi("x").as_bytes()).expect("compiles");
        let mut def = testing::def(&key(), "r1");
        def.limits.timeout = Duration::from_secs(2);
        let Err(error) = host.load(def, &compiled) else {
            panic!("loaded above the maximum timeout");
        };
        assert!(
            error
                .to_string()
                .contains("above this host's maximum of 1 s"),
            "{error}"
        );
        assert!(host.registry().get(&key()).is_none());
    }
}
