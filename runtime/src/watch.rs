//! The host's Kubernetes source: every Function whose status names an artifact is loaded, swapped
//! atomically when the artifact or settings change, and unloaded when deleted. Artifacts are
//! fetched from the controller by digest, verified, and kept on local disk, so a restarted host
//! serves again without the controller. Nothing loaded is trusted: a status's digests are
//! checked before they name a file, and what is read back from disk is hashed again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use thiserror::Error;
use wasmtime::Engine;

use crate::FunctionKey;
use crate::digest::{BadDigest, Sha256Digest};
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
    #[error("status.artifact: {0}")]
    BadDigest(#[from] BadDigest),
}

pub struct KubeSource {
    pub client: Client,
    pub host: Arc<Host>,
    artifacts: Artifacts,
}

impl KubeSource {
    pub fn new(client: Client, host: Arc<Host>, artifacts_url: String, cache: PathBuf) -> Self {
        let artifacts = Artifacts::new(host.engine().clone(), &artifacts_url, cache);
        Self {
            client,
            host,
            artifacts,
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
        let compiled = self.artifacts.compiled(artifact).await?;
        self.host.load(def, &compiled)?;
        Ok(())
    }
}

/// The controller's artifacts, fetched by digest and kept on local disk. Whatever is read back
/// from disk is hashed again first: a cached file that does not match its digest is logged,
/// removed and fetched again, never loaded (a precompiled artifact is native code).
pub struct Artifacts {
    engine: Engine,
    /// Base URL of the controller's artifact server.
    url: String,
    cache: PathBuf,
    http: reqwest::Client,
}

impl Artifacts {
    pub fn new(engine: Engine, url: &str, cache: PathBuf) -> Self {
        Self {
            engine,
            url: url.trim_end_matches('/').to_string(),
            cache,
            http: reqwest::Client::new(),
        }
    }

    /// The artifact ready to load: precompiled when the status names a precompiled form and the
    /// controller has it for this engine, else the wasm, compiled here.
    pub async fn compiled(&self, artifact: &ArtifactRef) -> Result<Compiled, WatchError> {
        let wasm = Sha256Digest::parse(&artifact.digest)?;
        let precompiled = match artifact.precompiled.as_str() {
            "" => None,
            digest => Some(Sha256Digest::parse(digest)?),
        };
        if let Some(expected) = &precompiled {
            let engine_key = engine::compatibility_key(&self.engine);
            let path = self.cache.join(&engine_key).join(wasm.file_name());
            let url = format!("{}/artifacts/{wasm}/precompiled/{engine_key}", self.url);
            match self.verified(&path, &url, expected).await {
                Ok(bytes) => return Ok(engine::load_precompiled_bytes(&self.engine, &bytes)?),
                // The status's precompiled form is for the controller's engine; ours may differ.
                Err(e) => {
                    tracing::info!(digest = %wasm, "no precompiled artifact for this engine ({e}); compiling the wasm here")
                }
            }
        }
        let path = self.cache.join("wasm").join(wasm.file_name());
        let url = format!("{}/artifacts/{wasm}", self.url);
        let bytes = self.verified(&path, &url, &wasm).await?;
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine::compile(&engine, &bytes))
            .await
            .map_err(|e| WatchError::Fetch {
                url,
                message: e.to_string(),
            })?
            .map_err(WatchError::from)
    }

    /// The bytes `expected` names: the cached file when it still matches, else fetched from
    /// `url`, checked, and cached.
    async fn verified(
        &self,
        path: &Path,
        url: &str,
        expected: &Sha256Digest,
    ) -> Result<Vec<u8>, WatchError> {
        match std::fs::read(path) {
            Ok(bytes) if expected.matches(&bytes) => return Ok(bytes),
            Ok(bytes) => {
                let actual = Sha256Digest::of(&bytes);
                tracing::warn!(path = %path.display(), %expected, %actual, "cached artifact does not match its digest: removed, fetching it again");
                if let Err(e) = std::fs::remove_file(path) {
                    tracing::warn!(path = %path.display(), "cannot remove the tampered artifact: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read the cached artifact, fetching it again: {e}")
            }
        }
        let bytes = self.fetch(url, expected).await?;
        crate::files::write_atomic(path, &bytes).map_err(|source| WatchError::Cache {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(bytes)
    }

    async fn fetch(&self, url: &str, expected: &Sha256Digest) -> Result<Vec<u8>, WatchError> {
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
        if !expected.matches(&bytes) {
            return Err(WatchError::Digest {
                url: url.to_string(),
                expected: expected.to_string(),
                actual: Sha256Digest::of(&bytes).to_string(),
            });
        }
        Ok(bytes.to_vec())
    }
}

fn key_of(f: &Function) -> FunctionKey {
    FunctionKey::new(&f.namespace().unwrap_or_default(), &f.name_any())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::Path as UrlPath;
    use axum::routing::get;

    use super::*;
    use crate::EngineConfig;

    /// A loopback artifact server holding one wasm and its precompiled form; counts requests.
    async fn artifact_server(wasm: Vec<u8>, precompiled: Vec<u8>) -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let (w, p, h1, h2) = (wasm, precompiled, hits.clone(), hits.clone());
        let app = axum::Router::new()
            .route(
                "/artifacts/{digest}",
                get(move |UrlPath(_): UrlPath<String>| async move {
                    h1.fetch_add(1, Ordering::SeqCst);
                    w.clone()
                }),
            )
            .route(
                "/artifacts/{digest}/precompiled/{engine}",
                get(move |UrlPath(_): UrlPath<(String, String)>| async move {
                    h2.fetch_add(1, Ordering::SeqCst);
                    p.clone()
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, hits)
    }

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    #[tokio::test]
    async fn a_tampered_cache_file_is_detected_removed_and_fetched_again() {
        let engine = EngineConfig::default().build().unwrap();
        let wasm = wat::parse_str(r#"(module (func (export "_start")))"#).unwrap();
        let precompiled = engine::precompile(&engine, &wasm).unwrap();
        let other = wat::parse_str(r#"(module (func (export "_start") unreachable))"#).unwrap();
        let evil = engine::precompile(&engine, &other).unwrap();
        let (url, hits) = artifact_server(wasm.clone(), precompiled.clone()).await;
        let cache = tempfile::tempdir().unwrap();
        let artifacts = Artifacts::new(engine, &url, cache.path().to_path_buf());
        let artifact = ArtifactRef {
            digest: Sha256Digest::of(&wasm).to_string(),
            size: wasm.len() as u64,
            abi: "wagi".into(),
            precompiled: Sha256Digest::of(&precompiled).to_string(),
        };

        assert!(artifacts.compiled(&artifact).await.is_ok());
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        let cached = files_under(cache.path());
        assert_eq!(cached.len(), 1, "{cached:?}");
        assert!(artifacts.compiled(&artifact).await.is_ok());
        assert_eq!(hits.load(Ordering::SeqCst), 1, "served from the cache");

        // Valid native code of another module: loadable, and never loaded.
        std::fs::write(&cached[0], &evil).unwrap();
        assert!(artifacts.compiled(&artifact).await.is_ok());
        assert_eq!(hits.load(Ordering::SeqCst), 2, "fetched again");
        assert_eq!(std::fs::read(&cached[0]).unwrap(), precompiled);

        // Without a precompiled digest the wasm is cached, and checked the same way.
        let wasm_only = ArtifactRef {
            precompiled: String::new(),
            ..artifact
        };
        assert!(artifacts.compiled(&wasm_only).await.is_ok());
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        let wasm_file = cache
            .path()
            .join("wasm")
            .join(Sha256Digest::of(&wasm).file_name());
        std::fs::write(&wasm_file, &other).unwrap();
        assert!(artifacts.compiled(&wasm_only).await.is_ok());
        assert_eq!(hits.load(Ordering::SeqCst), 4);
        assert_eq!(std::fs::read(&wasm_file).unwrap(), wasm);
    }

    #[tokio::test]
    async fn a_poisoned_digest_never_becomes_a_path() {
        let engine = EngineConfig::default().build().unwrap();
        let (url, hits) = artifact_server(Vec::new(), Vec::new()).await;
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let artifacts = Artifacts::new(engine, &url, cache.clone());
        let good = Sha256Digest::of(b"x").to_string();
        for (digest, precompiled) in [
            ("sha256:../../escaped".to_string(), String::new()),
            (format!("{good}/../../escaped"), String::new()),
            (good.to_uppercase(), String::new()),
            (good.clone(), "sha256:../../escaped".into()),
        ] {
            let artifact = ArtifactRef {
                digest,
                size: 1,
                abi: "wagi".into(),
                precompiled,
            };
            let e = artifacts.compiled(&artifact).await.err();
            assert!(matches!(e, Some(WatchError::BadDigest(_))), "{e:?}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing was fetched");
        assert!(files_under(root.path()).is_empty(), "nothing was written");
    }
}
