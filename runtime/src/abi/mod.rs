//! How one request runs through an instance (fresh, or a warm one: [`crate::warm`]). Two ABIs,
//! told apart by the binary itself: a core module is a WAGI (CGI over WASI p1) command, or a
//! WAGI reactor when it exports `wasmless_wagi_handle`; a component exports
//! `wasi:http/incoming-handler`.

pub mod http;
mod pipes;
pub mod reactor;
pub mod wagi;

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;
use thiserror::Error;
use tokio::time::Instant;
use wasmtime::Store;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use wasmless_api::abi::Abi;

use crate::admission::Permit;
use crate::engine::{Compiled, Kind};
use crate::limits::MemoryLimiter;
use crate::logs::LogBuffer;
use crate::outbound::OutboundPolicy;
use crate::values::MountDirs;
use crate::warm::WarmBudget;

/// Linkers for both ABIs, built once per engine.
pub struct Linkers {
    wagi: wasmtime::Linker<wagi::WagiState>,
    http: wasmtime::component::Linker<http::HttpState>,
}

impl Linkers {
    pub fn new(engine: &wasmtime::Engine) -> wasmtime::Result<Self> {
        Ok(Self {
            wagi: wagi::linker(engine)?,
            http: http::linker(engine)?,
        })
    }
}

/// A function pre-instantiated for its ABI: imports resolved, ready for a fresh instance per call.
pub struct Prepared {
    by_abi: ByAbi,
    /// Holds the code for as long as this function may run it: while any function does,
    /// [`crate::engine::SharedCode`] hands the same code to others.
    _code: Compiled,
}

enum ByAbi {
    Wagi(wagi::Wagi),
    WagiReactor(reactor::Reactor),
    WasiHttp(http::WasiHttp),
}

#[derive(Debug, Error)]
pub enum PrepareError {
    #[error("module cannot run as a WAGI command: {0:#}")]
    Wagi(wasmtime::Error),
    #[error("component cannot run as a wasi:http handler: {0:#}")]
    WasiHttp(wasmtime::Error),
}

impl Prepared {
    /// `keep_warm`: the instances the function may keep between requests, within the host's
    /// `budget` (components and WAGI reactors; a WAGI command starts fresh every time).
    pub fn new(
        linkers: &Linkers,
        compiled: &Compiled,
        keep_warm: usize,
        budget: Arc<WarmBudget>,
    ) -> Result<Self, PrepareError> {
        let by_abi = match compiled.kind() {
            Kind::Module(m) if m.get_export(wasmless_api::abi::REACTOR_EXPORT).is_some() => {
                reactor::Reactor::new(&linkers.wagi, m, keep_warm, budget)
                    .map(ByAbi::WagiReactor)
                    .map_err(PrepareError::Wagi)
            }
            Kind::Module(m) => wagi::Wagi::new(&linkers.wagi, m)
                .map(ByAbi::Wagi)
                .map_err(PrepareError::Wagi),
            Kind::Component(c) => http::WasiHttp::new(&linkers.http, c, keep_warm, budget)
                .map(ByAbi::WasiHttp)
                .map_err(PrepareError::WasiHttp),
        }?;
        Ok(Self {
            by_abi,
            _code: compiled.clone(),
        })
    }

    pub fn abi(&self) -> Abi {
        match self.by_abi {
            ByAbi::Wagi(_) => Abi::Wagi,
            ByAbi::WagiReactor(_) => Abi::WagiReactor,
            ByAbi::WasiHttp(_) => Abi::WasiHttp,
        }
    }

    pub async fn call(&self, call: Invocation) -> Result<::http::Response<Body>, CallError> {
        match &self.by_abi {
            ByAbi::Wagi(w) => w.call(call).await,
            ByAbi::WagiReactor(r) => r.call(call).await,
            ByAbi::WasiHttp(h) => h.call(call).await,
        }
    }
}

/// One invocation of a function: a request, as an instance sees it, and what bounds it.
pub struct Invocation {
    /// Method, URI (the path the function sees), headers.
    pub parts: ::http::request::Parts,
    pub body: Bytes,
    /// The function's environment: manifest `env` plus Kubeless's `FUNC_*` variables.
    pub env: Arc<[(String, String)]>,
    /// Secret and ConfigMap mounts, preopened read-only ([`mount`]).
    pub mounts: Arc<MountDirs>,
    /// Receives the instance's stderr (and, for components, stdout) when it ends.
    pub logs: Arc<LogBuffer>,
    pub memory_bytes: u64,
    pub deadline: Instant,
    pub remote_addr: Option<std::net::SocketAddr>,
    /// Counts instances alive; the store holds a guard.
    pub instances_live: Gauge,
    /// The admission slot this request runs in; the store holds it, so a slot is free only once
    /// the instance is gone or back among the idle ones (a component may stream its body after
    /// the head is sent).
    pub permit: Permit,
    /// What a WAGI function may write to stdout (its whole response); writes beyond it fail.
    pub max_stdout_bytes: usize,
    /// What an instance may write to stderr; writes beyond it fail.
    pub max_log_bytes: usize,
    /// Where a wasi:http function may send requests.
    pub outbound: Arc<OutboundPolicy>,
    /// Counts the outbound requests refused.
    pub outbound_refused: prometheus_client::metrics::counter::Counter,
}

#[derive(Debug, Error)]
pub enum CallError {
    #[error("timeout: the function ran longer than its limit")]
    Timeout,
    #[error(
        "memory limit exceeded: the function needed {needed} bytes of linear memory, its limit is {limit} bytes"
    )]
    Memory { needed: usize, limit: usize },
    #[error("function exited with status {0}")]
    Exit(i32),
    #[error("function failed: {0:#}")]
    Trap(wasmtime::Error),
    #[error("function returned a malformed response: {0}")]
    BadResponse(String),
    #[error("this host's instance pool is full ({0:#}): retry later")]
    PoolFull(wasmtime::Error),
}

impl CallError {
    /// Turns a wasmtime error into the most specific explanation the store can give.
    fn from_trap(error: wasmtime::Error, limiter: &MemoryLimiter) -> Self {
        // Instances, memories or tables of the pool all taken (a Python component holds ~75
        // core instances): the host is busy, the function did nothing wrong.
        if error
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            return CallError::PoolFull(error);
        }
        if let Some(needed) = limiter.refused {
            return CallError::Memory {
                needed,
                limit: limiter.max_bytes(),
            };
        }
        CallError::Trap(error)
    }
}

/// A new instance's WASI context: the function's environment, and the call's mounts preopened
/// read-only at their guest paths (`/db`), what a function may read of a Secret or ConfigMap
/// and nothing else of the host's disk.
fn wasi_builder(call: &Invocation) -> WasiCtxBuilder {
    let mut wasi = WasiCtxBuilder::new();
    wasi.envs(&call.env);
    for (guest, dir) in &call.mounts.dirs {
        // The directories live as long as `call.mounts`: failing here is the host's fault, and
        // the function then finds no file there.
        if let Err(e) = wasi.preopened_dir(dir, guest, FsPerms::ReadOnly) {
            tracing::error!(mount = %guest, "cannot preopen a mount: {e:#}");
        }
    }
    wasi
}

/// Decrements the live-instance gauge when the store that holds it drops.
pub struct LiveGuard(Gauge);

impl LiveGuard {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Every fresh store, whatever its ABI:
fn yield_on_epoch<T>(store: &mut Store<T>) {
    // Yield to tokio at every epoch tick: a loop never starves other requests, and the
    // deadline (a tokio timer around the call) can drop the instance.
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
}
