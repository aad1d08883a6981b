//! Triggers: what invokes a Function besides a request to its Service, as Kubeless's
//! (`HTTPTrigger`, `CronJobTrigger`, `NATSTrigger`, same kind and field names) in `wasmless.dev/v1alpha1`.
//!
//! - [`http`]: a hostname and path for a function; the controller writes its Ingress and the
//!   hosts route it themselves ([`crate::routes`]).
//! - [`cron`]: a schedule on which the controller's leader invokes a function.
//! - [`nats`]: a NATS subject whose messages the controller's leader delivers to functions.
//!
//! A trigger names its functions by name (or, a NATSTrigger, by labels) among the Functions of
//! its own namespace only, so a trigger never reaches another namespace's function.

pub mod cron;
pub mod http;
pub mod nats;
mod object;
pub mod schedule;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::function::Condition;

pub use cron::{CronJobTrigger, CronJobTriggerSpec, CronJobTriggerStatus, CronResult};
pub use http::{HttpTrigger, HttpTriggerSpec, HttpTriggerStatus, Route};
pub use nats::{NatsResult, NatsTrigger, NatsTriggerSpec, NatsTriggerStatus};

/// A trigger as its status and logs name it: `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TriggerKey {
    /// The namespace it lives in.
    pub namespace: String,
    /// Its name within the namespace.
    pub name: String,
}

impl std::fmt::Display for TriggerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The CRDs of the trigger kinds, with their chart file names.
pub fn crds() -> [(&'static str, CustomResourceDefinition); 3] {
    [
        ("httptriggers.yaml", http::crd()),
        ("cronjobtriggers.yaml", cron::crd()),
        ("natstriggers.yaml", nats::crd()),
    ]
}

/// The condition `type_` among `conditions`, if any.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}
