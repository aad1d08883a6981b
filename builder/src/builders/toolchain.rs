//! Running a compiler: a clear error when it is missing (with how to install it), the
//! compiler's own message when the build fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmless_api::function::{Packaging, Runtime};
use wasmless_api::validate::is_identifier;

use super::{BuildError, Source};
use crate::archive;

/// The most of a compiler's output kept (its end, which says what failed).
pub const MAX_MESSAGE: usize = 16 * 1024;

/// Runs `command` in `dir`; its stderr (trimmed, its last lines) becomes the error when it fails.
/// Output goes to files in `dir`, bounded by the sandbox's file-size limit, never to memory.
pub fn run(mut command: Command, dir: &Path, install_hint: &'static str) -> Result<(), BuildError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let cannot = |e: std::io::Error| BuildError::Compile(format!("cannot run {program}: {e}"));
    let (out_path, err_path) = (dir.join(".wasmless-stdout"), dir.join(".wasmless-stderr"));
    let stdout = std::fs::File::create(&out_path).map_err(cannot)?;
    let stderr = std::fs::File::create(&err_path).map_err(cannot)?;
    // SAFETY: prctl with integer arguments only, between fork and exec: a compiler dies with
    // the build process (its timeout kills the group, this covers the rest).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
    let status = command
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .status()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                BuildError::Toolchain {
                    tool: program.clone(),
                    hint: install_hint.into(),
                }
            } else {
                cannot(e)
            }
        })?;
    let tail = |p: &Path| read_tail(p, MAX_MESSAGE).trim().to_string();
    let (out, err) = (tail(&out_path), tail(&err_path));
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    if status.success() {
        return Ok(());
    }
    let mut message = if err.is_empty() { out } else { err };
    let out_of_memory = OUT_OF_MEMORY.iter().any(|m| message.contains(m));
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            message.push_str(&format!(
                "\n{program} was killed by signal {signal} ({})",
                limit_hint(signal)
            ));
        }
    }
    // Paths of the temporary build directory mean nothing to the user, and the end of a long
    // log says what failed.
    let message = message.replace(&format!("{}/", dir.display()), "");
    let lines: Vec<&str> = message.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    // First: statuses keep the start of long messages.
    Err(BuildError::Compile(if out_of_memory {
        format!("{}\n{tail}", memory_limit_note())
    } else {
        tail
    }))
}

/// What compilers print when an allocation fails.
const OUT_OF_MEMORY: &[&str] = &[
    "out of memory",
    "Cannot allocate memory",
    "bad_alloc",
    "memory allocation of",
    "MemoryError",
    "heap out of memory",
];

/// Says which limit a compiler that ran out of memory hit.
fn memory_limit_note() -> String {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_DATA, &mut limit) } == 0;
    if known && limit.rlim_cur != libc::RLIM_INFINITY {
        format!(
            "the build ran out of memory: its limit is {} MiB per process",
            limit.rlim_cur >> 20
        )
    } else {
        "the build ran out of memory".into()
    }
}

/// What a signal that ends a build usually means.
pub fn limit_hint(signal: i32) -> &'static str {
    match signal {
        libc::SIGXCPU => "the build's CPU-time limit",
        libc::SIGXFSZ => "the build's file-size limit",
        libc::SIGKILL => "the build's CPU-time or memory limit, or its timeout",
        libc::SIGSEGV | libc::SIGABRT | libc::SIGBUS => "often the build's memory limit",
        _ => "an unexpected signal",
    }
}

/// The last `max` bytes of a file, as text.
pub fn read_tail(path: &Path, max: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max as u64)));
    let mut bytes = Vec::with_capacity(max.min(len as usize));
    let _ = file.take(max as u64).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A scratch directory for one build.
pub fn workdir() -> Result<tempfile::TempDir, BuildError> {
    tempfile::Builder::new()
        .prefix("wasmless-build-")
        .tempdir()
        .map_err(|e| BuildError::Compile(format!("cannot create a build directory: {e}")))
}

pub fn write(path: &Path, contents: &[u8]) -> Result<(), BuildError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| BuildError::Compile(format!("cannot write {}: {e}", path.display())))?;
    }
    std::fs::write(path, contents)
        .map_err(|e| BuildError::Compile(format!("cannot write {}: {e}", path.display())))
}

pub fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path)
        .map_err(|e| BuildError::Compile(format!("the build wrote no {}: {e}", path.display())))
}

/// Writes the function's files into `dir`: the source as the handler's file (`hello.py`), or
/// an archive's files (checked and bounded, see [`archive::extract`]). Returns the handler
/// file's path.
pub fn write_source(source: &Source, runtime: Runtime, dir: &Path) -> Result<PathBuf, BuildError> {
    let path = dir.join(archive::handler_file(runtime, source.handler)?);
    match source.packaging {
        Packaging::File => write(&path, source.code)?,
        Packaging::Zip => {
            std::fs::create_dir_all(dir)
                .map_err(|e| BuildError::Compile(format!("cannot write {}: {e}", dir.display())))?;
            archive::extract(source.code, runtime, source.handler, dir)?;
        }
    }
    Ok(path)
}

/// Splits Kubeless's `file.func` handler.
pub fn split_handler(handler: &str) -> Result<(&str, &str), BuildError> {
    handler
        .trim()
        .rsplit_once('.')
        .filter(|(file, func)| !file.is_empty() && !func.is_empty())
        .ok_or_else(|| {
            BuildError::Compile(format!(
                "handler {handler:?} is not of the form file.function"
            ))
        })
}

/// Where a runtime keeps what its builds share (installed toolchains, compiled dependencies):
/// `<cache>/toolchains/<runtime>`, the cache being `$WASMLESS_CACHE` or the user's (as the build
/// scripts do).
pub fn cache_dir(runtime: &str) -> std::path::PathBuf {
    std::env::var_os("WASMLESS_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(wasmless_runtime::files::user_cache)
        .join("toolchains")
        .join(runtime)
}

/// Where a runtime keeps what one tenant's builds write and share (dependencies, Rust's target
/// directory): `$WASMLESS_BUILD_STATE/<runtime>`, set by the sandbox to the tenant's own
/// directory; the runtime's toolchain cache when unset (a builder used directly).
pub fn state_dir(runtime: &str) -> std::path::PathBuf {
    match std::env::var_os("WASMLESS_BUILD_STATE") {
        Some(dir) => std::path::PathBuf::from(dir).join(runtime),
        None => cache_dir(runtime),
    }
}

/// Refuses handler names that are not `language` identifiers: they are pasted into glue code.
pub fn identifiers(handler: &str, language: &str, names: &[&str]) -> Result<(), BuildError> {
    match names.iter().find(|n| !is_identifier(n)) {
        Some(name) => Err(BuildError::Compile(format!(
            "handler {handler:?}: {name:?} is not a {language} identifier"
        ))),
        None => Ok(()),
    }
}

/// Refuses `deps` for a runtime that builds with its standard library only (`why`).
pub fn no_deps(source: &Source, why: &str) -> Result<(), BuildError> {
    if source.deps.trim().is_empty() {
        Ok(())
    } else {
        Err(BuildError::Compile(format!(
            "{why}: deps are not supported"
        )))
    }
}

/// `wasm`'s compiled form for `engine`, beside it, named by the engine's compatibility hash: a
/// new wasmtime (or another configuration) writes its own.
pub fn compiled_path(wasm: &Path, engine: &wasmtime::Engine) -> PathBuf {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same name in every process.
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    wasm.with_extension(format!("{:016x}.cwasm", hasher.finish()))
}
