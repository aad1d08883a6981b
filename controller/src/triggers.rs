//! The trigger kinds' reconcilers, run by the leader beside the Functions' ([`crate::reconcile`])
//! for one leadership term: [`http`] (HTTPTrigger: its Ingress and status) and [`cron`]
//! (CronJobTrigger: invoking functions at their schedules' ticks, through `wasmless_build::triggers::invoke`) and [`nats`]
//! (NATSTrigger: subscriptions kept as the triggers ask, each delivering through `wasmless_build::triggers::subscription`).

pub mod cron;
pub mod http;
pub mod nats;

use std::sync::Arc;

use futures::FutureExt;
use kube::Client;
use thiserror::Error;
use tokio::sync::watch;

use wasmless_api::function::Condition;

#[derive(Debug, Error)]
pub enum Error {
    #[error("trigger has no namespace")]
    NoNamespace,
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// What the trigger reconcilers need.
pub struct Context {
    pub client: Client,
    /// The Ingress class of HTTPTriggers without a `gateway` (none: the cluster's default).
    pub ingress_class: Option<String>,
    /// Where cron and NATS invocations go, with `Host: <name>.<namespace>` (none: each
    /// function's Service, `http://<name>.<namespace>.svc:8080`).
    pub functions_url: Option<String>,
    /// The NATS server NATSTriggers subscribe on (none: they say so in their status).
    pub nats_url: Option<String>,
    pub http: reqwest::Client,
}

impl Context {
    pub fn new(
        client: Client,
        ingress_class: Option<String>,
        functions_url: Option<String>,
        nats_url: Option<String>,
    ) -> Self {
        Self {
            client,
            ingress_class,
            functions_url,
            nats_url,
            http: reqwest::Client::new(),
        }
    }
}

/// Runs the three until `shutdown` resolves (dropping the future stops them at once: a
/// replica that lost its Lease stops writing and invoking).
pub async fn run(
    ctx: Arc<Context>,
    leading: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let shutdown = shutdown.boxed().shared();
    futures::join!(
        http::run(ctx.clone(), leading.clone(), shutdown.clone()),
        cron::run(ctx.clone(), leading.clone(), shutdown.clone()),
        nats::run(ctx, leading, shutdown),
    );
}

/// The `Ready` condition of one reconcile of a trigger: what it was, the generation and the
/// time, fixed once.
pub struct Ready<'a> {
    pub previous: &'a [Condition],
    pub generation: Option<i64>,
    pub now: String,
}

impl Ready<'_> {
    /// The condition, its transition time moved only when its status does.
    pub fn condition(&self, ok: bool, reason: &str, message: String) -> Condition {
        let status = if ok { "True" } else { "False" };
        let since = self
            .previous
            .iter()
            .find(|c| c.type_ == "Ready" && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| self.now.clone());
        Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message: wasmless_build::status::trim(&message),
            last_transition_time: Some(since),
            observed_generation: self.generation,
        }
    }
}
