//! The Secrets and ConfigMaps the host's Functions reference, and only those: one watch per
//! object, by name in its Function's namespace (`metadata.name=` field selector), started when
//! a Function first references it and stopped when none does. A change is sent on a channel so
//! the Functions that read it are loaded anew.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use wasmless_api::function::{ObjectKind, ObjectName};
use wasmless_runtime::values::{Data, Known};

/// An object of a namespace.
pub type Named = (String, ObjectName);

type State = Arc<Mutex<HashMap<Named, Option<Data>>>>;

pub struct Objects {
    client: Client,
    /// What each watch has seen: absent until its first list ends, then `None` when the object
    /// does not exist.
    state: State,
    tasks: HashMap<Named, JoinHandle<()>>,
    changed: mpsc::UnboundedSender<Named>,
}

impl Objects {
    pub fn new(client: Client) -> (Self, mpsc::UnboundedReceiver<Named>) {
        let (changed, rx) = mpsc::unbounded_channel();
        let objects = Self {
            client,
            state: State::default(),
            tasks: HashMap::new(),
            changed,
        };
        (objects, rx)
    }

    /// What is known of `objects` of `namespace`, starting the watches not running yet;
    /// `None` until every one of them has been listed.
    pub fn known(&mut self, namespace: &str, objects: &[ObjectName]) -> Option<Known> {
        let mut known = Known::new();
        let mut complete = true;
        for object in objects {
            let named = (namespace.to_string(), object.clone());
            if !self.tasks.contains_key(&named) {
                let task = tokio::spawn(follow(
                    self.client.clone(),
                    named.clone(),
                    self.state.clone(),
                    self.changed.clone(),
                ));
                self.tasks.insert(named.clone(), task);
            }
            match lock(&self.state).get(&named) {
                Some(data) => {
                    known.insert(object.clone(), data.clone());
                }
                None => complete = false,
            }
        }
        complete.then_some(known)
    }

    /// Stops the watches of objects no Function references any more, forgetting their data.
    pub fn keep_only(&mut self, referenced: &HashSet<Named>) {
        self.tasks.retain(|named, task| {
            let keep = referenced.contains(named);
            if !keep {
                task.abort();
                lock(&self.state).remove(named);
                tracing::debug!(namespace = %named.0, object = %named.1, "no Function reads it: stopped watching");
            }
            keep
        });
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

fn lock(state: &State) -> std::sync::MutexGuard<'_, HashMap<Named, Option<Data>>> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn follow(client: Client, named: Named, state: State, changed: mpsc::UnboundedSender<Named>) {
    let (namespace, object) = &named;
    let record = |data: Option<Data>| {
        let before = lock(&state).insert(named.clone(), data.clone());
        if before != Some(data) {
            let _ = changed.send(named.clone());
        }
    };
    match object.kind {
        ObjectKind::Secret => {
            let api = Api::<Secret>::namespaced(client, namespace);
            watch_one(api, &object.name, secret_data, record).await;
        }
        ObjectKind::ConfigMap => {
            let api = Api::<ConfigMap>::namespaced(client, namespace);
            watch_one(api, &object.name, config_map_data, record).await;
        }
    }
}

/// Follows one object by name, calling `record` with its data (or `None` once it is gone)
/// after each list and change.
async fn watch_one<K>(api: Api<K>, name: &str, data: fn(&K) -> Data, record: impl Fn(Option<Data>))
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut listed = None;
    loop {
        match events.try_next().await {
            Ok(Some(Event::Init)) => listed = None,
            Ok(Some(Event::InitApply(o))) => listed = Some(data(&o)),
            Ok(Some(Event::InitDone)) => record(listed.take()),
            Ok(Some(Event::Apply(o))) => record(Some(data(&o))),
            Ok(Some(Event::Delete(_))) => record(None),
            Ok(None) => break,
            // Not allowed to read it: as good as absent, so the Function is refused (and says
            // so) rather than left loading, holding the host unready, while the watch retries.
            Err(
                watcher::Error::InitialListFailed(kube::Error::Api(e))
                | watcher::Error::WatchFailed(kube::Error::Api(e)),
            ) if e.code == 403 => {
                tracing::warn!(
                    object = name,
                    "not allowed to read a referenced object: {}",
                    e.message
                );
                record(None);
            }
            // Names only: the API's errors never carry the object's data.
            Err(e) => tracing::warn!(object = name, "watching a referenced object: {e}"),
        }
    }
}

fn secret_data(secret: &Secret) -> Data {
    let data = secret.data.iter().flatten();
    data.map(|(k, v)| (k.clone(), v.0.clone())).collect()
}

fn config_map_data(map: &ConfigMap) -> Data {
    let text = map.data.iter().flatten();
    let text = text.map(|(k, v)| (k.clone(), v.clone().into_bytes()));
    let binary = map.binary_data.iter().flatten();
    let binary = binary.map(|(k, v)| (k.clone(), v.0.clone()));
    text.chain(binary).collect::<BTreeMap<_, _>>()
}
