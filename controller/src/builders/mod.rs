//! One builder per runtime, behind one trait: source bytes in, a WebAssembly binary out. The
//! controller and `wasmless up` use the same builders.

mod wasm;
mod wat;

use thiserror::Error;

/// What a builder gets from the manifest.
pub struct Source<'a> {
    pub code: &'a [u8],
    pub handler: &'a str,
    pub deps: &'a str,
}

#[derive(Debug, Error)]
pub enum BuildError {
    #[error("unknown runtime {0:?}: this build supports {SUPPORTED}")]
    UnknownRuntime(String),
    #[error("{0}")]
    Compile(String),
}

const SUPPORTED: &str = "wat, wasm";

pub trait Builder: Send + Sync {
    /// Changes whenever the builder's output for the same input may change; part of the build key.
    fn version(&self) -> &'static str;
    fn build(&self, source: &Source) -> Result<Vec<u8>, BuildError>;
}

/// The builder for a manifest's `runtime`.
pub fn for_runtime(runtime: &str) -> Result<&'static dyn Builder, BuildError> {
    match runtime.trim().to_ascii_lowercase().as_str() {
        "wat" => Ok(&wat::Wat),
        "wasm" => Ok(&wasm::Wasm),
        _ => Err(BuildError::UnknownRuntime(runtime.into())),
    }
}
