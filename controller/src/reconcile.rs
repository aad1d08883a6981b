//! The native controller: a kube-runtime `Controller` over Functions. Level-triggered and
//! idempotent: for each generation it asks the [`Driver`] for the build (which runs in the
//! background: a reconcile never waits for one, it writes `Building` and returns, and the
//! build's end reconciles the Function again), writes status, and applies the per-function
//! Service and its endpoints. `Ready` waits for the ready host pods to serve the artifact
//! ([`crate::serving`]), unless `--ready-when built`. Host pod changes that move endpoints
//! reconcile every Function ([`crate::endpoints`]).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use thiserror::Error;
use tokio::sync::{mpsc, watch};

use wasmless_api::FunctionKey;
use wasmless_api::function::{Function, FunctionStatus, Phase, Settings};
use wasmless_api::validate::{self, Invalid, Origin};

use crate::applied::Applied;
use crate::backoff::Watch;
use crate::children::{self, ChildConfig, EndpointsBy};
use crate::endpoints::{self, Hosts, ServiceChange};
use crate::own_writes::{OwnWrites, StatusWriter};
use crate::serving::Serving;
use wasmless_build::driver::{Driver, Next, OriginBuf, Outcome, Waiter};
use wasmless_build::status::{self, Failure};

pub const MANAGER: &str = "wasmless-controller";

#[derive(Debug, Error)]
pub enum Error {
    #[error("Function has no namespace")]
    NoNamespace,
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("endpoints: {0}")]
    Endpoints(#[from] endpoints::Error),
}

/// When a built Function is `Ready`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadyWhen {
    /// Once every ready host pod serves its artifact (asked on each host's admin port).
    #[default]
    Serving,
    /// Once its artifact is stored: for hosts that are not pods the controller can ask.
    Built,
}

/// What every reconcile needs.
pub struct Context {
    pub client: Client,
    pub driver: Arc<Driver>,
    pub children: ChildConfig,
    pub recorder: Recorder,
    pub ready_when: ReadyWhen,
    serving: Serving,
}

impl Context {
    /// `instance` names this replica in the Events it records (its pod's name).
    pub fn new(
        client: Client,
        driver: Arc<Driver>,
        children: ChildConfig,
        ready_when: ReadyWhen,
        instance: String,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: Some(instance),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            driver,
            serving: Serving::new(children.host_token.clone()),
            children,
            ready_when,
        }
    }
}

/// One leadership term: the context, the host pods watched during it, and where the driver
/// tells of finished builds.
struct Term {
    ctx: Arc<Context>,
    hosts: Hosts,
    own: OwnWrites,
    /// The children applied in this term (a new term applies them all again).
    applied: Applied,
    wake: Waiter,
    /// Whether this replica still holds the Lease: nothing is written once it does not.
    leading: watch::Receiver<bool>,
}

/// Reconciles in flight at once. kube-runtime's default has no bound: 10,000 Functions applied
/// together were 10,000 reconciles writing at once, and the API server (2 cores) timed its
/// requests out (504) faster than they could be retried. Builds are bounded apart (`Driver`).
const RECONCILES_AT_ONCE: u16 = 16;

/// Runs the controller until `shutdown` resolves (then reconciles in flight finish). Dropping
/// the future stops at once: how a replica that lost its Lease stops writing.
pub async fn run(
    ctx: Arc<Context>,
    leading: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (hosts, host_changes) = Hosts::watch(ctx.client.clone(), &ctx.children);
    // Driven by a task of its own, not by the controller: reconciles wait for the first list of
    // host pods, and a controller shutting down stops polling its triggers.
    let host_changes = Forwarded::spawn(host_changes);
    let (wake, woken) = mpsc::unbounded_channel::<FunctionKey>();
    let woken = futures::stream::unfold(woken, |mut rx| async move {
        let key = rx.recv().await?;
        Some((
            ObjectRef::<Function>::new(&key.name).within(&key.namespace),
            rx,
        ))
    });
    let functions = Api::<Function>::all(ctx.client.clone());
    let services = Api::<Service>::all(ctx.client.clone());
    // Functions handed to the Metacontroller hook are not ours.
    let ours = format!(
        "{}!={}",
        crate::metacontroller::MODE_LABEL,
        crate::metacontroller::MODE_METACONTROLLER
    );
    Controller::new(functions, watcher::Config::default().labels(&ours))
        .with_config(controller::Config::default().concurrency(RECONCILES_AT_ONCE))
        .owns(
            services,
            watcher::Config::default().labels(&format!(
                "{}={}",
                wasmless_api::cluster::MANAGED_BY.0,
                wasmless_api::cluster::MANAGED_BY.1
            )),
        )
        // Back within seconds of an API-server restart (kube-runtime's default waits up to 30 s).
        .trigger_backoff(Watch::new())
        .reconcile_all_on(host_changes.stream)
        .reconcile_on(woken)
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            error_policy,
            Arc::new(Term {
                ctx,
                hosts,
                own: OwnWrites::default(),
                applied: Applied::default(),
                wake,
                leading,
            }),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("reconcile: {e}");
            }
        })
        .await;
}

/// A stream driven by a task of its own, its items passed on; the task ends with this.
struct Forwarded {
    stream: futures::stream::BoxStream<'static, ()>,
}

impl Forwarded {
    fn spawn(source: impl futures::Stream<Item = ()> + Send + 'static) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            futures::pin_mut!(source);
            while let Some(item) = source.next().await {
                if tx.send(item).is_err() {
                    break;
                }
            }
        });
        let abort = AbortOnDrop(task);
        let stream = futures::stream::unfold((rx, abort), |(mut rx, abort)| async move {
            rx.recv().await?;
            Some(((), (rx, abort)))
        })
        .boxed();
        Self { stream }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn error_policy(_: Arc<Function>, error: &Error, _: Arc<Term>) -> Action {
    tracing::warn!("reconcile failed, retrying in 5 s: {error}");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(function: Arc<Function>, term: Arc<Term>) -> Result<Action, Error> {
    let ctx = &term.ctx;
    let namespace = function.namespace().ok_or(Error::NoNamespace)?;
    let name = function.name_any();
    let key = FunctionKey::new(&namespace, &name);
    let generation = function.metadata.generation;
    let params = PatchParams::apply(MANAGER).force();
    if !*term.leading.borrow() {
        // The Lease is gone: the term ends, and nothing more is written in it.
        return Ok(Action::await_change());
    }
    // The cache is behind a status this controller wrote: the newer event brings it back.
    if term.own.is_replaced(&function) {
        tracing::debug!(function = %key, "skipped a version this controller has written over");
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let checked = validate::function(&function, Origin::Cluster);

    let previous = function.status.clone().unwrap_or_default();
    let api = Api::<Function>::namespaced(ctx.client.clone(), &namespace);
    let mut writer = StatusWriter::new(api, &function, &term.own);

    // A Service is named after the function: none for a name the API server would refuse.
    if !checked.as_ref().is_err_and(Invalid::names_unusable) {
        let services = Api::<Service>::namespaced(ctx.client.clone(), &namespace);
        let existing = services.get_opt(&name).await?;
        if let Some(existing) = &existing
            && !children::controlled_by(&existing.metadata, &function)
        {
            conflict(ctx, &function, &mut writer, &previous).await?;
            // The Service is not watched (not ours): look again for when it is gone.
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
        let service = children::service(&function, &ctx.children, EndpointsBy::Controller);
        let live = existing.as_ref().and_then(|s| s.resource_version());
        let wrote = term
            .applied
            .apply(&services, &params, &service, live.as_deref())
            .await?;
        let change = match (existing, wrote) {
            (None, _) => ServiceChange::Created,
            (Some(_), true) => ServiceChange::Changed,
            (Some(_), false) => ServiceChange::Unchanged,
        };
        let endpoints = term
            .hosts
            .apply(&ctx.client, &function, &params, &term.applied, change)
            .await?;
        tracing::debug!(function = %key, hosts = endpoints, "service and endpoints applied");
    }

    if let Err(invalid) = checked {
        refuse(ctx, &function, &mut writer, &previous, &invalid).await?;
        return Ok(Action::requeue(Duration::from_secs(3600)));
    }
    // Kubeless fields not honoured, listed in status (the Settings never hold values).
    let ignored = Settings::of(&function.spec).ignored_message();
    let status = match ctx.driver.next(&function) {
        Next::Keep if previous.phase == Phase::Failed => {
            return Ok(Action::requeue(Duration::from_secs(3600)));
        }
        Next::Keep => previous.clone(),
        Next::Build => {
            let outcome = ctx
                .driver
                .request(
                    &key,
                    &function.spec,
                    OriginBuf::Cluster,
                    Some(term.wake.clone()),
                )
                .await;
            match outcome {
                Outcome::Building { note } => {
                    let url = children::url(&function);
                    let now = status::now();
                    let status =
                        status::building(&previous, generation, url, note.as_deref(), &now);
                    let status = status::with_ignored(status, ignored, &previous, &now);
                    if status != previous {
                        writer.write(&status).await?;
                    }
                    // The build's end brings it back (the driver's waiter).
                    return Ok(Action::requeue(Duration::from_secs(3600)));
                }
                Outcome::Done { result, elapsed } => {
                    built(ctx, &function, &previous, result, elapsed).await
                }
            }
        }
    };
    let (status, hosts) = match ctx.ready_when {
        ReadyWhen::Built => (status, None),
        ReadyWhen::Serving => {
            let hosts = term.hosts.ready();
            let revision = status.artifact.as_ref().map(|a| a.revision());
            let count = ctx.serving.count(&hosts, &key, revision.as_ref()).await;
            let status = status::serving(status, count, &previous, &status::now());
            (status, Some(hosts.len()))
        }
    };
    let status = status::with_ignored(status, ignored, &previous, &status::now());
    if status != previous {
        writer.write(&status).await?;
    }
    // Loading with hosts: look again soon; host pod changes bring every Function back anyway.
    Ok(match (status.phase, hosts) {
        (Phase::Loading, Some(n)) if n > 0 => Action::requeue(Duration::from_secs(1)),
        _ => Action::requeue(Duration::from_secs(3600)),
    })
}

/// The status a finished build gives the Function's generation, not written yet; records an
/// Event.
async fn built(
    ctx: &Context,
    function: &Function,
    previous: &FunctionStatus,
    outcome: Result<wasmless_build::pipeline::Artifact, String>,
    elapsed: Duration,
) -> FunctionStatus {
    let key = FunctionKey::new(
        &function.namespace().unwrap_or_default(),
        &function.name_any(),
    );
    let generation = function.metadata.generation;
    let url = children::url(function);
    let status = status::built(
        previous,
        generation,
        url,
        outcome.as_ref().map_err(Clone::clone),
        &status::now(),
    );
    let event = match &outcome {
        Ok(a) => {
            tracing::info!(function = %key, digest = %a.digest, cached = a.cached, "built generation");
            Event {
                type_: EventType::Normal,
                reason: if a.cached { "Cached" } else { "Built" }.into(),
                note: Some(format!(
                    "{} ({} bytes, {}) in {} ms",
                    a.digest,
                    a.size,
                    a.abi.as_str(),
                    elapsed.as_millis()
                )),
                action: "Build".into(),
                secondary: None,
            }
        }
        Err(message) => {
            tracing::warn!(function = %key, "build failed: {message}");
            Event {
                type_: EventType::Warning,
                reason: "BuildFailed".into(),
                note: Some(status::trim(message).chars().take(1000).collect()),
                action: "Build".into(),
                secondary: None,
            }
        }
    };
    publish(ctx, function, &event).await;
    status
}

/// Records an invalid spec in status (Failed, `InvalidSpec`, before any build) and in an Event,
/// once per generation and message.
async fn refuse(
    ctx: &Context,
    function: &Function,
    writer: &mut StatusWriter<'_>,
    previous: &FunctionStatus,
    invalid: &Invalid,
) -> Result<(), Error> {
    let generation = function.metadata.generation;
    let url = children::url(function);
    let status = status::invalid(previous, generation, url, invalid, &status::now());
    if status == *previous {
        return Ok(());
    }
    let key = FunctionKey::new(
        &function.namespace().unwrap_or_default(),
        &function.name_any(),
    );
    tracing::warn!(function = %key, "invalid spec, not built: {invalid}");
    match writer.write(&status).await {
        // The API server refuses this object's status itself (a rule it breaks): no retry helps.
        Err(kube::Error::Api(e)) if e.code == 422 => {
            tracing::warn!(function = %key, "cannot record the invalid spec in status: {}", e.message);
        }
        other => other?,
    }
    let event = Event {
        type_: EventType::Warning,
        reason: Failure::InvalidSpec.reason().into(),
        note: Some(
            status::trim(&invalid.to_string())
                .chars()
                .take(1000)
                .collect(),
        ),
        action: "Validate".into(),
        secondary: None,
    };
    publish(ctx, function, &event).await;
    Ok(())
}

/// Records that a Service of the Function's name is someone else's, once per generation.
async fn conflict(
    ctx: &Context,
    function: &Function,
    writer: &mut StatusWriter<'_>,
    previous: &FunctionStatus,
) -> Result<(), Error> {
    let name = function.name_any();
    let message = format!(
        "Service {}/{name} exists and is not this Function's: it is left alone, and the \
         Function is not served at its name until that Service is deleted or the Function renamed",
        function.namespace().unwrap_or_default()
    );
    let status = status::failed(
        previous,
        function.metadata.generation,
        children::url(function),
        Failure::ServiceConflict,
        message.clone(),
        &status::now(),
    );
    if status == *previous {
        return Ok(());
    }
    tracing::warn!(function = %format!("{}/{name}", function.namespace().unwrap_or_default()), "{message}");
    writer.write(&status).await?;
    let event = Event {
        type_: EventType::Warning,
        reason: Failure::ServiceConflict.reason().into(),
        note: Some(message),
        action: "ApplyService".into(),
        secondary: None,
    };
    publish(ctx, function, &event).await;
    Ok(())
}

async fn publish(ctx: &Context, function: &Function, event: &Event) {
    // The recorder folds events with the same reference and reason into one series that keeps
    // the first note; with the resourceVersion in the reference, each build is its own Event.
    let mut regarding = function.object_ref(&());
    regarding.resource_version = function.metadata.resource_version.clone();
    if let Err(e) = ctx.recorder.publish(event, &regarding).await {
        tracing::warn!(function = %function.name_any(), "cannot record event: {e}");
    }
}

#[cfg(test)]
mod tests;
