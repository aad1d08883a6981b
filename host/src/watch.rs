//! The host's Kubernetes source: every Function whose status names an artifact is assigned to
//! the [`Loader`] (fetched, verified, loaded; swapped atomically when the artifact or settings
//! change), and unloaded when deleted. The Secrets and ConfigMaps a Function reads are resolved
//! here, in the Function's own namespace ([`objects`]); a change to one loads its readers anew.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};

use wasmless_api::FunctionKey;
use wasmless_api::function::{Function, Settings};
use wasmless_api::validate::{self, Origin};
use wasmless_runtime::artifacts::{Artifacts, FetchConfig};
use wasmless_runtime::host::Host;
use wasmless_runtime::loader::Loader;
use wasmless_runtime::values;

use objects::{Named, Objects};

mod objects;
pub mod triggers;

pub struct KubeSource {
    pub client: Client,
    loader: Loader,
}

/// The watch loop's state: the Functions with an artifact, by key (to load them anew when an
/// object they read changes), and the objects they read.
struct Watching {
    loader: Loader,
    functions: HashMap<FunctionKey, Function>,
    objects: Objects,
}

impl KubeSource {
    /// `concurrency`: artifact fetches at once.
    pub fn new(
        client: Client,
        host: Arc<Host>,
        fetch: FetchConfig,
        cache: PathBuf,
        concurrency: usize,
    ) -> Self {
        let artifacts = Artifacts::new(host.engine().clone(), fetch, cache);
        Self {
            client,
            loader: Loader::new(host, artifacts, concurrency),
        }
    }

    /// Watches Functions in every namespace, and the Secrets and ConfigMaps they read, until the
    /// Functions' stream ends.
    pub async fn run(self) {
        let api = Api::<Function>::all(self.client.clone());
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let (objects, mut changed) = Objects::new(self.client.clone());
        let mut watching = Watching {
            loader: self.loader,
            functions: HashMap::new(),
            objects,
        };
        let mut seen_in_relist = HashSet::new();
        loop {
            tokio::select! {
                event = events.try_next() => match event {
                    Ok(Some(Event::Init)) => seen_in_relist.clear(),
                    Ok(Some(Event::InitApply(f))) => {
                        seen_in_relist.insert(key_of(&f));
                        watching.apply(f);
                    }
                    Ok(Some(Event::InitDone)) => watching.listed(&seen_in_relist),
                    Ok(Some(Event::Apply(f))) => watching.apply(f),
                    Ok(Some(Event::Delete(f))) => watching.remove(&key_of(&f)),
                    Ok(None) => break,
                    Err(e) => tracing::warn!("watching Functions: {e}"),
                },
                Some(named) = changed.recv() => watching.object_changed(&named),
            }
        }
    }
}

impl Watching {
    fn apply(&mut self, f: Function) {
        let key = key_of(&f);
        let Some(artifact) = f.status.as_ref().and_then(|s| s.artifact.clone()) else {
            return; // not built yet
        };
        // Its status may still name the last good artifact; the spec it would run with is bad.
        if let Err(invalid) = validate::function(&f, Origin::Cluster) {
            tracing::warn!(function = %key, "invalid spec, not loaded; the serving revision (if any) stays: {invalid}");
            return;
        }
        let settings = Settings::of(&f.spec);
        let spec = f.spec.clone();
        self.functions.insert(key.clone(), f);
        self.forget_unreferenced();
        match self.objects.known(&key.namespace, &settings.objects()) {
            Some(known) => {
                let values = values::resolve(&settings, &key.namespace, &known);
                self.loader.assign(key, spec, artifact, values);
            }
            // Loaded once every object it reads has been listed (`object_changed`).
            None => self.loader.waiting(key, &artifact),
        }
    }

    fn remove(&mut self, key: &FunctionKey) {
        self.functions.remove(key);
        self.loader.remove(key);
        self.forget_unreferenced();
    }

    fn listed(&mut self, seen: &HashSet<FunctionKey>) {
        self.functions.retain(|k, _| seen.contains(k));
        self.loader.listed(seen);
        self.forget_unreferenced();
    }

    /// Loads anew every Function that reads `named`: a new definition, so no idle instance
    /// keeps the old value.
    fn object_changed(&mut self, named: &Named) {
        let readers: Vec<Function> = self
            .functions
            .iter()
            .filter(|(k, f)| {
                k.namespace == named.0 && Settings::of(&f.spec).objects().contains(&named.1)
            })
            .map(|(_, f)| f.clone())
            .collect();
        for f in readers {
            tracing::info!(function = %key_of(&f), object = %named.1, "an object it reads changed: loading it anew");
            self.apply(f);
        }
    }

    fn forget_unreferenced(&mut self) {
        let referenced: HashSet<Named> = self
            .functions
            .iter()
            .flat_map(|(k, f)| {
                let objects = Settings::of(&f.spec).objects();
                objects.into_iter().map(|o| (k.namespace.clone(), o))
            })
            .collect();
        self.objects.keep_only(&referenced);
    }
}

fn key_of(f: &Function) -> FunctionKey {
    FunctionKey::new(&f.namespace().unwrap_or_default(), &f.name_any())
}
