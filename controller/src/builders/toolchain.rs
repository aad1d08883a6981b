//! Running a compiler: a clear error when it is missing (with how to install it), the
//! compiler's own message when the build fails.

use std::path::Path;
use std::process::Command;

use wasmless_runtime::validate::is_identifier;

use super::BuildError;

/// Runs `command` in `dir`; its stderr (trimmed) becomes the error when it fails.
pub fn run(mut command: Command, dir: &Path, install_hint: &'static str) -> Result<(), BuildError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command.current_dir(dir).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            BuildError::Toolchain {
                tool: program.clone(),
                hint: install_hint,
            }
        } else {
            BuildError::Compile(format!("cannot run {program}: {e}"))
        }
    })?;
    if output.status.success() {
        return Ok(());
    }
    let mut message = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if message.is_empty() {
        message = String::from_utf8_lossy(&output.stdout).trim().to_string();
    }
    // Paths of the temporary build directory mean nothing to the user, and the end of a long
    // log says what failed.
    let message = message.replace(&format!("{}/", dir.display()), "");
    let lines: Vec<&str> = message.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    Err(BuildError::Compile(tail))
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
pub fn no_deps(source: &super::Source, why: &str) -> Result<(), BuildError> {
    if source.deps.trim().is_empty() {
        Ok(())
    } else {
        Err(BuildError::Compile(format!(
            "{why}: deps are not supported"
        )))
    }
}
