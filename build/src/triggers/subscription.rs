//! One NATSTrigger's subscription: each message on its subject is delivered to every function
//! of its [`Route`], through [`invoke`], and answered when it asks for a reply. Used by the
//! controller's leader ([`super::nats`]) and by `wasmless up`.
//!
//! - **At most once**: core NATS keeps nothing, a failed invocation is counted, not retried.
//! - **Queue group** `<namespace>.<queueGroup or trigger name>` ([`queue_group`]): when two
//!   subscribers overlap (a leader handover) each message still goes to one of them.
//! - **Bounded**: [`MAX_IN_FLIGHT`] messages of one trigger at a time; past that the client
//!   buffers [`BUFFERED`] more, then drops them (NATS's slow consumer; not counted).
//! - **Replies**: a message with a reply subject (a NATS request) gets each function's answer
//!   there, its HTTP status in the `Status` header (502: not reached) and the function's name in
//!   `Function`, cut to what the server takes. `$` reply subjects (the server's own APIs, such
//!   as JetStream's) get nothing: a publisher could otherwise make the controller call them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinSet;

use kube::core::SelectorExt;
use wasmless_api::FunctionKey;
use wasmless_api::function::Function;
use wasmless_api::trigger::nats::{EVENT_NAMESPACE, Target};
use wasmless_api::trigger::{NatsResult, NatsTriggerSpec, TriggerKey};

use super::invoke::{self, Invocation};

/// Messages of one trigger being delivered at once.
pub const MAX_IN_FLIGHT: usize = 64;
/// Messages of one subscription the client holds beyond those (async-nats's default, 65,536,
/// would let one busy subject take the controller's memory).
pub const BUFFERED: usize = 1024;
/// Room left for headers in a reply of the server's largest message.
const REPLY_HEADROOM: usize = 4096;
/// How long connecting to NATS may take, and the wait before trying again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a subscription delivers to: its functions, each with how long a call may take.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Route {
    /// Names the trigger in each message's `event-id`.
    pub uid: String,
    pub functions: Vec<(FunctionKey, Duration)>,
}

impl Route {
    /// The Functions of `namespace` that `target` names or selects, sorted, each with its
    /// timeout; `uid` names the trigger.
    pub fn select<'a>(
        uid: String,
        namespace: &str,
        target: &Target,
        functions: impl IntoIterator<Item = &'a Function>,
    ) -> Self {
        let mut chosen: Vec<(FunctionKey, Duration)> = functions
            .into_iter()
            .filter(|f| f.metadata.namespace.as_deref() == Some(namespace))
            .filter(|f| match (target, &f.metadata.labels) {
                (Target::Named(name), _) => f.metadata.name.as_deref() == Some(name.as_str()),
                (Target::Selected(selector), Some(labels)) => selector.matches(labels),
                (Target::Selected(selector), None) => selector.matches(&Default::default()),
            })
            .map(|f| {
                let name = f.metadata.name.as_deref().unwrap_or_default();
                (FunctionKey::new(namespace, name), invoke::timeout(Some(f)))
            })
            .collect();
        chosen.sort_by(|a, b| a.0.cmp(&b.0));
        chosen.dedup_by(|a, b| a.0 == b.0);
        Self {
            uid,
            functions: chosen,
        }
    }
}

/// Where invocations go: `base` with `Host: <name>.<namespace>`, or each function's Service.
#[derive(Clone)]
pub struct Destination {
    pub http: reqwest::Client,
    pub base: Option<String>,
}

/// What a subscription has delivered, from the counts it started with.
#[derive(Debug, Default)]
pub struct Counters {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    last: Mutex<Option<NatsResult>>,
}

impl Counters {
    pub fn new(delivered: u64, failed: u64, last: Option<NatsResult>) -> Self {
        Self {
            delivered: AtomicU64::new(delivered),
            failed: AtomicU64::new(failed),
            last: Mutex::new(last),
        }
    }

    pub fn last(&self) -> Option<NatsResult> {
        lock(&self.last).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A delivery that panicked holding it left a plain value: still good to read.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The queue group a trigger subscribes in: always within its namespace.
pub fn queue_group(key: &TriggerKey, spec: &NatsTriggerSpec) -> String {
    let group = match spec.queue_group.as_str() {
        "" => key.name.as_str(),
        group => group,
    };
    format!("{}.{group}", key.namespace)
}

/// One running subscription: dropping it unsubscribes and stops its deliveries.
pub struct Subscription {
    /// The trigger's uid when it started: a trigger made again under the same name is another.
    pub uid: String,
    pub subject: String,
    pub queue: String,
    route: watch::Sender<Route>,
    pub counters: Arc<Counters>,
    task: tokio::task::AbortHandle,
    /// When its counts were last written (the controller's status).
    pub written: Option<Instant>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscription {
    /// Subscribes to `subject` in `queue` and delivers each message to `route`'s functions.
    pub async fn start(
        client: &async_nats::Client,
        key: &TriggerKey,
        subject: &str,
        queue: &str,
        route: Route,
        to: Destination,
        counters: Arc<Counters>,
    ) -> Result<Self, async_nats::SubscribeError> {
        let subscriber = client
            .queue_subscribe(subject.to_string(), queue.to_string())
            .await?;
        // Subscribed once the server has it, not when the client queued it: status says so
        // next. (A flush that fails leaves it to the client's reconnection.)
        if let Err(e) = client.flush().await {
            tracing::info!(trigger = %key, "subscription not confirmed yet: {e}");
        }
        tracing::info!(trigger = %key, subject, queue, "subscribed");
        let uid = route.uid.clone();
        let (route, routes) = watch::channel(route);
        let task = tokio::spawn(consume(
            subscriber,
            client.clone(),
            routes,
            to,
            counters.clone(),
            key.clone(),
        ))
        .abort_handle();
        Ok(Self {
            uid,
            subject: subject.to_string(),
            queue: queue.to_string(),
            route,
            counters,
            task,
            written: None,
        })
    }

    /// The functions messages go to from now on.
    pub fn set_route(&self, route: Route) {
        self.route.send_if_modified(|r| {
            let changed = *r != route;
            *r = route;
            changed
        });
    }

    /// Whether it stopped by itself (its message stream ended): it should be made again.
    pub fn ended(&self) -> bool {
        self.task.is_finished()
    }

    /// Names of the functions messages go to.
    pub fn functions(&self) -> Vec<String> {
        let route = self.route.borrow();
        route
            .functions
            .iter()
            .map(|(f, _)| f.name.clone())
            .collect()
    }
}

/// The NATS connection, made at the first trigger that needs it.
pub struct Connection {
    url: Option<String>,
    /// Names the connection on the server (`wasmless-controller`, `wasmless-up`).
    name: &'static str,
    client: Option<async_nats::Client>,
    tried: Option<Instant>,
    error: String,
}

impl Connection {
    /// To `url`, or none (every trigger is then told so).
    pub fn new(url: Option<String>, name: &'static str) -> Self {
        Self {
            url,
            name,
            client: None,
            tried: None,
            error: String::new(),
        }
    }

    /// The client, connecting if there is none (at most once per [`CONNECT_TIMEOUT`]); why not.
    pub async fn client(&mut self) -> Result<async_nats::Client, String> {
        let Some(url) = &self.url else {
            return Err("no NATS server: --nats-url (chart: controller.natsUrl)".into());
        };
        if let Some(client) = &self.client {
            return match client.connection_state() {
                async_nats::connection::State::Connected => Ok(client.clone()),
                state => Err(format!("NATS at {url}: {state:?}, reconnecting")),
            };
        }
        if self.tried.is_some_and(|t| t.elapsed() < CONNECT_TIMEOUT) {
            return Err(self.error.clone());
        }
        let connecting = options(self.name).connect(url.as_str());
        let connected = tokio::time::timeout(CONNECT_TIMEOUT * 2, connecting).await;
        // From the end of the attempt: a slow failure is not tried again at once.
        self.tried = Some(Instant::now());
        match connected {
            Ok(Ok(client)) => {
                tracing::info!(%url, "connected to NATS");
                self.client = Some(client.clone());
                Ok(client)
            }
            Ok(Err(e)) => {
                self.error = format!("cannot connect to NATS at {url}: {e}");
                Err(self.error.clone())
            }
            Err(_) => {
                self.error = format!("cannot connect to NATS at {url}: timed out");
                Err(self.error.clone())
            }
        }
    }
}

/// How the controller and `wasmless up` connect: named, bounded in time and in buffering.
pub fn options(name: &'static str) -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(CONNECT_TIMEOUT)
        .subscription_capacity(BUFFERED)
}

/// Delivers each message, [`MAX_IN_FLIGHT`] at most at once; aborting it aborts them too.
async fn consume(
    mut subscriber: async_nats::Subscriber,
    client: async_nats::Client,
    routes: watch::Receiver<Route>,
    to: Destination,
    counters: Arc<Counters>,
    key: TriggerKey,
) {
    let mut deliveries = JoinSet::new();
    let mut sequence = 0u64;
    while let Some(message) = subscriber.next().await {
        while deliveries.try_join_next().is_some() {}
        if deliveries.len() >= MAX_IN_FLIGHT {
            deliveries.join_next().await;
        }
        sequence += 1;
        let route = routes.borrow().clone();
        deliveries.spawn(deliver(
            message,
            sequence,
            route,
            client.clone(),
            to.clone(),
            counters.clone(),
            key.clone(),
        ));
    }
    // The stream ended (the client closed): what is under way still finishes.
    while deliveries.join_next().await.is_some() {}
    tracing::info!(trigger = %key, "subscription ended");
}

/// One message to every function of `route`; counted, and answered when it asks for a reply.
async fn deliver(
    message: async_nats::Message,
    sequence: u64,
    route: Route,
    client: async_nats::Client,
    to: Destination,
    counters: Arc<Counters>,
    key: TriggerKey,
) {
    // A reply goes only to a client's inbox, never to the server's own `$` APIs.
    let reply = message
        .reply
        .clone()
        .filter(|r| !r.as_str().starts_with('$'));
    if let Some(refused) = message.reply.as_ref().filter(|_| reply.is_none()) {
        tracing::info!(trigger = %key, reply = %refused, "not answering on a $ subject");
    }
    let keep = match reply {
        // (0: not told yet; NATS's default is 1 MiB.)
        Some(_) => match client.server_info().max_payload {
            0 => 1 << 20,
            max => max,
        }
        .saturating_sub(REPLY_HEADROOM),
        None => 0,
    };
    let time = Timestamp::now().to_string();
    let event_id = invoke::event_id(&route.uid, &format!("{time}/{sequence}"));
    // As Kubeless's consumers: JSON is sent as JSON, anything else as a form body.
    let content_type = if serde_json::from_slice::<serde::de::IgnoredAny>(&message.payload).is_ok()
    {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };
    let calls = route.functions.iter().map(|(function, timeout)| {
        let invocation = Invocation {
            function,
            time: &time,
            event_id: event_id.clone(),
            source: EVENT_NAMESPACE,
            body: Some((content_type, message.payload.to_vec())),
            timeout: *timeout,
            keep,
        };
        let to = &to;
        async move {
            let answer = invoke::send(&to.http, to.base.as_deref(), &invocation).await;
            (function, answer)
        }
    });
    for (function, answer) in futures::future::join_all(calls).await {
        let counter = if answer.succeeded() {
            &counters.delivered
        } else {
            tracing::info!(trigger = %key, %function, status = answer.status_code.unwrap_or_default(), error = %answer.error, "NATS message not delivered");
            &counters.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        *lock(&counters.last) = Some(NatsResult {
            time: time.clone(),
            function: function.name.clone(),
            status_code: answer.status_code,
            error: answer.error.clone(),
        });
        if let Some(reply) = &reply {
            let mut headers = async_nats::HeaderMap::new();
            // Not answered: 502, as a gateway says an upstream failed.
            headers.insert(
                "Status",
                answer.status_code.unwrap_or(502).to_string().as_str(),
            );
            headers.insert("Function", function.name.as_str());
            if let Some(content_type) = &answer.content_type {
                headers.insert("Content-Type", content_type.as_str());
            }
            if answer.cut {
                headers.insert("Truncated", "true");
            }
            let body = if answer.status_code.is_some() {
                answer.body
            } else {
                answer.error.into_bytes()
            };
            if let Err(e) = client
                .publish_with_headers(reply.clone(), headers, body.into())
                .await
            {
                tracing::info!(trigger = %key, "cannot reply: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Function {
        let labels: std::collections::BTreeMap<&str, &str> = labels.iter().copied().collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"runtime": "wat", "function": "(module)", "timeout": 7},
        }))
        .unwrap()
    }

    #[test]
    fn a_route_takes_the_matching_functions_of_the_triggers_namespace_only() {
        let functions = [
            function("test", "b", &[("topic", "orders")]),
            function("test", "a", &[("topic", "orders"), ("x", "y")]),
            function("test", "c", &[("topic", "other")]),
            function("other", "a", &[("topic", "orders")]),
            function("other", "named", &[]),
        ];
        let spec: NatsTriggerSpec = serde_json::from_value(serde_json::json!({
            "topic": "orders", "functionSelector": {"matchLabels": {"topic": "orders"}},
        }))
        .unwrap();
        let selected = spec.check().unwrap();
        let names = |target: &Target| -> Vec<String> {
            Route::select("u".into(), "test", target, &functions)
                .functions
                .iter()
                .map(|(k, _)| k.to_string())
                .collect()
        };
        assert_eq!(names(&selected), ["test/a", "test/b"]);
        // By name: another namespace's function of that name is never taken.
        assert!(names(&Target::Named("named".into())).is_empty());
        assert_eq!(names(&Target::Named("c".into())), ["test/c"]);
        // Each with its own timeout, and a margin.
        let route = Route::select("u".into(), "test", &selected, &functions);
        assert_eq!(route.uid, "u");
        assert!(route.functions[0].1 > Duration::from_secs(7));
        assert!(route.functions[0].1 < Duration::from_secs(60));
    }

    #[test]
    fn queue_groups_stay_in_their_namespace() {
        let key = |ns: &str| TriggerKey {
            namespace: ns.into(),
            name: "orders".into(),
        };
        let mut spec = NatsTriggerSpec::default();
        assert_eq!(queue_group(&key("test"), &spec), "test.orders");
        // A group named like another namespace's default is still this namespace's.
        spec.queue_group = "other.orders".into();
        assert_eq!(queue_group(&key("test"), &spec), "test.other.orders");
    }
}
