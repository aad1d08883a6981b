//! Files written whole or not at all: artifact stores and caches are read while written.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Tells apart the temporary files of concurrent writes to one path within a process (two
/// builds of the same function, two compiles sharing a cache entry).
static WRITES: AtomicU64 = AtomicU64::new(0);

/// The user's wasmless cache: `$XDG_CACHE_HOME/wasmless`, else `~/.cache/wasmless` (the local
/// artifact store, toolchains, compiled dependencies).
pub fn user_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("wasmless")
}

/// Writes through a temporary file in the same directory and a rename, so readers never see
/// half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let write = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".tmp-{}-{write}-{name}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Marks a file as used now (its modification time), so that [`evict`] keeps it longest.
/// Best effort: a file that cannot be touched is only evicted sooner.
pub fn touch(path: &Path) {
    let now = std::time::SystemTime::now();
    if let Ok(file) = std::fs::File::options().write(true).open(path) {
        let _ = file.set_modified(now);
    }
}

/// What one [`evict`] pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Evicted {
    pub files: usize,
    pub bytes: u64,
    /// What the files under the root hold afterwards.
    pub remaining: u64,
}

/// Removes the least recently used files under `root` (oldest modification time first) until
/// they hold at most `max_bytes`, skipping every file `keep` names (given its path and last
/// use). What is kept can leave the total above the bound: it is never removed to meet it.
pub fn evict(
    root: &Path,
    max_bytes: u64,
    keep: impl Fn(&Path, std::time::SystemTime) -> bool,
) -> std::io::Result<Evicted> {
    let mut files = Vec::new();
    collect(root, &mut files)?;
    let mut remaining: u64 = files.iter().map(|(_, len, _)| len).sum();
    let mut evicted = Evicted::default();
    files.sort_by_key(|(_, _, used)| *used);
    for (path, len, used) in files {
        if remaining <= max_bytes {
            break;
        }
        if keep(&path, used) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                remaining -= len;
                evicted.files += 1;
                evicted.bytes += len;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => remaining -= len,
            Err(e) => return Err(e),
        }
    }
    evicted.remaining = remaining;
    Ok(evicted)
}

/// What the files under `root` hold, in bytes (0 when it does not exist).
pub fn usage(root: &Path) -> std::io::Result<u64> {
    let mut files = Vec::new();
    collect(root, &mut files)?;
    Ok(files.iter().map(|(_, len, _)| len).sum())
}

/// Every regular file under `dir` with its size and modification time (symbolic links are not
/// followed).
fn collect(
    dir: &Path,
    out: &mut Vec<(PathBuf, u64, std::time::SystemTime)>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            collect(&entry.path(), out)?;
        } else if meta.is_file() {
            let used = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            out.push((entry.path(), meta.len(), used));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn eviction_removes_the_least_recently_used_until_the_bound_and_keeps_what_it_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str, age_s: u64| {
            let path = dir.path().join(name);
            write_atomic(&path, &[0u8; 100]).unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(SystemTime::now() - Duration::from_secs(age_s))
                .unwrap();
            path
        };
        let oldest = at("a/oldest", 400);
        let kept = at("a/kept", 300);
        let older = at("b/older", 200);
        let newest = at("newest", 100);
        let evicted = evict(dir.path(), 250, |p, _| p == kept).unwrap();
        assert_eq!(
            evicted,
            Evicted {
                files: 2,
                bytes: 200,
                remaining: 200
            }
        );
        assert!(!oldest.exists() && !older.exists());
        assert!(kept.exists() && newest.exists());
        // Under the bound: nothing to do. Everything kept: over the bound, and said so.
        assert_eq!(evict(dir.path(), 1000, |_, _| false).unwrap().files, 0);
        let all_kept = evict(dir.path(), 0, |_, _| true).unwrap();
        assert_eq!((all_kept.files, all_kept.remaining), (0, 200));
        touch(&kept);
        assert_eq!(evict(dir.path(), 100, |_, _| false).unwrap().files, 1);
        assert!(kept.exists() && !newest.exists(), "touched: used last");
        assert_eq!(usage(dir.path()).unwrap(), 100);
        assert_eq!(usage(&dir.path().join("none")).unwrap(), 0);
    }
}
