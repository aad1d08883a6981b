//! Holds the directory store to a size (`--store-max-bytes`, native mode): past it, the least
//! recently used files go first, except the artifacts of every Function the API lists (the wasm
//! and precompiled forms its `status.artifact.digest` names, its files, and the build records
//! naming only those).
//! Files used within [`RECENT`] are kept too: a build in flight, or one whose Function's status
//! is still being written, has just read or written each file it needs (the store marks every
//! read and look-up), so nothing it relies on goes. Cranelift's compile cache counts toward the
//! bound and goes by the same rule.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use kube::api::{Api, ListParams};
use thiserror::Error;

use wasmless_api::digest::Sha256Digest;
use wasmless_api::function::Function;
use wasmless_build::pipeline::BuildRecord;
use wasmless_runtime::files::{self, Evicted};

/// Files used this recently are never removed.
pub const RECENT: Duration = Duration::from_secs(600);
/// How often the store's size is checked.
const EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum EvictError {
    #[error("listing Functions: {0}")]
    Kube(#[from] kube::Error),
    #[error("artifact store {path}: {source}")]
    Store {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("eviction task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Checks the store every [`EVERY`] and evicts past `max_bytes`; runs until dropped. A pass
/// that cannot list the Functions removes nothing.
pub async fn run(client: kube::Client, store: PathBuf, max_bytes: u64) {
    let functions = Api::<Function>::all(client);
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pass(&functions, &store, max_bytes).await {
            Ok(Some(e)) if e.files > 0 => tracing::info!(
                files = e.files,
                bytes = e.bytes,
                remaining = e.remaining,
                max = max_bytes,
                "evicted unused artifacts from the store"
            ),
            Ok(Some(e)) if e.remaining > max_bytes => tracing::warn!(
                remaining = e.remaining,
                max = max_bytes,
                "the artifacts Functions reference and those used lately alone exceed --store-max-bytes"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("store eviction skipped: {e}"),
        }
    }
}

/// One pass: nothing when the store is within its bound.
async fn pass(
    functions: &Api<Function>,
    store: &Path,
    max_bytes: u64,
) -> Result<Option<Evicted>, EvictError> {
    let root = store.to_path_buf();
    let used = tokio::task::spawn_blocking(move || files::usage(&root)).await?;
    if used.map_err(|source| store_error(store, source))? <= max_bytes {
        return Ok(None);
    }
    let referenced: HashSet<Sha256Digest> = functions
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|f| f.status?.artifact)
        .flat_map(|a| a.digests().cloned().collect::<Vec<_>>())
        .collect();
    let root = store.to_path_buf();
    let evicted = tokio::task::spawn_blocking(move || {
        evict(&root, max_bytes, &referenced, SystemTime::now())
    })
    .await?;
    evicted
        .map(Some)
        .map_err(|source| store_error(store, source))
}

fn store_error(path: &Path, source: std::io::Error) -> EvictError {
    EvictError::Store {
        path: path.to_path_buf(),
        source,
    }
}

/// Removes the least recently used files under the store directory `root` until it holds at
/// most `max_bytes`, keeping every file of a `referenced` digest (code or files), every build
/// record naming only those, and every file used within [`RECENT`] of `now`.
pub fn evict(
    root: &Path,
    max_bytes: u64,
    referenced: &HashSet<Sha256Digest>,
    now: SystemTime,
) -> std::io::Result<Evicted> {
    // Objects are named by their digest; build records hold them.
    let names: HashSet<String> = referenced.iter().map(Sha256Digest::file_name).collect();
    let builds = root.join("builds");
    let keep = |path: &Path, used: SystemTime| {
        let recent = now.duration_since(used).map_or(true, |age| age < RECENT);
        let named = || {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| names.contains(n))
        };
        let records = || {
            path.starts_with(&builds)
                && std::fs::read(path).is_ok_and(|record| {
                    BuildRecord::parse(&record)
                        .is_some_and(|r| r.digests().all(|d| referenced.contains(d)))
                })
        };
        recent || (!path.starts_with(&builds) && named()) || records()
    };
    files::evict(root, max_bytes, keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmless_build::artifacts::{ArtifactStore, DirStore, Object};

    fn digest(n: u8) -> Sha256Digest {
        Sha256Digest::of(&[n])
    }

    /// A store holding artifacts 1 to 4 (wasm, precompiled, build record; 100 bytes each) last
    /// used over an hour ago, 4 longest ago; and 5, written just now.
    fn store(dir: &Path) -> DirStore {
        let store = DirStore::new(dir);
        for n in 1..=5u8 {
            let d = digest(n);
            let key = digest(100 + n);
            let objects = [
                Object::Wasm(&d),
                Object::Precompiled {
                    engine: "e",
                    digest: &d,
                },
            ];
            for object in objects {
                store.put(object, &[n; 100]).unwrap();
            }
            let record = format!("{:<100}", d.as_str());
            store.put(Object::Build(&key), record.as_bytes()).unwrap();
        }
        for n in 1..5u8 {
            let age = Duration::from_secs(3600 + 60 * u64::from(n));
            for path in paths(dir, n) {
                let file = std::fs::File::options().write(true).open(&path).unwrap();
                file.set_modified(SystemTime::now() - age).unwrap();
            }
        }
        store
    }

    /// Artifact `n`'s wasm, precompiled form and build record.
    fn paths(dir: &Path, n: u8) -> [PathBuf; 3] {
        [
            dir.join("wasm").join(digest(n).file_name()),
            dir.join("precompiled/e").join(digest(n).file_name()),
            dir.join("builds").join(digest(100 + n).file_name()),
        ]
    }

    /// Which of artifact `n`'s files exist (looked at directly: a store look-up marks it used).
    fn has(dir: &Path, n: u8) -> [bool; 3] {
        paths(dir, n).map(|p| p.exists())
    }

    #[test]
    fn only_unreferenced_artifacts_go_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path());
        let referenced = HashSet::from([digest(2)]);
        // 15 files of 100 bytes; room for 11: the four oldest unreferenced ones go (4's three
        // files, then one of 3's).
        let evicted = evict(dir.path(), 1100, &referenced, SystemTime::now()).unwrap();
        assert_eq!((evicted.files, evicted.remaining), (4, 1100));
        assert_eq!(has(dir.path(), 4), [false; 3]);
        assert_eq!(has(dir.path(), 3).iter().filter(|e| **e).count(), 2);
        assert_eq!(has(dir.path(), 1), [true; 3]);
        // At 0 every unreferenced file not used lately goes.
        let evicted = evict(dir.path(), 0, &referenced, SystemTime::now()).unwrap();
        assert_eq!(evicted.remaining, 600, "2's three and 5's three");
        assert_eq!(has(dir.path(), 2), [true; 3], "referenced");
        assert_eq!(has(dir.path(), 5), [true; 3], "used within RECENT");
        assert_eq!(has(dir.path(), 1), [false; 3]);
        assert_eq!(has(dir.path(), 3), [false; 3]);
    }

    /// A Python function's build: the interpreter's code (shared) and its own files.
    #[test]
    fn a_referenced_functions_files_and_record_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path());
        let (code, mine, old) = (digest(1), digest(2), digest(3));
        store.put(Object::Wasm(&code), &[1; 100]).unwrap();
        for (files, key) in [(&mine, digest(102)), (&old, digest(103))] {
            store.put(Object::Files(files), &[2; 100]).unwrap();
            let record = format!("{code}\n{files}");
            store.put(Object::Build(&key), record.as_bytes()).unwrap();
        }
        let an_hour_later = SystemTime::now() + Duration::from_secs(3600);
        let referenced = HashSet::from([code.clone(), mine.clone()]);
        evict(dir.path(), 0, &referenced, an_hour_later).unwrap();
        let exists = |path: PathBuf| path.exists();
        assert!(exists(dir.path().join("files").join(mine.file_name())));
        assert!(exists(
            dir.path().join("builds").join(digest(102).file_name())
        ));
        assert!(!exists(dir.path().join("files").join(old.file_name())));
        assert!(
            !exists(dir.path().join("builds").join(digest(103).file_name())),
            "a record of files no Function names"
        );
        assert!(exists(dir.path().join("wasm").join(code.file_name())));
    }

    #[test]
    fn reads_and_look_ups_mark_an_object_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let (three, four) = (digest(3), digest(4));
        assert!(store.get(Object::Wasm(&three)).unwrap().is_some());
        assert!(store.contains(Object::Wasm(&four)));
        // Nothing referenced: only what was just used stays (besides 5).
        evict(dir.path(), 0, &HashSet::new(), SystemTime::now()).unwrap();
        assert_eq!(has(dir.path(), 3), [true, false, false]);
        assert_eq!(has(dir.path(), 4), [true, false, false]);
        assert_eq!(has(dir.path(), 1), [false; 3]);
    }
}
