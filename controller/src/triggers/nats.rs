//! NATSTriggers: the leader subscribes to each trigger's subject and invokes the trigger's
//! functions with each message (Kubeless's NATS consumer, in the controller instead of a pod
//! of its own).
//!
//! Delivery (at most once, the queue group, replies, bounds) is [`super::subscription`]'s.
//!
//! - **Level-triggered**: at each change to a NATSTrigger or a Function, and every
//!   [`RESYNC`], the subscriptions are compared with what the triggers ask and started, handed
//!   their new functions, or stopped (a deleted trigger's at once). Status is written when its
//!   condition or functions change, its counters at most every [`RESYNC`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::core::SelectorExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use wasmless_runtime::FunctionKey;
use wasmless_runtime::function::Function;
use wasmless_runtime::trigger::nats::Target;
use wasmless_runtime::trigger::{NatsTrigger, NatsTriggerStatus, TriggerKey};

use super::subscription::{Connection, Counters, Destination, Route, Subscription, queue_group};
use super::{Context, invoke, ready};

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
    .backoff(crate::backoff::Exponential::watch())
    .reflect(triggers_writer)
    .map(|e| Seen::Triggers(matches!(e, Ok(watcher::Event::InitDone))));
    let function_events = watcher(
        Api::<Function>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .backoff(crate::backoff::Exponential::watch())
    .reflect(functions_writer)
    .map(|e| Seen::Functions(matches!(e, Ok(watcher::Event::InitDone))));
    let mut events = std::pin::pin!(futures::stream::select(trigger_events, function_events));
    let mut resync = tokio::time::interval(RESYNC);
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
    subscriptions.retain(|key, _| all.iter().any(|t| t.key() == *key));
    for trigger in all {
        let key = trigger.key();
        if let Err(e) = sync_one(ctx, nats, &trigger, functions, subscriptions).await {
            tracing::warn!(trigger = %key, "NATSTrigger: {e}");
        }
    }
}

async fn sync_one(
    ctx: &Arc<Context>,
    nats: &mut Connection,
    trigger: &NatsTrigger,
    functions: &Store<Function>,
    subscriptions: &mut HashMap<TriggerKey, Subscription>,
) -> Result<(), kube::Error> {
    let key = trigger.key();
    let previous = trigger.status.clone().unwrap_or_default();
    let now = Timestamp::now().to_string();
    let condition = |ok: bool, reason: &str, message: String| {
        ready(
            &previous.conditions,
            ok,
            reason,
            message,
            trigger.metadata.generation,
            &now,
        )
    };
    let route = match trigger.spec.check() {
        Ok(target) => Ok(route(trigger, &target, functions)),
        Err(problems) => Err(condition(false, "InvalidSpec", problems.join("; "))),
    };
    let route = match route {
        Ok(route) if route.functions.is_empty() => Err(condition(
            false,
            "FunctionNotFound",
            format!(
                "no Function of namespace {} matches: messages on {:?} are not read",
                key.namespace, trigger.spec.topic
            ),
        )),
        other => other,
    };
    let subject = trigger.spec.topic.clone();
    let queue = queue_group(&key, &trigger.spec);
    let ready_now = match route {
        Err(not_ready) => {
            subscriptions.remove(&key);
            not_ready
        }
        Ok(route) => match nats.client().await {
            // A subscription already made is kept: the client subscribes again when it
            // reconnects.
            Err(why) => condition(false, "NATSUnavailable", why),
            Ok(client) => {
                let same = subscriptions
                    .get(&key)
                    .is_some_and(|s| s.subject == subject && s.queue == queue);
                if same {
                    if let Some(running) = subscriptions.get(&key) {
                        running.set_route(route);
                    }
                } else {
                    subscriptions.remove(&key);
                    let to = Destination {
                        http: ctx.http.clone(),
                        base: ctx.functions_url.clone(),
                    };
                    let counters = Arc::new(Counters::new(
                        previous.delivered,
                        previous.failed,
                        previous.last_result.clone(),
                    ));
                    let started =
                        Subscription::start(&client, &key, &subject, &queue, route, to, counters)
                            .await;
                    match started {
                        Ok(subscription) => {
                            subscriptions.insert(key.clone(), subscription);
                        }
                        Err(e) => {
                            return write(
                                ctx,
                                trigger,
                                &previous,
                                NatsTriggerStatus {
                                    observed_generation: trigger.metadata.generation,
                                    conditions: vec![condition(
                                        false,
                                        "NATSUnavailable",
                                        format!("cannot subscribe to {subject:?}: {e}"),
                                    )],
                                    ..previous.clone()
                                },
                            )
                            .await;
                        }
                    }
                }
                condition(
                    true,
                    "Subscribed",
                    format!("delivers each message on {subject:?} (queue group {queue:?})"),
                )
            }
        },
    };

    let mut status = NatsTriggerStatus {
        observed_generation: trigger.metadata.generation,
        conditions: vec![ready_now],
        ..previous.clone()
    };
    if let Some(running) = subscriptions.get_mut(&key) {
        status.functions = running.functions();
        // Counters only every RESYNC: a busy subject would otherwise write at every event.
        if running.written.is_none_or(|t| t.elapsed() >= RESYNC) {
            status.delivered = running.counters.delivered.load(Ordering::Relaxed);
            status.failed = running.counters.failed.load(Ordering::Relaxed);
            status.last_result = running.counters.last();
            running.written = Some(Instant::now());
        }
    } else {
        status.functions.clear();
    }
    write(ctx, trigger, &previous, status).await
}

/// The functions of the trigger's own namespace it names or selects, sorted.
fn route(trigger: &NatsTrigger, target: &Target, functions: &Store<Function>) -> Route {
    let namespace = trigger.metadata.namespace.as_deref().unwrap_or_default();
    let mut chosen: Vec<(FunctionKey, Duration)> = functions
        .state()
        .iter()
        .filter(|f| f.metadata.namespace.as_deref() == Some(namespace))
        .filter(|f| match target {
            Target::Named(name) => f.metadata.name.as_deref() == Some(name.as_str()),
            Target::Selected(selector) => selector.matches(f.labels()),
        })
        .map(|f| {
            (
                FunctionKey::new(namespace, &f.name_any()),
                invoke::timeout(Some(f)),
            )
        })
        .collect();
    chosen.sort_by(|a, b| a.0.cmp(&b.0));
    Route {
        uid: trigger.uid().unwrap_or_default(),
        functions: chosen,
    }
}

async fn write(
    ctx: &Context,
    trigger: &NatsTrigger,
    previous: &NatsTriggerStatus,
    status: NatsTriggerStatus,
) -> Result<(), kube::Error> {
    if status == *previous {
        return Ok(());
    }
    let key = trigger.key();
    let api = Api::<NatsTrigger>::namespaced(ctx.client.clone(), &key.namespace);
    let patch = serde_json::json!({ "status": status });
    api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Function {
        let labels: std::collections::BTreeMap<&str, &str> = labels.iter().copied().collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"runtime": "wat", "function": "(module)"},
        }))
        .unwrap()
    }

    #[test]
    fn a_route_takes_the_matching_functions_of_the_triggers_namespace_only() {
        let (store, mut writer) = reflector::store::<Function>();
        for f in [
            function("test", "b", &[("topic", "orders")]),
            function("test", "a", &[("topic", "orders"), ("x", "y")]),
            function("test", "c", &[("topic", "other")]),
            function("other", "a", &[("topic", "orders")]),
            function("other", "named", &[]),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(f));
        }
        let trigger: NatsTrigger = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "t", "namespace": "test", "uid": "u"},
            "spec": {"topic": "orders", "functionSelector": {"matchLabels": {"topic": "orders"}}},
        }))
        .unwrap();
        let target = trigger.spec.check().unwrap();
        let names = |route: Route| -> Vec<String> {
            route.functions.iter().map(|(k, _)| k.to_string()).collect()
        };
        assert_eq!(
            names(route(&trigger, &target, &store)),
            ["test/a", "test/b"]
        );
        // By name: another namespace's function of that name is never taken.
        let named = route(&trigger, &Target::Named("named".into()), &store);
        assert!(named.functions.is_empty());
        assert_eq!(named.uid, "u");
        assert_eq!(
            names(route(&trigger, &Target::Named("c".into()), &store)),
            ["test/c"]
        );
    }
}
