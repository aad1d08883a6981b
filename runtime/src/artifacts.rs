//! The controller's artifacts as a host fetches them: by digest, with the artifact server's
//! token, within a timeout, verified, and kept on local disk so that a restarted host serves
//! again without the controller. Nothing loaded is trusted: a status's digests are checked before
//! they name a file, and what is read back from disk is hashed again. The cache is held to a
//! size by removing the least recently used files no assigned function needs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use wasmtime::Engine;

use crate::engine::{self, Compiled, EngineError, LoadAgain, SharedCode};
use crate::host::HostError;
use crate::limits::LimitError;
use crate::token::Token;
use wasmless_api::digest::Sha256Digest;
use wasmless_api::function::ArtifactRef;

/// Where a function's code comes from: a cluster's artifact server through this host's cache
/// ([`Artifacts`]), or `wasmless up`'s own store (`wasmless_build::Pipeline`). Both load stored
/// code through [`SharedCode::load_stored`], so what runs is always what was built, and code
/// many functions run is loaded once.
pub trait ArtifactSource: Send + Sync {
    /// `artifact`'s code, ready to load, and how to load it again once dropped (none: it stays
    /// loaded).
    fn compiled(
        &self,
        artifact: &ArtifactRef,
    ) -> impl Future<Output = Result<(Compiled, Option<LoadAgain>), LoadError>> + Send;

    /// The function's own files `artifact` names, checked against their digest (none when it
    /// has none).
    fn files(
        &self,
        artifact: &ArtifactRef,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, LoadError>> + Send;
}

#[derive(Debug, Error)]
pub enum LoadError {
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
    #[error("the store has no precompiled form of {0} for this engine")]
    NotStored(Sha256Digest),
}

impl LoadError {
    /// Whether trying again may succeed: the artifact server down, slow, refusing or serving
    /// something else for now, or the cache's disk full. A bad digest, a binary that does not
    /// compile or a function over this host's limits stays so until its Function changes.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            LoadError::Fetch { .. } | LoadError::Digest { .. } | LoadError::Cache { .. }
        )
    }
}

/// How a host reaches the artifact server and keeps its cache.
#[derive(Clone, Debug)]
pub struct FetchConfig {
    /// Base URL of the controller's artifact server.
    pub url: String,
    /// Sent as a bearer token; the artifact server answers nothing without it.
    pub token: Option<Token>,
    /// One whole fetch, connecting included.
    pub timeout: Duration,
    /// The most bytes the cache keeps (files that assigned functions need are never removed).
    pub cache_max_bytes: u64,
}

/// The controller's artifacts, fetched by digest and kept on local disk. Whatever is read back
/// from disk is hashed again first: a cached file that does not match its digest is logged,
/// removed and fetched again, never loaded (a precompiled artifact is native code).
pub struct Artifacts {
    engine: Engine,
    /// Base URL of the controller's artifact server.
    url: String,
    token: Option<Token>,
    cache: PathBuf,
    cache_max_bytes: u64,
    http: reqwest::Client,
    shared: Arc<SharedCode>,
}

impl Artifacts {
    pub fn new(engine: Engine, config: FetchConfig, cache: PathBuf) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .unwrap_or_default();
        Self {
            engine,
            url: config.url.trim_end_matches('/').to_string(),
            token: config.token,
            cache,
            cache_max_bytes: config.cache_max_bytes,
            http,
            shared: Arc::default(),
        }
    }

    /// Removes the least recently used cached files until the cache holds at most its bound,
    /// keeping those of `needed` (of code and files): the artifacts of the assigned functions.
    pub fn evict(&self, needed: &HashSet<Sha256Digest>) {
        let names: HashSet<String> = needed.iter().map(Sha256Digest::file_name).collect();
        let keep = |path: &Path, _| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| names.contains(n))
        };
        match crate::files::evict(&self.cache, self.cache_max_bytes, keep) {
            Ok(e) if e.files > 0 => {
                tracing::info!(
                    files = e.files,
                    bytes = e.bytes,
                    remaining = e.remaining,
                    max = self.cache_max_bytes,
                    "evicted unused artifacts from the cache"
                )
            }
            Ok(e) if e.remaining > self.cache_max_bytes => {
                tracing::warn!(
                    remaining = e.remaining,
                    max = self.cache_max_bytes,
                    "the artifacts of the assigned functions alone exceed the cache's bound"
                )
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(cache = %self.cache.display(), "cannot evict from the cache: {e}")
            }
        }
    }

    /// The precompiled code `expected` names, from the cached file when it still loads as that,
    /// else fetched from `url` (checked) into the cache first.
    async fn stored(
        &self,
        path: &Path,
        url: &str,
        expected: &Sha256Digest,
    ) -> Result<(Compiled, LoadAgain), LoadError> {
        if path.exists() {
            match self.shared.load_stored(&self.engine, path, expected) {
                Ok(loaded) => {
                    crate::files::touch(path);
                    return Ok(loaded);
                }
                Err(e) => discard(path, &format!("it cannot be loaded ({e})")),
            }
        }
        self.refill(path, url, expected).await?;
        Ok(self.shared.load_stored(&self.engine, path, expected)?)
    }

    /// The bytes `expected` names: the cached file when it still matches, else fetched from
    /// `url`, checked, and cached.
    async fn verified(
        &self,
        path: &Path,
        url: &str,
        expected: &Sha256Digest,
    ) -> Result<Vec<u8>, LoadError> {
        match cached(path, expected) {
            Ok(bytes) => return Ok(bytes),
            Err(changed @ Cached::Changed(_)) => discard(path, &changed.to_string()),
            Err(Cached::Unreadable(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(Cached::Unreadable(e)) => {
                tracing::warn!(path = %path.display(), "cannot read the cached artifact, fetching it again: {e}")
            }
        }
        self.refill(path, url, expected).await
    }

    /// `expected`'s bytes fetched from `url` (checked) and written to the cache at `path`.
    async fn refill(
        &self,
        path: &Path,
        url: &str,
        expected: &Sha256Digest,
    ) -> Result<Vec<u8>, LoadError> {
        let bytes = self.fetch(url, expected).await?;
        crate::files::write_atomic(path, &bytes).map_err(|source| LoadError::Cache {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(bytes)
    }

    async fn fetch(&self, url: &str, expected: &Sha256Digest) -> Result<Vec<u8>, LoadError> {
        let err = |message: String| LoadError::Fetch {
            url: url.to_string(),
            message,
        };
        let mut request = self.http.get(url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.secret());
        }
        let response = request.send().await.map_err(|e| err(e.to_string()))?;
        if !response.status().is_success() {
            return Err(err(response.status().to_string()));
        }
        let bytes = response.bytes().await.map_err(|e| err(e.to_string()))?;
        if !expected.matches(&bytes) {
            return Err(LoadError::Digest {
                url: url.to_string(),
                expected: expected.to_string(),
                actual: Sha256Digest::of(&bytes).to_string(),
            });
        }
        Ok(bytes.to_vec())
    }
}

impl ArtifactSource for Artifacts {
    /// The artifact ready to load: precompiled when the status names a precompiled form and the
    /// controller has it for this engine, else the wasm, compiled here. A precompiled one is
    /// loaded from the cache as `wasmless up` loads from its store ([`SharedCode::load_stored`]:
    /// checked against its digest each time, so it can be dropped and loaded again; the cache
    /// keeps what assigned functions need); one compiled here stays loaded.
    async fn compiled(
        &self,
        artifact: &ArtifactRef,
    ) -> Result<(Compiled, Option<LoadAgain>), LoadError> {
        let (wasm, precompiled) = (&artifact.digest, &artifact.precompiled);
        if let Some(expected) = precompiled {
            let engine_key = engine::compatibility_key(&self.engine);
            let path = self.cache.join(&engine_key).join(wasm.file_name());
            let url = format!("{}/artifacts/{wasm}/precompiled/{engine_key}", self.url);
            match self.stored(&path, &url, expected).await {
                Ok((compiled, again)) => return Ok((compiled, Some(again))),
                // The status's precompiled form is for the controller's engine; ours may differ.
                Err(e) => {
                    tracing::info!(digest = %wasm, "no precompiled artifact for this engine ({e}); compiling the wasm here")
                }
            }
        }
        let path = self.cache.join("wasm").join(wasm.file_name());
        let url = format!("{}/artifacts/{wasm}", self.url);
        let bytes = self.verified(&path, &url, wasm).await?;
        let engine = self.engine.clone();
        let compiled = tokio::task::spawn_blocking(move || engine::compile(&engine, &bytes))
            .await
            .map_err(|e| LoadError::Fetch {
                url,
                message: e.to_string(),
            })??;
        Ok((compiled, None))
    }

    async fn files(&self, artifact: &ArtifactRef) -> Result<Option<Vec<u8>>, LoadError> {
        let Some(files) = &artifact.files else {
            return Ok(None);
        };
        let path = self.cache.join("files").join(files.digest.file_name());
        let url = format!("{}/files/{}", self.url, files.digest);
        self.verified(&path, &url, &files.digest).await.map(Some)
    }
}

/// Removes a cached file that is not what it is named for (`why`), so it is fetched again.
fn discard(path: &Path, why: &str) {
    tracing::warn!(path = %path.display(), "cached artifact removed, fetching it again: {why}");
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), "cannot remove the cached artifact: {e}");
    }
}

/// Why a cached file is not the artifact asked for.
#[derive(Debug, Error)]
enum Cached {
    #[error("no longer matches its digest (it is {0})")]
    Changed(Sha256Digest),
    #[error("{0}")]
    Unreadable(std::io::Error),
}

/// The cached file at `path` when it is what `expected` names (marked used, for eviction).
fn cached(path: &Path, expected: &Sha256Digest) -> Result<Vec<u8>, Cached> {
    let bytes = std::fs::read(path).map_err(Cached::Unreadable)?;
    if !expected.matches(&bytes) {
        return Err(Cached::Changed(Sha256Digest::of(&bytes)));
    }
    crate::files::touch(path);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::Path as UrlPath;
    use axum::routing::get;

    use std::sync::Arc;

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

    fn config(url: &str) -> FetchConfig {
        FetchConfig {
            url: url.to_string(),
            token: None,
            timeout: Duration::from_secs(10),
            cache_max_bytes: u64::MAX,
        }
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
        let artifacts = Artifacts::new(engine, config(&url), cache.path().to_path_buf());
        let artifact = ArtifactRef {
            digest: Sha256Digest::of(&wasm),
            size: wasm.len() as u64,
            abi: wasmless_api::Abi::Wagi,
            precompiled: Some(Sha256Digest::of(&precompiled)),
            files: None,
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
            precompiled: None,
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
}
