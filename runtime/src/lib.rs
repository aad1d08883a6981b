//! wasmless's data plane: one shared wasmtime host that serves every function.
//!
//! - [`function`]: the manifest types every part of wasmless shares.
//! - [`engine`]: the one wasmtime configuration (pooling, copy-on-write, epochs).
//! - [`host`]: the engine, the registry and how a request becomes a call.
//! - [`abi`]: one request through one fresh instance (WAGI and WASI HTTP).
//! - [`router`]: which function a request names.
//! - [`server`]: the function and admin listeners.

pub mod abi;
pub mod engine;
pub mod function;
pub mod host;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod registry;
pub mod router;
pub mod server;

pub use engine::{Compiled, EngineConfig};
pub use function::{FunctionKey, FunctionManifest, FunctionSpec};
pub use host::{Host, HostConfig};
pub use registry::FunctionDef;
