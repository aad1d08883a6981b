//! One builder per runtime, behind one trait: source bytes in, a WebAssembly binary out. The
//! controller and `wasmless up` use the same builders.

mod c;
mod go;
mod rust;
mod script;
mod toolchain;
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
    #[error("{tool} is not installed: {hint}")]
    Toolchain { tool: String, hint: &'static str },
}

const SUPPORTED: &str = "wat, wasm, go, nodejs, python, rust, c";

pub trait Builder: Send + Sync {
    /// Changes whenever the builder's output for the same input may change; part of the build key.
    fn version(&self) -> &'static str;
    fn build(&self, source: &Source) -> Result<Vec<u8>, BuildError>;
}

/// Our runtime name for a manifest's `runtime`: Kubeless names carry a version
/// (`python3.8`, `nodejs14`, `go1.14`, `ruby2.4`), ours do not.
pub fn canonical_runtime(runtime: &str) -> String {
    let lower = runtime.trim().to_ascii_lowercase();
    let name = lower.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    match name {
        "node" | "nodejs_distroless" => "nodejs".into(),
        "" => lower,
        other => other.into(),
    }
}

/// The builder for a manifest's `runtime`.
pub fn for_runtime(runtime: &str) -> Result<&'static dyn Builder, BuildError> {
    match canonical_runtime(runtime).as_str() {
        "wat" => Ok(&wat::Wat),
        "wasm" => Ok(&wasm::Wasm),
        "go" => Ok(&go::Go),
        "nodejs" => Ok(&script::NODEJS),
        "python" => Ok(&script::PYTHON),
        "rust" => Ok(&rust::Rust),
        "c" => Ok(&c::C),
        _ => Err(BuildError::UnknownRuntime(runtime.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeless_runtime_names_map_to_ours() {
        for (kubeless, ours) in [
            ("python3.8", "python"),
            ("python2.7", "python"),
            ("nodejs14", "nodejs"),
            ("nodejs_distroless8", "nodejs"),
            ("go1.14", "go"),
            ("WAT", "wat"),
            ("wasm", "wasm"),
        ] {
            assert_eq!(canonical_runtime(kubeless), ours, "{kubeless}");
        }
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
