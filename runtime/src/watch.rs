//! The host's Kubernetes source: every Function whose status names an artifact is loaded, swapped
//! atomically when the artifact or settings change, and unloaded when deleted. Artifacts are
//! fetched from the controller by digest, verified, and kept on local disk, so a restarted host
//! serves again without the controller.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::FunctionKey;
use crate::engine::{self, Compiled, EngineError};
use crate::function::{ArtifactRef, Function};
use crate::host::{Host, HostError};
use crate::limits::LimitError;
use crate::registry::FunctionDef;
use crate::validate::{self, Origin};

#[derive(Debug, Error)]
pub enum WatchError {
    #[error("fetch {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("artifact {url} has digest {actual}, expected {expected}")]
    Digest {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("artifact cache {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Limits(#[from] LimitError),
}

pub struct KubeSource {
    pub client: Client,
    pub host: Arc<Host>,
    /// Base URL of the controller's artifact server.
    pub artifacts_url: String,
    /// Local disk cache of precompiled artifacts.
    pub cache: PathBuf,
    http: reqwest::Client,
}

impl KubeSource {
    pub fn new(client: Client, host: Arc<Host>, artifacts_url: String, cache: PathBuf) -> Self {
        Self {
            client,
            host,
            artifacts_url: artifacts_url.trim_end_matches('/').to_string(),
            cache,
            http: reqwest::Client::new(),
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
                    self.apply(&f).await;
                }
                Ok(Some(Event::InitDone)) => {
                    // Functions deleted while we were not watching.
                    for loaded in self.host.registry().list() {
                        if !seen_in_relist.contains(&loaded.def.key) {
                            self.host.unload(&loaded.def.key);
                        }
                    }
                    self.host.set_ready();
                }
                Ok(Some(Event::Apply(f))) => self.apply(&f).await,
                Ok(Some(Event::Delete(f))) => {
                    self.host.unload(&key_of(&f));
                }
                Ok(None) => break,
                Err(e) => tracing::warn!("watching Functions: {e}"),
            }
        }
    }

    async fn apply(&self, f: &Function) {
        let key = key_of(f);
        let Some(artifact) = f.status.as_ref().and_then(|s| s.artifact.clone()) else {
            return; // not built yet
        };
        // Its status may still name the last good artifact; the spec it would run with is bad.
        if let Err(invalid) = validate::function(f, Origin::Cluster) {
            tracing::warn!(function = %key, "invalid spec, not loaded; the serving revision (if any) stays: {invalid}");
            return;
        }
        if let Err(e) = self.load(key.clone(), f, &artifact).await {
            tracing::error!(function = %key, digest = %artifact.digest, "cannot load; the serving revision (if any) stays: {e}");
        }
    }

    async fn load(
        &self,
        key: FunctionKey,
        f: &Function,
        artifact: &ArtifactRef,
    ) -> Result<(), WatchError> {
        let max_memory = self.host.config().engine.max_memory_bytes;
        let def =
            FunctionDef::from_spec(key.clone(), &f.spec, artifact.digest.clone(), max_memory)?;
        if self
            .host
            .registry()
            .get(&key)
            .is_some_and(|loaded| loaded.def == def)
        {
            return Ok(());
        }
        let compiled = self.compiled(artifact).await?;
        self.host.load(def, &compiled)?;
        Ok(())
    }

    /// The artifact from the local cache, or fetched (precompiled when the controller's engine
    /// matches ours, else the wasm, compiled here) and verified by digest.
    async fn compiled(&self, artifact: &ArtifactRef) -> Result<Compiled, WatchError> {
        let engine = self.host.engine();
        let engine_key = engine::compatibility_key(engine);
        let path = self
            .cache
            .join(&engine_key)
            .join(artifact.digest.replace(':', "-"));
        if path.exists()
            && let Ok(c) = engine::load_precompiled(engine, &path)
        {
            return Ok(c);
        }
        let precompiled_url = format!(
            "{}/artifacts/{}/precompiled/{engine_key}",
            self.artifacts_url, artifact.digest
        );
        let bytes = match self.fetch(&precompiled_url, &artifact.precompiled).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::info!(digest = %artifact.digest, "no precompiled artifact for this engine ({e}); compiling the wasm here");
                let wasm_url = format!("{}/artifacts/{}", self.artifacts_url, artifact.digest);
                let wasm = self.fetch(&wasm_url, &artifact.digest).await?;
                let engine = engine.clone();
                tokio::task::spawn_blocking(move || engine::precompile(&engine, &wasm))
                    .await
                    .map_err(|e| WatchError::Fetch {
                        url: wasm_url,
                        message: e.to_string(),
                    })??
            }
        };
        crate::files::write_atomic(&path, &bytes).map_err(|source| WatchError::Cache {
            path: path.clone(),
            source,
        })?;
        Ok(engine::load_precompiled(engine, &path)?)
    }

    async fn fetch(&self, url: &str, expected: &str) -> Result<Vec<u8>, WatchError> {
        let err = |message: String| WatchError::Fetch {
            url: url.to_string(),
            message,
        };
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if !response.status().is_success() {
            return Err(err(response.status().to_string()));
        }
        let bytes = response.bytes().await.map_err(|e| err(e.to_string()))?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if expected.is_empty() || actual != expected {
            return Err(WatchError::Digest {
                url: url.to_string(),
                expected: expected.to_string(),
                actual,
            });
        }
        Ok(bytes.to_vec())
    }
}

fn key_of(f: &Function) -> FunctionKey {
    FunctionKey::new(&f.namespace().unwrap_or_default(), &f.name_any())
}
