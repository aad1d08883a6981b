//! The host: one engine, the registry of loaded functions, and how a request becomes a call.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::body::Body;
use bytes::Bytes;
use http::{Response, StatusCode, header};
use thiserror::Error;
use wasmtime::Engine;

use crate::abi::{Call, CallError, Linkers, PrepareError, Prepared};
use crate::engine::{Compiled, EngineConfig, EngineError};
use crate::function::{FunctionKey, SourceStatus};
use crate::logs::Logs;
use crate::metrics::Metrics;
use crate::registry::{FunctionDef, LoadedFunction, Registry};

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
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            engine: EngineConfig::default(),
            max_body_bytes: 8 << 20,
            log_lines: 1_000,
            port: 8080,
        }
    }
}

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
}

pub struct Host {
    engine: Engine,
    linkers: Linkers,
    registry: Registry,
    metrics: Metrics,
    logs: Logs,
    config: HostConfig,
    ready: AtomicBool,
    statuses: Mutex<BTreeMap<FunctionKey, SourceStatus>>,
}

impl Host {
    pub fn new(config: HostConfig) -> Result<Arc<Self>, HostError> {
        let engine = config.engine.build()?;
        let linkers = Linkers::new(&engine).map_err(HostError::Linker)?;
        Ok(Arc::new(Self {
            engine,
            linkers,
            registry: Registry::default(),
            metrics: Metrics::default(),
            logs: Logs::new(config.log_lines),
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

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn logs(&self) -> &Logs {
        &self.logs
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
    /// already serving keeps serving.
    pub fn load(
        &self,
        def: FunctionDef,
        compiled: &Compiled,
    ) -> Result<Arc<LoadedFunction>, HostError> {
        let prepared =
            Prepared::new(&self.linkers, compiled).map_err(|source| HostError::Prepare {
                key: def.key.clone(),
                source,
            })?;
        let function = Arc::new(LoadedFunction {
            env: def.environment(self.config.port).into(),
            metrics: self.metrics.for_function(&def.key),
            logs: self.logs.buffer(&def.key),
            prepared,
            def,
        });
        let previous = self.registry.insert(function.clone());
        self.metrics
            .functions_loaded
            .set(self.registry.len() as i64);
        match previous {
            Some(p) => {
                tracing::info!(function = %function.def.key, from = %p.def.revision, to = %function.def.revision, "replaced")
            }
            None => {
                tracing::info!(function = %function.def.key, revision = %function.def.revision, abi = function.prepared.abi().as_str(), "loaded")
            }
        }
        Ok(function)
    }

    pub fn unload(&self, key: &FunctionKey) -> bool {
        let removed = self.registry.remove(key).is_some();
        self.metrics
            .functions_loaded
            .set(self.registry.len() as i64);
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
        let call = Call {
            parts,
            body,
            env: function.env.clone(),
            logs: function.logs.clone(),
            memory_bytes: limits.memory_bytes,
            deadline: tokio::time::Instant::now() + limits.timeout,
            remote_addr,
            instances_live: self.metrics.instances_live.clone(),
        };
        let response = match function.prepared.call(call).await {
            Ok(response) => response,
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

/// A JSON error body: `{"error": "...", "namespace": "...", "function": "..."}`.
pub fn json_error(status: StatusCode, message: &str, key: Option<&FunctionKey>) -> Response<Body> {
    let mut body = serde_json::json!({ "error": message });
    if let Some(key) = key {
        body["namespace"] = key.namespace.clone().into();
        body["function"] = key.name.clone().into();
    }
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
