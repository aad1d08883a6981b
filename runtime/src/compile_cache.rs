//! Cranelift's incremental compilation cache on disk: a function body compiled once is reused by
//! every later compile that contains it, across modules and restarts. Every Python function
//! carries the same CPython, every Node one the same engine, so most of a new build's machine
//! code is already here.

use std::borrow::Cow;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use wasmtime::CacheStore;

/// One file per entry, named by the sha256 of Cranelift's key, in 256 subdirectories.
#[derive(Debug)]
pub struct DirCacheStore {
    dir: PathBuf,
}

impl DirCacheStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, key: &[u8]) -> PathBuf {
        let name = hex::encode(Sha256::digest(key));
        self.dir.join(&name[..2]).join(&name[2..])
    }
}

impl CacheStore for DirCacheStore {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        std::fs::read(self.path(key)).ok().map(Cow::Owned)
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        // A failed write only costs a later recompile; Cranelift is told and carries on.
        crate::files::write_atomic(&self.path(key), &value)
            .inspect_err(|e| tracing::debug!("compile cache: cannot write an entry: {e}"))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_survive_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirCacheStore::new(dir.path());
        assert!(store.get(b"key").is_none());
        assert!(store.insert(b"key", b"value".to_vec()));
        assert_eq!(store.get(b"key").as_deref(), Some(&b"value"[..]));
        assert!(store.get(b"other").is_none());
        let reopened = DirCacheStore::new(dir.path());
        assert_eq!(reopened.get(b"key").as_deref(), Some(&b"value"[..]));
    }
}
