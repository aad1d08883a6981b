//! NATSTriggers: the leader subscribes to each trigger's subject and invokes the trigger's
//! functions with each message (Kubeless's NATS consumer, in the controller instead of a pod
//! of its own).
//!
//! Delivery (at most once, the queue group, replies, bounds) is [`wasmless_build::triggers::subscription`]'s.
//!
//! - **Level-triggered**: at each change to a NATSTrigger or a Function, and every
//!   [`RESYNC`], the subscriptions are compared with what the triggers ask and started, handed
//!   their new functions, or stopped (a deleted trigger's at once). Status is written when its
//!   condition or functions change, its counters at most every [`RESYNC`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use wasmless_api::function::Function;
use wasmless_api::trigger::{NatsTrigger, NatsTriggerStatus, TriggerKey};

use super::{Context, Ready};
use wasmless_build::triggers::subscription::{
    Connection, Counters, Destination, Route, Subscription, queue_group,
};

/// How often subscriptions are checked without a change, and counters written at most.
pub const RESYNC: Duration = Duration::from_secs(2);

/// Which of the two watches an event came from, and whether it was its first full list.
enum Seen {
    Triggers(bool),
    Functions(bool),
}

/// Runs until `shutdown` resolves; dropping the future unsubscribes everything at once (a
/// replica that lost its Lease stops invoking).
pub async fn run(
    ctx: Arc<Context>,
    leading: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (triggers, triggers_writer) = reflector::store::<NatsTrigger>();
    let (functions, functions_writer) = reflector::store::<Function>();
    let trigger_events = watcher(
        Api::<NatsTrigger>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .backoff(crate::backoff::Watch::new())
    .reflect(triggers_writer)
    .map(|e| Seen::Triggers(matches!(e, Ok(watcher::Event::InitDone))));
    let function_events = watcher(
        Api::<Function>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .backoff(crate::backoff::Watch::new())
    .reflect(functions_writer)
    .map(|e| Seen::Functions(matches!(e, Ok(watcher::Event::InitDone))));
    let mut events = std::pin::pin!(futures::stream::select(trigger_events, function_events));
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut triggers_listed, mut functions_listed) = (false, false);
    let mut subscriptions: HashMap<TriggerKey, Subscription> = HashMap::new();
    let mut nats = Connection::new(ctx.nats_url.clone(), "wasmless-controller");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            event = events.next() => {
                // A burst (a first list, many Functions changing) is one sync.
                let mut next = event;
                loop {
                    match next {
                        Some(Seen::Triggers(init)) => triggers_listed |= init,
                        Some(Seen::Functions(init)) => functions_listed |= init,
                        None => return,
                    }
                    match events.next().now_or_never() {
                        Some(event) => next = event,
                        None => break,
                    }
                }
            }
            _ = resync.tick() => {}
        }
        if !*leading.borrow() {
            subscriptions.clear();
            continue;
        }
        if triggers_listed && functions_listed {
            sync(&ctx, &mut nats, &triggers, &functions, &mut subscriptions).await;
        }
    }
}

/// Makes the subscriptions what the triggers ask, and writes their status.
async fn sync(
    ctx: &Arc<Context>,
    nats: &mut Connection,
    triggers: &Store<NatsTrigger>,
    functions: &Store<Function>,
    subscriptions: &mut HashMap<TriggerKey, Subscription>,
) {
    let all = triggers.state();
    let keys: HashSet<TriggerKey> = all.iter().map(|t| t.key()).collect();
    subscriptions.retain(|key, s| keys.contains(key) && !s.ended());
    // One connection attempt per sync, whatever the number of triggers.
    let client = match all.is_empty() {
        true => Err(String::new()),
        false => nats.client().await,
    };
    for trigger in all {
        let ready = Ready {
            previous: trigger
                .status
                .as_ref()
                .map(|s| s.conditions.as_slice())
                .unwrap_or_default(),
            generation: trigger.metadata.generation,
            now: Timestamp::now().to_string(),
        };
        let condition = subscribe(ctx, &client, &trigger, functions, subscriptions)
            .await
            .map_or_else(
                |(reason, message)| ready.condition(false, reason, message),
                |message| ready.condition(true, "Subscribed", message),
            );
        let key = trigger.key();
        if let Err(e) = write(ctx, &trigger, condition, subscriptions.get_mut(&key)).await {
            tracing::warn!(trigger = %key, "NATSTrigger status: {e}");
        }
    }
}

/// Makes `trigger`'s subscription what it asks (or none); what the `Ready` condition says.
async fn subscribe(
    ctx: &Arc<Context>,
    client: &Result<async_nats::Client, String>,
    trigger: &NatsTrigger,
    functions: &Store<Function>,
    subscriptions: &mut HashMap<TriggerKey, Subscription>,
) -> Result<String, (&'static str, String)> {
    let key = trigger.key();
    let uid = trigger.uid().unwrap_or_default();
    let target = trigger.spec.check().map_err(|problems| {
        subscriptions.remove(&key);
        ("InvalidSpec", problems.join("; "))
    })?;
    let route = Route::select(
        uid.clone(),
        &key.namespace,
        &target,
        functions.state().iter().map(|f| f.as_ref()),
    );
    if route.functions.is_empty() {
        subscriptions.remove(&key);
        return Err((
            "FunctionNotFound",
            format!(
                "no Function of namespace {} matches: messages on {:?} are not read",
                key.namespace, trigger.spec.topic
            ),
        ));
    }
    // A subscription already made is kept while NATS is away: the client subscribes again
    // when it reconnects.
    let client = client
        .as_ref()
        .map_err(|why| ("NATSUnavailable", why.clone()))?;
    let subject = trigger.spec.topic.as_str();
    let queue = queue_group(&key, &trigger.spec);
    let running = subscriptions.get(&key).filter(|s| s.uid == uid);
    match running {
        Some(s) if s.subject == subject && s.queue == queue => s.set_route(route),
        _ => {
            // The same trigger moved to another subject keeps counting; another trigger of the
            // same name starts from its own status.
            let counters = match running {
                Some(s) => s.counters.clone(),
                None => {
                    let status = trigger.status.clone().unwrap_or_default();
                    Arc::new(Counters::new(
                        status.delivered,
                        status.failed,
                        status.last_result,
                    ))
                }
            };
            subscriptions.remove(&key);
            let to = Destination {
                http: ctx.http.clone(),
                base: ctx.functions_url.clone(),
            };
            let started =
                Subscription::start(client, &key, subject, &queue, route, to, counters).await;
            let subscription = started.map_err(|e| {
                (
                    "NATSUnavailable",
                    format!("cannot subscribe to {subject:?}: {e}"),
                )
            })?;
            subscriptions.insert(key, subscription);
        }
    }
    Ok(format!(
        "delivers each message on {subject:?} (queue group {queue:?})"
    ))
}

/// Writes `trigger`'s status when it changed: its condition, and its subscription's functions
/// and counts. A change of the counts alone waits [`RESYNC`] since the last write (a busy
/// subject would otherwise write at every message).
async fn write(
    ctx: &Context,
    trigger: &NatsTrigger,
    ready: wasmless_api::function::Condition,
    running: Option<&mut Subscription>,
) -> Result<(), kube::Error> {
    let previous = trigger.status.clone().unwrap_or_default();
    let mut status = NatsTriggerStatus {
        observed_generation: trigger.metadata.generation,
        conditions: vec![ready],
        functions: Vec::new(),
        ..previous.clone()
    };
    if let Some(running) = running {
        status.functions = running.functions();
        let counted = NatsTriggerStatus {
            delivered: running.counters.delivered.load(Ordering::Relaxed),
            failed: running.counters.failed.load(Ordering::Relaxed),
            last_result: running.counters.last(),
            ..status.clone()
        };
        let only_counts = status == previous;
        if only_counts && running.written.is_some_and(|t| t.elapsed() < RESYNC) {
            return Ok(());
        }
        status = counted;
        if status != previous {
            running.written = Some(Instant::now());
        }
    }
    if status == previous {
        return Ok(());
    }
    let key = trigger.key();
    let api = Api::<NatsTrigger>::namespaced(ctx.client.clone(), &key.namespace);
    let patch = serde_json::json!({ "status": status });
    api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
