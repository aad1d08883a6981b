//! CronJobTriggers: the leader invokes each trigger's function at its schedule's ticks, and each
//! reconcile requeues itself for the next tick.
//!
//! - **Once per tick across replicas**: a tick is claimed by writing it to
//!   `status.lastScheduleTime` with the resourceVersion the reconcile read, so the API server
//!   refuses the write (409) if anything wrote the trigger since, such as another replica that
//!   claimed the tick; only a successful claim invokes. A replica that lost the Lease stops at
//!   once. A leader that dies between its claim and its request loses that tick (at most once).
//! - **Missed ticks** (no leader ran, the controller was stopped, an invocation outlasted the
//!   next tick): as Kubernetes CronJob, only the latest missed tick runs, late, and only if it
//!   is at most `startingDeadlineSeconds` old (unset: however old); the others are skipped.
//! - A tick comes while the previous invocation runs: it waits for it, then is a missed tick
//!   (Kubernetes' `concurrencyPolicy: Forbid`, never two invocations of one trigger at once).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

use wasmless_api::function::{Condition, Function};
use wasmless_api::trigger::{CronJobTrigger, CronJobTriggerStatus, CronResult};

use super::{Context, Error, Ready};
use crate::backoff::Watch;
use wasmless_api::trigger::schedule::Schedule;
use wasmless_build::triggers::invoke::{self, Invocation};

struct Term {
    ctx: Arc<Context>,
    leading: watch::Receiver<bool>,
}

pub async fn run(
    ctx: Arc<Context>,
    leading: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let triggers = Api::<CronJobTrigger>::all(ctx.client.clone());
    Controller::new(triggers, watcher::Config::default())
        .trigger_backoff(Watch::new())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(Term { ctx, leading }))
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("CronJobTrigger reconcile: {e}");
            }
        })
        .await;
}

fn error_policy(_: Arc<CronJobTrigger>, error: &Error, _: Arc<Term>) -> Action {
    tracing::warn!("CronJobTrigger reconcile failed, retrying in 1 s: {error}");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(trigger: Arc<CronJobTrigger>, term: Arc<Term>) -> Result<Action, Error> {
    if !*term.leading.borrow() {
        return Ok(Action::await_change());
    }
    let ctx = &term.ctx;
    let namespace = trigger.namespace().ok_or(Error::NoNamespace)?;
    let api = Api::<CronJobTrigger>::namespaced(ctx.client.clone(), &namespace);
    let name = trigger.name_any();
    let spec = &trigger.spec;
    let previous = trigger.status.clone().unwrap_or_default();
    let generation = trigger.metadata.generation;
    let now = Timestamp::now();
    let ready = Ready {
        previous: &previous.conditions,
        generation,
        now: now.to_string(),
    };

    let schedule = spec.check().map_err(|p| p.join("; ")).and_then(|()| {
        Schedule::parse(&spec.schedule, &spec.time_zone).map_err(|e| format!("spec.schedule: {e}"))
    });
    let schedule = match schedule {
        Ok(schedule) => schedule,
        Err(message) => {
            let status = with_ready(
                &previous,
                generation,
                ready.condition(false, "InvalidSpec", message),
            );
            write(&api, &name, &previous, &status).await?;
            return Ok(Action::await_change());
        }
    };
    if spec.suspend {
        let status = with_ready(
            &previous,
            generation,
            ready.condition(false, "Suspended", "spec.suspend: no invocations".into()),
        );
        write(&api, &name, &previous, &status).await?;
        return Ok(Action::await_change());
    }
    let function = Api::<Function>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&spec.function_name)
        .await?;
    let key = trigger.function();
    let ready_now = match &function {
        Some(_) => ready.condition(
            true,
            "Scheduled",
            format!(
                "invokes function {key} on {:?}{}",
                spec.schedule,
                match spec.time_zone.as_str() {
                    "" => String::new(),
                    zone => format!(" ({zone})"),
                }
            ),
        ),
        None => ready.condition(
            false,
            "FunctionNotFound",
            format!(
                "no Function {:?} in namespace {namespace}: ticks are recorded, nothing is invoked",
                key.name
            ),
        ),
    };

    // The tick due now: the latest one not claimed yet, after the trigger was made.
    let since = previous
        .last_schedule_time
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .or_else(|| trigger.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now);
    let mut status = with_ready(&previous, generation, ready_now);
    match due(&schedule, now, since, spec.starting_deadline_seconds) {
        Due::Nothing => {}
        Due::Skip(tick) => {
            // Not claimed: the next tick is the next chance. (The message names the tick only,
            // so it stays the same until then: nothing is written again.)
            tracing::info!(trigger = %trigger.key(), %tick, "missed tick skipped: past startingDeadlineSeconds");
            status.conditions[0].message = format!(
                "{}; skipped the missed tick of {tick}: later than startingDeadlineSeconds",
                status.conditions[0].message
            );
        }
        Due::Fire(tick) => {
            let timeout = invoke::timeout(function.as_ref());
            match fire(
                ctx,
                &api,
                &trigger,
                tick,
                &status,
                function.is_some(),
                timeout,
            )
            .await?
            {
                Some(fired) => status = fired,
                // Another write came first (another replica's claim, or ours not yet in the
                // cache): its watch event brings the trigger back.
                None => return Ok(Action::requeue(Duration::from_secs(1))),
            }
        }
    }
    write(&api, &name, &previous, &status).await?;
    Ok(match schedule.next_after(Timestamp::now()) {
        Some(next) => {
            let wait = next.as_millisecond() - Timestamp::now().as_millisecond();
            Action::requeue(Duration::from_millis(wait.clamp(20, 3_600_000) as u64))
        }
        None => Action::await_change(),
    })
}

/// What a reconcile does about the schedule.
#[derive(Debug, PartialEq)]
enum Due {
    Nothing,
    /// The latest tick not claimed yet: invoke it.
    Fire(Timestamp),
    /// A missed tick older than `startingDeadlineSeconds`.
    Skip(Timestamp),
}

/// The latest tick at or before `now` and after `since` (the last claimed, or the trigger's
/// creation), if any: missed ones before it are never run, and it is skipped when it is later
/// than `deadline` seconds.
fn due(schedule: &Schedule, now: Timestamp, since: Timestamp, deadline: Option<i64>) -> Due {
    match schedule.latest(now).filter(|tick| *tick > since) {
        None => Due::Nothing,
        Some(tick) if deadline.is_some_and(|d| now.as_second() - tick.as_second() > d) => {
            Due::Skip(tick)
        }
        Some(tick) => Due::Fire(tick),
    }
}

/// Claims `tick` (with the resourceVersion read) and, once claimed, invokes the function; the
/// status with the result. `None`: the claim was refused, nothing was invoked.
async fn fire(
    ctx: &Context,
    api: &Api<CronJobTrigger>,
    trigger: &CronJobTrigger,
    tick: Timestamp,
    status: &CronJobTriggerStatus,
    function_exists: bool,
    timeout: Duration,
) -> Result<Option<CronJobTriggerStatus>, Error> {
    let name = trigger.name_any();
    let tick_text = tick.to_string();
    let claim = serde_json::json!({
        "metadata": { "resourceVersion": trigger.meta().resource_version },
        "status": { "lastScheduleTime": tick_text },
    });
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&claim))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            tracing::debug!(trigger = %trigger.key(), tick = %tick_text, "tick claimed elsewhere");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    }
    let key = trigger.function();
    let result = if function_exists {
        let invocation = Invocation::cron(
            &key,
            &tick_text,
            invoke::event_id(&trigger.uid().unwrap_or_default(), &tick_text),
            trigger.spec.payload.as_ref().map(|p| &p.value),
            timeout,
        );
        let answer = invoke::send(&ctx.http, ctx.functions_url.as_deref(), &invocation).await;
        CronResult {
            schedule_time: tick_text.clone(),
            status_code: answer.status_code,
            error: answer.error,
        }
    } else {
        CronResult {
            schedule_time: tick_text.clone(),
            status_code: None,
            error: format!("no Function {:?} in namespace {}", key.name, key.namespace),
        }
    };
    tracing::info!(
        trigger = %trigger.key(),
        tick = %tick_text,
        status = result.status_code.unwrap_or_default(),
        error = %result.error,
        "cron tick fired"
    );
    let mut fired = status.clone();
    fired.last_schedule_time = Some(tick_text.clone());
    if result.status_code.is_some_and(|c| (200..300).contains(&c)) {
        fired.last_successful_time = Some(tick_text);
    }
    fired.last_result = Some(result);
    Ok(Some(fired))
}

fn with_ready(
    previous: &CronJobTriggerStatus,
    generation: Option<i64>,
    ready: Condition,
) -> CronJobTriggerStatus {
    CronJobTriggerStatus {
        observed_generation: generation,
        conditions: vec![ready],
        ..previous.clone()
    }
}

async fn write(
    api: &Api<CronJobTrigger>,
    name: &str,
    previous: &CronJobTriggerStatus,
    status: &CronJobTriggerStatus,
) -> Result<(), Error> {
    if status == previous {
        return Ok(());
    }
    let patch = serde_json::json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn the_latest_unclaimed_tick_once_and_missed_ones_by_the_deadline() {
        let every10 = Schedule::parse("*/10 * * * * *", "").unwrap();
        // On time: the tick just passed.
        assert_eq!(
            due(
                &every10,
                at("2026-01-01T00:00:10.2Z"),
                at("2026-01-01T00:00:00Z"),
                None
            ),
            Due::Fire(at("2026-01-01T00:00:10Z"))
        );
        // Claimed already: nothing until the next.
        assert_eq!(
            due(
                &every10,
                at("2026-01-01T00:00:19Z"),
                at("2026-01-01T00:00:10Z"),
                None
            ),
            Due::Nothing
        );
        // A minute without a leader: only the latest missed tick, late.
        assert_eq!(
            due(
                &every10,
                at("2026-01-01T00:01:15Z"),
                at("2026-01-01T00:00:10Z"),
                None
            ),
            Due::Fire(at("2026-01-01T00:01:10Z"))
        );
        // ... unless it is past the deadline.
        assert_eq!(
            due(
                &every10,
                at("2026-01-01T00:01:15Z"),
                at("2026-01-01T00:00:10Z"),
                Some(3)
            ),
            Due::Skip(at("2026-01-01T00:01:10Z"))
        );
        assert_eq!(
            due(
                &every10,
                at("2026-01-01T00:01:12Z"),
                at("2026-01-01T00:00:10Z"),
                Some(3)
            ),
            Due::Fire(at("2026-01-01T00:01:10Z"))
        );
        // A new trigger: nothing from before its creation.
        assert_eq!(
            due(
                &every10,
                at("2026-01-01T00:00:15Z"),
                at("2026-01-01T00:00:12Z"),
                None
            ),
            Due::Nothing
        );
    }
}
