//! wasmless's control plane: turning Function manifests into WebAssembly artifacts.
//!
//! - [`manifest`]: reading manifests; [`source`]: decoding and checksums;
//! - [`pipeline`]: the flow every entry point drives (builds go to `wasmless-builder`);
//! - [`driver`]: the control loop over it: what to build, in the background, bounded;
//! - [`artifacts`]: the content-addressed store; [`eviction`]: its size bound;
//! - [`reconcile`]: the Kubernetes controller (one reconciler over Functions), with
//!   [`status`] (what it writes), [`own_writes`] (its status writes), [`children`] (the Service,
//!   Endpoints and EndpointSlices it describes), [`endpoints`] (the host pods, and those writes),
//!   [`applied`] (what is not written again), [`serving`] (whether hosts serve an artifact),
//!   [`leader`] (the Lease); [`backoff`]: watch restarts and build retries; [`crd`]: the CRDs;
//! - [`metacontroller`]: the same Functions as a Metacontroller hook;
//! - [`triggers`]: HTTPTriggers' Ingresses and CronJobTriggers' invocations.

#![forbid(unsafe_code)]

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
