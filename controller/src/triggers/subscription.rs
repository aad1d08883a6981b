//! One NATSTrigger's subscription: each message on its subject is delivered to every function
//! of its [`Route`], through [`invoke`], and answered when it asks for a reply. Used by the
//! controller's leader ([`super::nats`]) and by `wasmless up`.
//!
//! - **At most once**: core NATS keeps nothing, a failed invocation is counted, not retried.
//! - **Queue group** `<namespace>.<queueGroup or trigger name>` ([`queue_group`]): when two
//!   subscribers overlap (a leader handover) each message still goes to one of them.
//! - **Bounded**: [`MAX_IN_FLIGHT`] messages of one trigger at a time; past that NATS holds
//!   them, then drops them as a slow consumer's.
//! - **Replies**: a message with a reply subject (a NATS request) gets each function's answer
//!   there, its HTTP status in the `Status` header (502: not reached) and the function's name in
//!   `Function`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinSet;

use wasmless_runtime::FunctionKey;
use wasmless_runtime::trigger::nats::EVENT_NAMESPACE;
use wasmless_runtime::trigger::{NatsResult, NatsTriggerSpec, TriggerKey};

use super::invoke::{self, Invocation};

/// Messages of one trigger being delivered at once.
pub const MAX_IN_FLIGHT: usize = 64;
/// How long connecting to NATS may take, and the wait before trying again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a subscription delivers to: its functions, each with how long a call may take.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Route {
    /// Names the trigger in each message's `event-id`.
    pub uid: String,
    pub functions: Vec<(FunctionKey, Duration)>,
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
        tracing::info!(trigger = %key, subject, queue, "subscribed");
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
        self.tried = Some(Instant::now());
        let connecting = async_nats::ConnectOptions::new()
            .name(self.name)
            .connection_timeout(CONNECT_TIMEOUT)
            .connect(url.as_str());
        match tokio::time::timeout(CONNECT_TIMEOUT * 2, connecting).await {
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
        if let Some(reply) = &message.reply {
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
