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
