//! wasmless's data plane: one shared wasmtime host that serves every function. The types it
//! serves (Functions, triggers, digests, the validator) are `wasmless_api`'s.
//!
//! - [`limits`]: a function's timeout, memory and warm instances, as a store enforces them.
//! - [`engine`]: the one wasmtime configuration (pooling, copy-on-write, epochs), and the only
//!   module with `unsafe` (loading precompiled code); [`compile_cache`]: Cranelift's
//!   incremental compilation cache, on disk.
//! - [`config`]: the host's and engine's settings as command-line flags.
//! - [`host`]: the engine, the [`registry`] of loaded functions, and how a request becomes a
//!   call; [`resident`]: how many functions' code stays loaded.
//! - [`abi`]: one request through one instance (WAGI commands and reactors, WASI HTTP);
//!   [`warm`]: idle instances kept for the next request; [`outbound`]: what a wasi:http
//!   function may call, enforced.
//! - [`admission`]: how many instances run at once, and what a refused request is told.
//! - [`routes`]: the hostnames HTTPTriggers route.
//! - [`server`]: the function and admin listeners, and how a process stops.
//! - [`metrics`] and [`logs`]: Kubeless's metrics, and each function's recent stderr.
//! - [`artifacts`] and [`loader`]: how a host in a cluster fetches, caches and loads what it is
//!   assigned (the `wasmless-host` binary's Kubernetes source says what); [`files`]: atomic writes, eviction and the user's cache.
//! - [`values`]: Secret and ConfigMap values, resolved when a function loads.
//! - [`token`]: the bearer tokens between wasmless's own parts.

#![deny(unsafe_code)]

pub mod abi;
pub mod admission;
pub mod artifacts;
pub mod compile_cache;
pub mod config;
#[allow(unsafe_code)]
pub mod engine;
pub mod files;
pub mod host;
pub mod limits;
pub mod loader;
pub mod logs;
pub mod metrics;
pub mod outbound;
pub mod registry;
pub mod resident;
pub mod routes;
pub mod server;
#[cfg(test)]
mod testing;
pub mod token;
pub mod values;
pub mod warm;

pub use config::HostArgs;
pub use engine::{Compiled, EngineConfig};
pub use host::{Host, HostConfig};
pub use registry::FunctionDef;

/// How logging is configured, for each binary's `--help`.
pub const LOGGING_HELP: &str = "\
Logging (stderr):
  RUST_LOG       filter, e.g. debug or info,wasmless_runtime=debug [default: info, with
                 wasmtime's compiler at warn]
  WASMLESS_LOG   the same, read when RUST_LOG is unset";

/// The variables [`init_tracing`] reads, first set wins.
const LOG_VARS: [&str; 2] = ["RUST_LOG", "WASMLESS_LOG"];

/// Logs to stderr, filtered by `RUST_LOG`, else `WASMLESS_LOG` (default `info`, with wasmtime's
/// compiler quiet); colours only on a terminal. Every wasmless binary calls this first.
pub fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let default = || EnvFilter::new("info,cranelift=warn,wasmtime=warn");
    let chosen = LOG_VARS.iter().find_map(|var| {
        let value = std::env::var(var).ok().filter(|v| !v.trim().is_empty())?;
        Some((*var, value))
    });
    let (filter, refused) = match chosen {
        None => (default(), None),
        Some((var, value)) => match EnvFilter::try_new(&value) {
            Ok(filter) => (filter, None),
            Err(e) => (default(), Some(format!("{var}={value:?}: {e}"))),
        },
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Only now can it be logged; a typo should not silence the process.
    if let Some(refused) = refused {
        tracing::warn!("ignoring an invalid log filter, logging at info: {refused}");
    }
}
