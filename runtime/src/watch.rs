//! The host's Kubernetes source: every Function whose status names an artifact is assigned to
//! the [`Loader`] (fetched, verified, loaded; swapped atomically when the artifact or settings
//! change), and unloaded when deleted.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};

use crate::FunctionKey;
use crate::artifacts::{Artifacts, FetchConfig};
use crate::function::Function;
use crate::host::Host;
use crate::loader::Loader;
use crate::validate::{self, Origin};

pub struct KubeSource {
    pub client: Client,
    loader: Loader,
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

    /// Watches Functions in every namespace until the stream ends.
    pub async fn run(self) {
        let api = Api::<Function>::all(self.client.clone());
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut seen_in_relist = HashSet::new();
        loop {
            match events.try_next().await {
                Ok(Some(Event::Init)) => seen_in_relist.clear(),
                Ok(Some(Event::InitApply(f))) => {
                    seen_in_relist.insert(key_of(&f));
                    self.apply(&f);
                }
                Ok(Some(Event::InitDone)) => self.loader.listed(&seen_in_relist),
                Ok(Some(Event::Apply(f))) => self.apply(&f),
                Ok(Some(Event::Delete(f))) => self.loader.remove(&key_of(&f)),
                Ok(None) => break,
                Err(e) => tracing::warn!("watching Functions: {e}"),
            }
        }
    }

    fn apply(&self, f: &Function) {
        let key = key_of(f);
        let Some(artifact) = f.status.as_ref().and_then(|s| s.artifact.clone()) else {
            return; // not built yet
        };
        // Its status may still name the last good artifact; the spec it would run with is bad.
        if let Err(invalid) = validate::function(f, Origin::Cluster) {
            tracing::warn!(function = %key, "invalid spec, not loaded; the serving revision (if any) stays: {invalid}");
            return;
        }
        self.loader.assign(key, f.spec.clone(), artifact);
    }
}

fn key_of(f: &Function) -> FunctionKey {
    FunctionKey::new(&f.namespace().unwrap_or_default(), &f.name_any())
}
