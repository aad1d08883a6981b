//! The artifact store: WebAssembly binaries and their precompiled forms, named by the sha256 of
//! the wasm, functions' files (named by theirs), plus a record of which build key produced which digest. Content addressing means
//! nothing is ever invalidated, only evicted. `ArtifactStore` is the seam for other backends (an
//! S3-compatible object store); `DirStore` is the directory one (a PersistentVolume in a cluster,
//! `~/.cache/wasmless` locally).

use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use wasmless_api::digest::Sha256Digest;
use wasmless_runtime::token::{self, Token};

#[derive(Debug, Error)]
#[error("artifact store {path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    source: std::io::Error,
}

/// Something the store holds, by name. Only digests name files (no path tricks); the engine
/// key is this process's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object<'a> {
    /// A WebAssembly binary, by its digest.
    Wasm(&'a Sha256Digest),
    /// A binary precompiled for one engine configuration (`engine::compatibility_key`).
    Precompiled {
        engine: &'a str,
        digest: &'a Sha256Digest,
    },
    /// The wasm digest a build key produced.
    Build(&'a Sha256Digest),
    /// A function's files ([`wasmless_api::files`]), by the digest of their archive.
    Files(&'a Sha256Digest),
}

/// Reads and look-ups mark an object used (the directory store keeps the least recently used
/// ones shortest, see [`crate::eviction`]).
pub trait ArtifactStore: Send + Sync + 'static {
    /// The object's bytes, or `None` when the store does not have it.
    fn get(&self, object: Object) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores an object; readers never see it half written.
    fn put(&self, object: Object, bytes: &[u8]) -> Result<(), StoreError>;
    fn contains(&self, object: Object) -> bool;
    /// A local file holding the object, for stores that have one (it can be mapped instead of
    /// read). Remote stores return `None`.
    fn local_path(&self, object: Object) -> Option<PathBuf>;
}

pub type SharedStore = Arc<dyn ArtifactStore>;

/// The directory store.
#[derive(Clone, Debug)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, object: Object) -> PathBuf {
        match object {
            Object::Wasm(digest) => self.root.join("wasm").join(digest.file_name()),
            Object::Precompiled { engine, digest } => self
                .root
                .join("precompiled")
                .join(engine)
                .join(digest.file_name()),
            Object::Build(key) => self.root.join("builds").join(key.file_name()),
            Object::Files(digest) => self.root.join("files").join(digest.file_name()),
        }
    }
}

impl ArtifactStore for DirStore {
    fn get(&self, object: Object) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(object);
        match std::fs::read(&path) {
            Ok(bytes) => {
                wasmless_runtime::files::touch(&path);
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError { path, source }),
        }
    }

    fn put(&self, object: Object, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(object);
        wasmless_runtime::files::write_atomic(&path, bytes)
            .map_err(|source| StoreError { path, source })
    }

    fn contains(&self, object: Object) -> bool {
        let path = self.path(object);
        let exists = path.exists();
        if exists {
            wasmless_runtime::files::touch(&path);
        }
        exists
    }

    fn local_path(&self, object: Object) -> Option<PathBuf> {
        Some(self.path(object))
    }
}

/// `GET /artifacts/sha256:<hex>` serves a wasm binary; `…/precompiled/<engine-key>` its form
/// precompiled for that engine, both only with `token` (every tenant's code is here). Hosts
/// fetch by digest and verify what they get. `/healthz` is for anyone (probes).
pub fn router(store: SharedStore, token: Token) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/artifacts/{digest}", get(serve_wasm))
        .route("/files/{digest}", get(serve_files))
        .route(
            "/artifacts/{digest}/precompiled/{engine}",
            get(serve_precompiled),
        )
        .layer(axum::middleware::from_fn_with_state(token, token::require))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(store)
}

async fn serve_wasm(
    axum::extract::State(store): axum::extract::State<SharedStore>,
    axum::extract::Path(digest): axum::extract::Path<String>,
) -> axum::response::Response {
    let wanted = Sha256Digest::parse(&digest).ok().map(Wanted::Wasm);
    serve(store, wanted).await
}

async fn serve_files(
    axum::extract::State(store): axum::extract::State<SharedStore>,
    axum::extract::Path(digest): axum::extract::Path<String>,
) -> axum::response::Response {
    let wanted = Sha256Digest::parse(&digest).ok().map(Wanted::Files);
    serve(store, wanted).await
}

async fn serve_precompiled(
    axum::extract::State(store): axum::extract::State<SharedStore>,
    axum::extract::Path((digest, engine)): axum::extract::Path<(String, String)>,
) -> axum::response::Response {
    let engine_ok = !engine.is_empty() && engine.bytes().all(|b| b.is_ascii_hexdigit());
    let wanted = Sha256Digest::parse(&digest)
        .ok()
        .filter(|_| engine_ok)
        .map(|digest| Wanted::Precompiled { engine, digest });
    serve(store, wanted).await
}

/// An [`Object`] a request names, owned so that the read can move to a blocking thread.
enum Wanted {
    Wasm(Sha256Digest),
    Files(Sha256Digest),
    Precompiled {
        engine: String,
        digest: Sha256Digest,
    },
}

impl Wanted {
    fn object(&self) -> Object<'_> {
        match self {
            Wanted::Wasm(digest) => Object::Wasm(digest),
            Wanted::Files(digest) => Object::Files(digest),
            Wanted::Precompiled { engine, digest } => Object::Precompiled { engine, digest },
        }
    }
}

async fn serve(store: SharedStore, wanted: Option<Wanted>) -> axum::response::Response {
    use axum::response::IntoResponse;
    use http::StatusCode;
    let Some(wanted) = wanted else {
        return (StatusCode::BAD_REQUEST, "expected sha256:<64 hex digits>").into_response();
    };
    let content_type = match wanted {
        Wanted::Files(_) => "application/zip",
        _ => "application/wasm",
    };
    // Precompiled artifacts are tens of MB: read them off the async workers.
    let read = tokio::task::spawn_blocking(move || store.get(wanted.object())).await;
    match read {
        Ok(Ok(Some(bytes))) => {
            ([(http::header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        Ok(Ok(None)) => (StatusCode::NOT_FOUND, "no such artifact").into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_store_keeps_objects_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path());
        let digest = Sha256Digest::of(b"\0asm");
        let wasm = Object::Wasm(&digest);
        let pre = Object::Precompiled {
            engine: "e1",
            digest: &digest,
        };
        assert_eq!(store.get(wasm).unwrap(), None);
        store.put(wasm, b"\0asm").unwrap();
        assert!(store.contains(wasm) && !store.contains(pre));
        store.put(pre, b"elf").unwrap();
        assert_eq!(
            store.get(wasm).unwrap().as_deref(),
            Some(b"\0asm".as_slice())
        );
        assert_eq!(store.get(pre).unwrap().as_deref(), Some(b"elf".as_slice()));
        let other_engine = Object::Precompiled {
            engine: "e2",
            digest: &digest,
        };
        assert!(!store.contains(other_engine));
    }

    /// What a host may ask the artifact server for: well-formed digests only, with the token.
    #[tokio::test]
    async fn the_server_reads_only_what_a_digest_names() {
        use tower::ServiceExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), b"not an artifact").unwrap();
        let store = DirStore::new(dir.path().join("store"));
        let digest = Sha256Digest::of(b"\0asm");
        store.put(Object::Wasm(&digest), b"\0asm").unwrap();
        let token = Token::new("0123456789abcdef", "test").unwrap();
        let app = router(Arc::new(store), token.clone());
        let get = |path: String, token: Option<&Token>| {
            let mut request = http::Request::get(path);
            if let Some(t) = token {
                request = request.header("authorization", format!("Bearer {}", t.secret()));
            }
            app.clone()
                .oneshot(request.body(axum::body::Body::empty()).unwrap())
        };
        let status = |r: Result<axum::response::Response, _>| r.unwrap().status().as_u16();
        assert_eq!(
            status(get(format!("/artifacts/{digest}"), Some(&token)).await),
            200
        );
        assert_eq!(status(get(format!("/artifacts/{digest}"), None).await), 401);
        for bad in ["sha256:..%2F..%2Fsecret", "sha256:abc", "md5:00"] {
            let r = get(format!("/artifacts/{bad}"), Some(&token)).await;
            assert_eq!(status(r), 400, "{bad}");
        }
        let other = Sha256Digest::of(b"other");
        assert_eq!(
            status(get(format!("/artifacts/{other}"), Some(&token)).await),
            404
        );
    }
}
