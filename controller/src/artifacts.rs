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
}
