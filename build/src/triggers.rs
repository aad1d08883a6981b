//! Trigger invocations without Kubernetes: the controller's cron and NATS reconcilers and
//! `wasmless up` both invoke through these.

pub mod invoke;
pub mod subscription;
