//! The artifact store: WebAssembly binaries and their precompiled forms, named by the sha256 of
//! the wasm, plus a record of which build key produced which digest. Content addressing means
//! nothing is ever invalidated, only evicted.

use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
#[error("artifact store {path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    source: std::io::Error,
}

/// A directory store (a PersistentVolume in a cluster, `~/.cache/wasmless` locally).
#[derive(Clone, Debug)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file_name(digest: &str) -> String {
        digest.replace(':', "-")
    }

    pub fn wasm_path(&self, digest: &str) -> PathBuf {
        self.root.join("wasm").join(Self::file_name(digest))
    }

    /// Precompiled artifacts sit under the engine's compatibility hash, so hosts with another
    /// wasmtime configuration never see them.
    pub fn precompiled_path(&self, engine_hash: &str, digest: &str) -> PathBuf {
        self.root
            .join("precompiled")
            .join(engine_hash)
            .join(Self::file_name(digest))
    }

    fn build_path(&self, build_key: &str) -> PathBuf {
        self.root.join("builds").join(Self::file_name(build_key))
    }

    /// The wasm digest an earlier build with this key produced.
    pub fn build_result(&self, build_key: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.build_path(build_key)).ok()?;
        let digest = text.trim().to_string();
        self.wasm_path(&digest).exists().then_some(digest)
    }

    pub fn record_build(&self, build_key: &str, digest: &str) -> Result<(), StoreError> {
        write_atomic(&self.build_path(build_key), digest.as_bytes())
    }

    pub fn put(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        write_atomic(path, bytes)
    }

    pub fn read(&self, path: &Path) -> Result<Vec<u8>, StoreError> {
        std::fs::read(path).map_err(|source| StoreError {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Writes through a temporary file and a rename, so readers never see half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let err = |source| StoreError {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("artifact")
    ));
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// `GET /artifacts/sha256:<hex>` serves a wasm binary; `…/precompiled/<engine-key>` its form
/// precompiled for that engine. Hosts fetch by digest and verify what they get.
pub fn router(store: DirStore) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/artifacts/{digest}", get(serve_wasm))
        .route(
            "/artifacts/{digest}/precompiled/{engine}",
            get(serve_precompiled),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(store)
}

async fn serve_wasm(
    axum::extract::State(store): axum::extract::State<DirStore>,
    axum::extract::Path(digest): axum::extract::Path<String>,
) -> axum::response::Response {
    serve_file(is_digest(&digest).then(|| store.wasm_path(&digest))).await
}

async fn serve_precompiled(
    axum::extract::State(store): axum::extract::State<DirStore>,
    axum::extract::Path((digest, engine)): axum::extract::Path<(String, String)>,
) -> axum::response::Response {
    let engine_ok = !engine.is_empty() && engine.bytes().all(|b| b.is_ascii_hexdigit());
    serve_file((is_digest(&digest) && engine_ok).then(|| store.precompiled_path(&engine, &digest)))
        .await
}

async fn serve_file(path: Option<PathBuf>) -> axum::response::Response {
    use axum::response::IntoResponse;
    use http::StatusCode;
    let Some(path) = path else {
        return (StatusCode::BAD_REQUEST, "expected sha256:<64 hex digits>").into_response();
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(http::header::CONTENT_TYPE, "application/wasm")], bytes).into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (StatusCode::NOT_FOUND, "no such artifact").into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Only well-formed digests reach the file system (no path tricks).
fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_are_remembered_only_with_their_wasm() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path());
        let digest = "sha256:abcd";
        store.record_build("sha256:key", digest).unwrap();
        assert_eq!(store.build_result("sha256:key"), None);
        store.put(&store.wasm_path(digest), b"\0asm").unwrap();
        assert_eq!(store.build_result("sha256:key").as_deref(), Some(digest));
        assert_eq!(store.read(&store.wasm_path(digest)).unwrap(), b"\0asm");
    }

    #[test]
    fn only_digests_reach_the_file_system() {
        assert!(is_digest(&format!("sha256:{}", "a".repeat(64))));
        for bad in ["sha256:../../etc/passwd", "sha256:abc", "md5:00", ""] {
            assert!(!is_digest(bad), "{bad}");
        }
    }
}
