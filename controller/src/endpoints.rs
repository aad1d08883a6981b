//! Keeps the endpoints of every Function's Service (native mode): a watch of the host pods
//! (`--host-selector`, in `--host-namespace` or all namespaces) whose changes reconcile every
//! Function, and the writes of the objects [`children`] describes.
//!
//! Only changes that alter the endpoints trigger (a ready host added or gone, a new IP or
//! port), so routine pod status updates cost no API calls.

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use thiserror::Error;

use wasmless_api::function::Function;

use crate::applied::Applied;
use crate::children::{self, ChildConfig, HostPod};

/// kube-controller-manager's EndpointSlice controller, which wrote the Service's slices while it
/// had a selector (`endpointslice.kubernetes.io/managed-by`).
const KUBERNETES_SLICES: &str = "endpointslice-controller.k8s.io";

/// What this reconcile did to the function's Service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceChange {
    /// It did not exist: made now.
    Created,
    /// Written: it existed with other content, or written by someone else since.
    Changed,
    /// As this term last applied it.
    Unchanged,
}

/// The object's resourceVersion now; `None` without asking when the Service did not exist
/// before this reconcile (its children are new too, or a namesake's leftovers, which the apply
/// takes over).
async fn live_version<K>(
    api: &Api<K>,
    name: &str,
    service_existed: bool,
) -> Result<Option<String>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if !service_existed {
        return Ok(None);
    }
    Ok(api
        .get_metadata_opt(name)
        .await?
        .and_then(|m| m.metadata.resource_version))
}

#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the watch of the host pods stopped")]
    WatchStopped,
}

/// The host pods as the watch last saw them.
#[derive(Clone)]
pub struct Hosts {
    store: Store<Pod>,
    config: ChildConfig,
}

impl Hosts {
    /// Starts nothing by itself: the returned stream drives the watch, and yields `()` each time
    /// the set of endpoints changes (also once the first list is in).
    pub fn watch(
        client: Client,
        config: &ChildConfig,
    ) -> (Self, impl Stream<Item = ()> + Send + use<>) {
        let api: Api<Pod> = match &config.host_namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let (store, writer) = reflector::store();
        let hosts = Self {
            store,
            config: config.clone(),
        };
        let watched = hosts.clone();
        // The store fills at the first InitDone; until then there is nothing to compare.
        let (mut listed, mut last) = (false, None::<Vec<HostPod>>);
        let changes = watcher(
            api,
            watcher::Config::default().labels(&config.selector_string()),
        )
        // Back within seconds of an API-server restart (see `backoff`).
        .backoff(crate::backoff::Watch::new())
        .reflect(writer)
        .filter_map(move |event| {
            let changed = match event {
                Ok(event) if listed || matches!(event, watcher::Event::InitDone) => {
                    listed = true;
                    let now = watched.ready();
                    let changed = last.as_ref() != Some(&now);
                    if changed {
                        tracing::info!(hosts = now.len(), "host endpoints changed");
                    }
                    last = Some(now);
                    changed
                }
                Ok(_) => false,
                Err(e) => {
                    tracing::warn!("watching host pods: {e}");
                    false
                }
            };
            std::future::ready(changed.then_some(()))
        });
        (hosts, changes)
    }

    /// Hosts already listed as `pods`, with no watch: the reconciler's tests.
    #[cfg(test)]
    pub fn listed(config: &ChildConfig, pods: Vec<Pod>) -> Self {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for pod in pods {
            writer.apply_watcher_event(&watcher::Event::InitApply(pod));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        Self {
            store,
            config: config.clone(),
        }
    }

    /// The ready hosts, sorted (so the same pods always give the same objects).
    pub fn ready(&self) -> Vec<HostPod> {
        let mut hosts: Vec<HostPod> = self
            .store
            .state()
            .iter()
            .filter_map(|p| children::host_pod(p, &self.config))
            .collect();
        hosts.sort();
        hosts
    }

    /// Server-side applies the function's Endpoints and EndpointSlices and deletes slices of its
    /// Service that are no longer wanted (a host port or address family gone, or those
    /// Kubernetes made while the Service still had a selector). Waits for the first list of
    /// host pods: writing before it would empty every Service at each controller start.
    /// What is unchanged since this term's last apply is not written again, and stale slices
    /// are looked for only after a write (listing a namespace's slices reads all of them).
    pub async fn apply(
        &self,
        client: &Client,
        function: &Function,
        params: &PatchParams,
        applied: &Applied,
        service: ServiceChange,
    ) -> Result<usize, Error> {
        self.store
            .wait_until_ready()
            .await
            .map_err(|_| Error::WatchStopped)?;
        let namespace = function.namespace().unwrap_or_default();
        let name = function.name_any();
        let hosts = self.ready();
        let existed = service != ServiceChange::Created;

        let endpoints = Api::<Endpoints>::namespaced(client.clone(), &namespace);
        let desired = children::endpoints(function, &hosts);
        let live = live_version(&endpoints, &name, existed).await?;
        let mut wrote = applied
            .apply(&endpoints, params, &desired, live.as_deref())
            .await?;

        let slices = Api::<EndpointSlice>::namespaced(client.clone(), &namespace);
        let wanted = children::endpoint_slices(function, &hosts);
        for slice in &wanted {
            let live = live_version(&slices, &slice.name_any(), existed).await?;
            wrote |= applied
                .apply(&slices, params, slice, live.as_deref())
                .await?;
        }
        // Stale slices follow only a write to what existed (a host or family gone, the Service's
        // selector dropped): a Service made just now has none yet, Kubernetes' or ours.
        let written = wrote || service == ServiceChange::Changed;
        if !(existed && written) {
            return Ok(hosts.len());
        }
        let existing = slices
            .list(
                // Ours, and those Kubernetes made while the Service had a selector; another
                // manager's slices are its own business.
                &ListParams::default().labels(&format!(
                    "{}={name},{} in ({},{KUBERNETES_SLICES})",
                    wasmless_api::cluster::SERVICE_NAME_LABEL,
                    children::SLICE_MANAGED_BY.0,
                    children::SLICE_MANAGED_BY.1
                )),
            )
            .await?;
        for stale in existing
            .items
            .iter()
            .filter(|s| !wanted.iter().any(|w| w.name_any() == s.name_any()))
        {
            tracing::info!(function = %format!("{namespace}/{name}"), slice = %stale.name_any(), "deleting a stale EndpointSlice");
            match slices
                .delete(&stale.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                // Already gone: what we wanted.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(hosts.len())
    }
}
