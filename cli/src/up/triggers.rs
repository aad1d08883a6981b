//! Triggers in `wasmless up`: `HTTPTrigger` and `CronJobTrigger` documents in the directory's
//! manifest files (beside Functions, or in files of their own), read again at every sync.
//! HTTPTriggers route on the function listener as on a cluster's host (the same table and the
//! same oldest-holds rule: with no creation time here, the first by namespace and name).
//! CronJobTriggers each get a task that invokes the function through the function listener at
//! every tick, with the controller's schedule reading and headers; ticks passed while `up` was
//! not running are not run, and there is no status: each firing is logged. NATSTriggers each
//! get a subscription on `--nats-url`, delivering as the controller's do
//! ([`wasmless_build::triggers::subscription`]) to the directory's Functions they name or
//! select (by the labels in their manifests); failures are logged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;
use tokio::task::JoinHandle;

use wasmless_api::function::{API_VERSION, DEFAULT_NAMESPACE, Function};
use wasmless_api::trigger::schedule::Schedule;
use wasmless_api::trigger::{
    CronJobTrigger, CronJobTriggerSpec, HttpTrigger, NatsTrigger, NatsTriggerSpec, TriggerKey,
};
use wasmless_build::triggers::invoke::{self, Invocation};
use wasmless_build::triggers::subscription::{
    Counters, Destination, Route, Subscription, queue_group,
};
use wasmless_runtime::Host;
use wasmless_runtime::routes::{Claim, holders};

/// A document of a manifest file that triggers need: a trigger, or a Function (its labels, for
/// NATSTriggers' selectors).
enum Document {
    Http(HttpTrigger),
    Cron(CronJobTrigger),
    Nats(NatsTrigger),
    Function(Box<Function>),
}

/// The triggers `up` serves.
pub struct Triggers {
    host: Arc<Host>,
    /// Where cron invocations go: this `up`'s own function listener.
    functions: String,
    http: reqwest::Client,
    /// One task per CronJobTrigger, with the spec it runs.
    cron: BTreeMap<TriggerKey, (CronJobTriggerSpec, JoinHandle<()>)>,
    /// `--nats-url`'s connection, if given.
    nats: Option<async_nats::Client>,
    /// One subscription per NATSTrigger, with the spec and route it runs.
    subscriptions: BTreeMap<TriggerKey, ((NatsTriggerSpec, Route), Subscription)>,
}

impl Drop for Triggers {
    fn drop(&mut self) {
        for (_, task) in self.cron.values() {
            task.abort();
        }
    }
}

impl Triggers {
    pub fn new(host: Arc<Host>, functions: SocketAddr, nats: Option<async_nats::Client>) -> Self {
        Self {
            host,
            functions: format!("http://{functions}"),
            http: reqwest::Client::new(),
            cron: BTreeMap::new(),
            nats,
            subscriptions: BTreeMap::new(),
        }
    }

    /// Reads the triggers of `files` and serves exactly those: routes swapped whole, cron tasks
    /// started, restarted when their spec changed, stopped when gone. A file that does not
    /// parse adds nothing (its error is the Function loader's to log).
    pub async fn sync(&mut self, files: &[PathBuf]) {
        let mut http = Vec::new();
        let mut cron: BTreeMap<TriggerKey, CronJobTrigger> = BTreeMap::new();
        let mut nats: BTreeMap<TriggerKey, NatsTrigger> = BTreeMap::new();
        let mut functions = Vec::new();
        for file in files {
            for document in read(file) {
                match document {
                    Document::Http(t) => http.push(t),
                    Document::Cron(t) => {
                        cron.entry(t.key()).or_insert(t);
                    }
                    Document::Nats(t) => {
                        nats.entry(t.key()).or_insert(t);
                    }
                    Document::Function(f) => functions.push(*f),
                }
            }
        }
        self.sync_nats(nats, &functions).await;
        let claims = http.iter().filter_map(|t| match Claim::of(t) {
            Ok(claim) => Some(claim),
            Err(problems) => {
                tracing::error!(trigger = %t.key(), "HTTPTrigger routes nothing: {}", problems.join("; "));
                None
            }
        });
        let held = holders(claims);
        for t in &http {
            if let Ok(route) = t.spec.check()
                && let Some(holder) = held.holder(&route)
                && holder.trigger != t.key()
            {
                tracing::error!(trigger = %t.key(), "HTTPTrigger routes nothing: {route} is held by {}", holder.trigger);
            }
        }
        let table = held.table();
        tracing::info!(routes = table.len(), "HTTPTrigger routes");
        self.host.routes().set(table);

        self.cron.retain(|key, (spec, task)| {
            let keep = cron.get(key).is_some_and(|t| t.spec == *spec);
            if !keep {
                task.abort();
            }
            keep
        });
        for (key, trigger) in cron {
            if self.cron.contains_key(&key) {
                continue;
            }
            let schedule = trigger
                .spec
                .check()
                .map_err(|p| p.join("; "))
                .and_then(|()| {
                    Schedule::parse(&trigger.spec.schedule, &trigger.spec.time_zone)
                        .map_err(|e| format!("spec.schedule: {e}"))
                });
            let task = match schedule {
                Ok(schedule) => tokio::spawn(tick(
                    trigger.clone(),
                    schedule,
                    self.functions.clone(),
                    self.http.clone(),
                )),
                Err(e) => {
                    tracing::error!(trigger = %key, "CronJobTrigger not scheduled: {e}");
                    tokio::spawn(async {})
                }
            };
            self.cron.insert(key, (trigger.spec, task));
        }
    }
}

impl Triggers {
    /// Subscriptions for exactly `triggers`: a changed spec or set of functions subscribes anew.
    async fn sync_nats(
        &mut self,
        triggers: BTreeMap<TriggerKey, NatsTrigger>,
        functions: &[Function],
    ) {
        let wanted: BTreeMap<TriggerKey, (NatsTriggerSpec, Route)> = triggers
            .into_iter()
            .filter_map(|(key, t)| {
                let target = match t.spec.check() {
                    Ok(target) => target,
                    Err(problems) => {
                        tracing::error!(trigger = %key, "NATSTrigger not served: {}", problems.join("; "));
                        return None;
                    }
                };
                let route = Route::select(key.to_string(), &key.namespace, &target, functions);
                if route.functions.is_empty() {
                    tracing::error!(trigger = %key, "NATSTrigger not served: no Function of namespace {} matches", key.namespace);
                    return None;
                }
                Some((key, (t.spec, route)))
            })
            .collect();
        self.subscriptions
            .retain(|key, (running, _)| wanted.get(key) == Some(running));
        for (key, (spec, route)) in wanted {
            if self.subscriptions.contains_key(&key) {
                continue;
            }
            let Some(client) = &self.nats else {
                tracing::error!(trigger = %key, "NATSTrigger not served: wasmless up has no --nats-url");
                continue;
            };
            let to = Destination {
                http: self.http.clone(),
                base: Some(self.functions.clone()),
            };
            let queue = queue_group(&key, &spec);
            let started = Subscription::start(
                client,
                &key,
                &spec.topic,
                &queue,
                route.clone(),
                to,
                Arc::new(Counters::default()),
            )
            .await;
            match started {
                Ok(subscription) => {
                    self.subscriptions
                        .insert(key, ((spec, route), subscription));
                }
                Err(e) => {
                    tracing::error!(trigger = %key, "NATSTrigger not served: cannot subscribe: {e}")
                }
            }
        }
    }
}

/// Invokes the trigger's function at each tick from now on (never two at once).
async fn tick(trigger: CronJobTrigger, schedule: Schedule, base: String, http: reqwest::Client) {
    let key = trigger.key();
    tracing::info!(trigger = %key, schedule = %trigger.spec.schedule, "CronJobTrigger scheduled");
    let mut after = Timestamp::now();
    while let Some(next) = schedule.next_after(after) {
        let wait = next.as_millisecond() - Timestamp::now().as_millisecond();
        tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
        if trigger.spec.suspend {
            after = next;
            continue;
        }
        let tick = next.to_string();
        let function = trigger.function();
        let invocation = Invocation::cron(
            &function,
            &tick,
            invoke::event_id(&key.to_string(), &tick),
            trigger.spec.payload.as_ref().map(|p| &p.value),
            wasmless_api::validate::MAX_TIMEOUT,
        );
        let result = invoke::send(&http, Some(&base), &invocation).await;
        tracing::info!(
            trigger = %key,
            tick = %tick,
            status = result.status_code.unwrap_or_default(),
            error = %result.error,
            "cron tick fired"
        );
        // Ticks that passed during the call are not run (concurrencyPolicy: Forbid).
        after = Timestamp::now().max(next);
    }
}

/// The trigger documents of one file; other kinds and documents that do not read are skipped.
fn read(file: &Path) -> Vec<Document> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let Ok(value) = serde_yaml::Value::deserialize(doc) else {
            break;
        };
        let field = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or_default();
        if field("apiVersion") != API_VERSION {
            continue;
        }
        let kind = field("kind").to_string();
        let document = match kind.as_str() {
            "HTTPTrigger" => serde_yaml::from_value::<HttpTrigger>(value).map(Document::Http),
            "CronJobTrigger" => serde_yaml::from_value::<CronJobTrigger>(value).map(Document::Cron),
            "NATSTrigger" => serde_yaml::from_value::<NatsTrigger>(value).map(Document::Nats),
            "Function" => match serde_yaml::from_value::<Function>(value) {
                Ok(f) => Ok(Document::Function(Box::new(f))),
                // The Function loader reports it.
                Err(_) => continue,
            },
            _ => continue,
        };
        match document {
            Ok(mut d) => {
                let meta = match &mut d {
                    Document::Http(t) => &mut t.metadata,
                    Document::Cron(t) => &mut t.metadata,
                    Document::Nats(t) => &mut t.metadata,
                    Document::Function(f) => &mut f.metadata,
                };
                meta.namespace
                    .get_or_insert_with(|| DEFAULT_NAMESPACE.to_string());
                out.push(d);
            }
            Err(e) => tracing::error!(file = %file.display(), "{kind} not read: {e}"),
        }
    }
    out
}
