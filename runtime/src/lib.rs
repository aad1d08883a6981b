//! wasmless's data plane: one shared wasmtime host that serves every function.
//!
//! - [`function`]: the manifest types every part of wasmless shares.
//! - [`engine`]: the one wasmtime configuration (pooling, copy-on-write, epochs).
//! - [`compile_cache`]: Cranelift's incremental compilation cache, on disk.
//! - [`host`]: the engine, the registry and how a request becomes a call.
//! - [`abi`]: one request through one fresh instance (WAGI and WASI HTTP).
//! - [`router`]: which function a request names.
//! - [`server`]: the function and admin listeners.

pub mod abi;
pub mod compile_cache;
pub mod engine;
pub mod files;
pub mod function;
pub mod host;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod registry;
pub mod router;
pub mod server;
pub mod watch;

pub use engine::{Compiled, EngineConfig};
pub use function::{FunctionKey, FunctionManifest, FunctionSpec};
pub use host::{Host, HostConfig};
pub use registry::FunctionDef;

/// Logs to stderr, filtered by `WASMLESS_LOG` (default `info`, with wasmtime's compiler quiet);
/// colours only on a terminal. Every wasmless binary calls this first.
pub fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("WASMLESS_LOG")
        .unwrap_or_else(|_| "info,cranelift=warn,wasmtime=warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
