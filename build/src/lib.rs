//! Function manifests to WebAssembly artifacts, with no Kubernetes client (Cargo keeps it so):
//! what `wasmless up` and the controller share.
//!
//! - [`manifest`]: reading manifests; [`source`]: decoding `function` and checking `checksum`;
//! - [`pipeline`]: the flow every entry point drives (builds go to `wasmless-builder`);
//! - [`driver`]: the control loop over it: what to build, in the background, bounded, retried
//!   with [`backoff`];
//! - [`status`]: the status a build outcome gives a Function, as pure functions;
//! - [`artifacts`]: the content-addressed store, and the server hosts fetch from;
//! - [`triggers`]: invoking a function as a trigger does ([`triggers::invoke`]), and NATS
//!   subscriptions delivering through it ([`triggers::subscription`]).

#![forbid(unsafe_code)]

pub mod artifacts;
pub mod backoff;
pub mod driver;
pub mod manifest;
pub mod pipeline;
pub mod source;
pub mod status;
pub mod triggers;

pub use artifacts::DirStore;
pub use pipeline::{Artifact, Pipeline, PipelineError};
