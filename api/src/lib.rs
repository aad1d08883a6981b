//! wasmless's vocabulary, shared by every plane and free of wasmtime and of any Kubernetes
//! client:
//!
//! - [`function`]: the Function type (its CRD, its manifest form, its status); [`trigger`]: the
//!   HTTPTrigger, CronJobTrigger and NATSTrigger types.
//! - [`validate`]: the one check of a Function every entry point runs; [`limits`]: what a
//!   Function gets when it asks for nothing, and memory quantities.
//! - [`digest`]: sha256 digests of sources and artifacts; [`abi`]: how a function's
//!   WebAssembly is called; [`files`]: a function's files, apart from the code it shares.
//! - [`address`]: which function a request names (its Host, or its `/fn/` path);
//!   [`outbound`]: the destinations a function may call.
//! - [`admin`]: the admin API's wire types, written by the hosts and read by the controller and
//!   the CLI.
//! - [`cluster`]: the ports, labels and names the controller, the hosts and the CLI agree on.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod abi;
pub mod address;
pub mod admin;
pub mod cluster;
pub mod digest;
pub mod files;
pub mod function;
pub mod limits;
pub mod outbound;
pub mod trigger;
pub mod validate;

pub use abi::Abi;
pub use digest::Sha256Digest;
pub use function::{FunctionKey, FunctionManifest, FunctionSpec, Runtime};
