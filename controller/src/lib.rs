//! wasmless's control plane: turning Function manifests into WebAssembly artifacts.
//!
//! - [`manifest`]: reading manifests; [`source`]: decoding and checksums;
//! - [`pipeline`]: the flow every entry point drives (builds go to `wasmless-builder`);
//! - [`driver`]: the control loop over it: what to build, in the background, bounded;
//! - [`artifacts`]: the content-addressed store; [`eviction`]: its size bound;
//! - [`triggers`]: HTTPTriggers' Ingresses and CronJobTriggers' invocations.

pub mod applied;
pub mod artifacts;
pub mod backoff;
pub mod children;
pub mod crd;
pub mod driver;
pub mod endpoints;
pub mod eviction;
pub mod leader;
pub mod manifest;
pub mod metacontroller;
pub mod own_writes;
pub mod pipeline;
pub mod reconcile;
pub mod serving;
pub mod source;
pub mod status;
pub mod triggers;

pub use artifacts::DirStore;
pub use pipeline::{Artifact, Pipeline, PipelineError};
