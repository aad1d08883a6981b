//! The host's HTTPTriggers: every one in every namespace (read-only), turned into the routing
//! table of [`wasmless_runtime::routes`] on each change. A trigger that is invalid, or that claims a route
//! an older trigger holds, routes nothing (the controller says why in its status).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use wasmless_api::trigger::{HttpTrigger, TriggerKey};
use wasmless_runtime::host::Host;
use wasmless_runtime::routes::{Claim, holders};

/// Watches HTTPTriggers until the stream ends. Without the CRD (a chart upgrade does not
/// install new CRDs) the watch retries and logs; functions are served by Service name all the
/// while.
pub async fn run(client: Client, host: Arc<Host>) {
    let api = Api::<HttpTrigger>::all(client);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut known: BTreeMap<TriggerKey, HttpTrigger> = BTreeMap::new();
    let mut relisting: Option<BTreeMap<TriggerKey, HttpTrigger>> = None;
    let mut last_error: Option<String> = None;
    loop {
        let event = events.try_next().await;
        if event.is_ok() {
            last_error = None;
        }
        match event {
            Ok(Some(Event::Init)) => relisting = Some(BTreeMap::new()),
            Ok(Some(Event::InitApply(t))) => {
                if let Some(list) = relisting.as_mut() {
                    list.insert(t.key(), t);
                }
            }
            Ok(Some(Event::InitDone)) => {
                if let Some(list) = relisting.take() {
                    known = list;
                    publish(&host, &known);
                }
            }
            Ok(Some(Event::Apply(t))) => {
                known.insert(t.key(), t);
                publish(&host, &known);
            }
            Ok(Some(Event::Delete(t))) => {
                known.remove(&t.key());
                publish(&host, &known);
            }
            Ok(None) => break,
            // Once per kind of error: a missing CRD would otherwise warn at every retry.
            Err(e) => match e.to_string() {
                text if last_error.as_ref() == Some(&text) => {
                    tracing::debug!("watching HTTPTriggers: {text}")
                }
                text => {
                    tracing::warn!("watching HTTPTriggers (retrying): {text}");
                    last_error = Some(text);
                }
            },
        }
    }
}

fn publish(host: &Host, known: &BTreeMap<TriggerKey, HttpTrigger>) {
    let claims = known.values().filter_map(|t| match Claim::of(t) {
        Ok(claim) => Some(claim),
        Err(problems) => {
            tracing::debug!(trigger = %t.key(), "routes nothing: {}", problems.join("; "));
            None
        }
    });
    let table = holders(claims).table();
    tracing::info!(routes = table.len(), "HTTPTrigger routes");
    host.routes().set(table);
}
