//! wasmless's builder: Function sources in, WebAssembly out, never inside the control plane.
//!
//! - [`builders`]: one builder per runtime (what runs inside the sandbox);
//! - [`sandbox`]: each build in a fresh scratch directory, in a child process confined by
//!   Landlock, rlimits and a wall-clock timeout, with a cleared environment;
//! - [`api`]: the build request and answer on the wire; [`archive`]: a Function's zip
//!   archive (Kubeless's `base64+zip`);
//! - [`server`]: the builder's authenticated HTTP API; [`client`]: how the controller, the
//!   Metacontroller hook and `wasmless up` call it; [`local`]: `wasmless-builder` as a child
//!   process of `wasmless up`.
//!
//! `unsafe` is allowed only where the builder confines processes (`sandbox`, `local`: prctl,
//! rlimits, capabilities, signals) and where it reads a limit or maps compiled code.

#![deny(unsafe_code)]

pub mod api;
pub mod archive;
pub mod builders;
pub mod client;
#[allow(unsafe_code)]
pub mod local;
#[allow(unsafe_code)]
pub mod sandbox;
pub mod server;

pub use builders::{BuildError, Source};
pub use client::Client;

use wasmless_api::function::Runtime;

/// Something that turns a source into WebAssembly: the builder process through [`Client`]
/// everywhere; tests of the pipeline may build WAT in-process.
pub trait Build: Send + Sync {
    /// `tenant` (the Function's namespace) names the caches the build may write.
    fn build(&self, runtime: Runtime, tenant: &str, source: &Source)
    -> Result<Vec<u8>, BuildError>;
}
