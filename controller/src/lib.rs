//! wasmless's control plane in Kubernetes: Functions to artifacts (through `wasmless_build`),
//! and the objects that serve and trigger them.
//!
//! - [`reconcile`]: the Kubernetes controller (one reconciler over Functions), with
//!   [`own_writes`] (its status writes), [`children`] (the Service, Endpoints and EndpointSlices
//!   it describes), [`endpoints`] (the host pods, and those writes), [`applied`] (what is not
//!   written again), [`serving`] (whether hosts serve an artifact), [`leader`] (the Lease);
//!   [`backoff`]: the watches' restarts; [`crd`]: the CRDs; [`eviction`]: the artifact store's
//!   size bound;
//! - [`metacontroller`]: the same Functions as a Metacontroller hook;
//! - [`triggers`]: HTTPTriggers' Ingresses, CronJobTriggers' schedules, NATSTriggers'
//!   subscriptions.

#![forbid(unsafe_code)]

pub mod applied;
pub mod backoff;
pub mod children;
pub mod crd;
pub mod endpoints;
pub mod eviction;
pub mod leader;
pub mod metacontroller;
pub mod own_writes;
pub mod reconcile;
pub mod serving;
pub mod triggers;
