//! One builder per runtime, behind one trait: source bytes in, a WebAssembly binary out. They
//! run inside the builder's sandboxed child process ([`crate::sandbox`]); the controller only
//! reads their versions (part of each build key).

mod c;
mod go;
mod java;
// Maps the compiled interpreter for the build's check (as the host loads precompiled code).
#[allow(unsafe_code)]
mod python;
// Maps the cached compiled interpreter (as the host loads precompiled code).
#[allow(unsafe_code)]
mod ruby;
mod rust;
mod script;
// Reads the process's memory limit (getrlimit).
#[allow(unsafe_code)]
pub mod toolchain;
mod wasm;
mod wat;

use thiserror::Error;
use wasmless_api::function::{Packaging, Runtime};

/// What a builder gets from the manifest.
pub struct Source<'a> {
    /// The handler's file, or a zip archive of it and the files beside it.
    pub code: &'a [u8],
    pub packaging: Packaging,
    pub handler: &'a str,
    pub deps: &'a str,
}

impl From<crate::archive::ArchiveError> for BuildError {
    fn from(e: crate::archive::ArchiveError) -> Self {
        BuildError::Compile(format!("the archive: {e}"))
    }
}

#[derive(Debug, Error)]
pub enum BuildError {
    #[error("unknown runtime {0:?}: this build supports {supported}", supported = Runtime::supported())]
    UnknownRuntime(String),
    #[error("{0}")]
    Compile(String),
    #[error("{tool} is not installed: {hint}")]
    Toolchain { tool: String, hint: String },
    /// Stopped by the sandbox's limits (time, CPU, memory, output).
    #[error("{0}")]
    Limit(String),
    /// The builder could not be asked or did not answer (worth retrying).
    #[error("builder unavailable: {0}")]
    Unavailable(String),
    /// The builder failed for a reason of its own (not the source's).
    #[error("builder error: {0}")]
    Internal(String),
}

pub trait Builder: Send + Sync {
    /// Changes whenever the builder's output for the same input may change; part of the build key.
    fn version(&self) -> &'static str;
    fn build(&self, source: &Source) -> Result<Vec<u8>, BuildError>;
    /// Installs what the builder pins into the shared toolchain directory, if missing. Runs
    /// with no tenant input, before a tenant's build, in a sandbox where that directory is
    /// writable (it is read-only to every tenant's build).
    fn prepare(&self) -> Result<(), BuildError> {
        Ok(())
    }
    /// Whether a build with these `deps` must reach a package registry (TCP port 443).
    fn needs_registry(&self, _deps: &str) -> bool {
        false
    }
}

/// The builder for a runtime.
pub fn builder(runtime: Runtime) -> &'static dyn Builder {
    match runtime {
        Runtime::Wat => &wat::Wat,
        Runtime::Wasm => &wasm::Wasm,
        Runtime::Go => &go::Go,
        Runtime::Nodejs => &script::NODEJS,
        Runtime::Python => &python::Python,
        Runtime::Rust => &rust::Rust,
        Runtime::C => &c::C,
        Runtime::Ruby => &ruby::Ruby,
        Runtime::Java => &java::Java,
    }
}

/// The builder for a manifest's `runtime`.
pub fn for_runtime(runtime: &str) -> Result<&'static dyn Builder, BuildError> {
    Runtime::parse(runtime)
        .map(builder)
        .ok_or_else(|| BuildError::UnknownRuntime(runtime.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_runtime_has_a_builder() {
        assert!(for_runtime("wat").is_ok());
        assert!(for_runtime("python3.8").is_ok());
        assert!(for_runtime("rust").is_ok() && for_runtime("c").is_ok());
        let e = for_runtime("cobol")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("wat, wasm, go, nodejs, python, rust, c"), "{e}");
    }
}
