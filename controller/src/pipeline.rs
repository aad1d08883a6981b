//! The one flow every entry point drives: manifest → decoded source → build → precompile →
//! artifact store. An identical build (same runtime, source, deps and builder version) is never
//! repeated.

use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;
use wasmtime::Engine;

use wasmless_runtime::engine::{self, EngineError};
use wasmless_runtime::{FunctionKey, FunctionManifest};

use crate::artifacts::{DirStore, StoreError};
use crate::builders::{self, BuildError, Source};
use crate::source::{self, SourceError};

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("the built binary is not valid WebAssembly: {0}")]
    Compile(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A built function, ready for a host.
#[derive(Clone, Debug, Serialize)]
pub struct Artifact {
    /// `sha256:<hex>` of the wasm.
    pub digest: String,
    pub size: u64,
    /// The precompiled form for this engine.
    pub precompiled: PathBuf,
    /// Whether this call found the build already done.
    pub cached: bool,
}

pub struct Pipeline {
    engine: Engine,
    store: DirStore,
    engine_hash: String,
}

impl Pipeline {
    /// `engine` must be configured by `wasmless_runtime::EngineConfig`, as hosts' engines are.
    pub fn new(engine: Engine, store: DirStore) -> Self {
        let engine_hash = {
            use std::hash::{DefaultHasher, Hash, Hasher};
            let mut h = DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            format!("{:016x}", h.finish())
        };
        Self {
            engine,
            store,
            engine_hash,
        }
    }

    pub fn store(&self) -> &DirStore {
        &self.store
    }

    /// Builds one function. Blocking: run it off the async runtime.
    pub fn build(
        &self,
        manifest: &FunctionManifest,
        base_dir: Option<&Path>,
    ) -> Result<Artifact, PipelineError> {
        let key = manifest.key();
        let spec = &manifest.spec;
        let builder = builders::for_runtime(&spec.runtime)?;
        let code = source::decode(spec, base_dir)?;
        let build_key = build_key(
            &spec.runtime,
            builder.version(),
            &code,
            &spec.handler,
            &spec.deps,
        );

        if let Some(digest) = self.store.build_result(&build_key) {
            return self.precompiled(&key, digest, true);
        }
        let started = std::time::Instant::now();
        let wasm = builder.build(&Source {
            code: &code,
            handler: &spec.handler,
            deps: &spec.deps,
        })?;
        let digest = source::digest(&wasm);
        self.store.put(&self.store.wasm_path(&digest), &wasm)?;
        self.store.record_build(&build_key, &digest)?;
        tracing::info!(function = %key, %digest, size = wasm.len(), elapsed_ms = started.elapsed().as_millis() as u64, "built");
        self.precompiled(&key, digest, false)
    }

    /// The precompiled form of a stored wasm, compiling it on first use.
    fn precompiled(
        &self,
        key: &FunctionKey,
        digest: String,
        cached: bool,
    ) -> Result<Artifact, PipelineError> {
        let wasm_path = self.store.wasm_path(&digest);
        let size = std::fs::metadata(&wasm_path)
            .map(|m| m.len())
            .unwrap_or_default();
        let path = self.store.precompiled_path(&self.engine_hash, &digest);
        if path.exists() {
            return Ok(Artifact {
                digest,
                size,
                precompiled: path,
                cached,
            });
        }
        let wasm = self.store.read(&wasm_path)?;
        let started = std::time::Instant::now();
        let bytes = engine::precompile(&self.engine, &wasm)?;
        self.store.put(&path, &bytes)?;
        tracing::info!(function = %key, %digest, elapsed_ms = started.elapsed().as_millis() as u64, "precompiled");
        Ok(Artifact {
            digest,
            size,
            precompiled: path,
            cached: false,
        })
    }
}

/// Names a build by everything that can change its output.
pub fn build_key(
    runtime: &str,
    builder_version: &str,
    code: &[u8],
    handler: &str,
    deps: &str,
) -> String {
    let mut input = Vec::with_capacity(code.len() + deps.len() + 64);
    for part in [
        runtime.trim().to_ascii_lowercase().as_bytes(),
        builder_version.as_bytes(),
        handler.as_bytes(),
        deps.as_bytes(),
        code,
    ] {
        input.extend_from_slice(&(part.len() as u64).to_le_bytes());
        input.extend_from_slice(part);
    }
    source::digest(&input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmless_runtime::EngineConfig;

    fn manifest(body: &str) -> FunctionManifest {
        let yaml = format!(
            "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nmetadata: {{name: f, namespace: t}}\nspec: {{runtime: wat, function: '(module (func (export \"_start\")) (data \"{body}\"))'}}\n"
        );
        crate::manifest::parse(&yaml).unwrap().remove(0)
    }

    #[test]
    fn identical_builds_are_not_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let engine = EngineConfig::default().build().unwrap();
        let pipeline = Pipeline::new(engine.clone(), DirStore::new(dir.path()));
        let first = pipeline.build(&manifest("a"), None).unwrap();
        assert!(!first.cached);
        let again = pipeline.build(&manifest("a"), None).unwrap();
        assert!(again.cached);
        assert_eq!(
            (again.digest.as_str(), again.size),
            (first.digest.as_str(), first.size)
        );
        let other = pipeline.build(&manifest("b"), None).unwrap();
        assert_ne!(other.digest, first.digest);
        // The precompiled artifact loads into an engine of the same configuration.
        assert!(engine::load_precompiled(&engine, &first.precompiled).is_ok());
    }

    #[test]
    fn build_keys_change_with_every_input() {
        let base = build_key("wat", "v1", b"code", "h.f", "deps");
        for other in [
            build_key("wasm", "v1", b"code", "h.f", "deps"),
            build_key("wat", "v2", b"code", "h.f", "deps"),
            build_key("wat", "v1", b"code!", "h.f", "deps"),
            build_key("wat", "v1", b"code", "h.g", "deps"),
            build_key("wat", "v1", b"code", "h.f", ""),
            build_key("wat", "v1", b"cod", "eh.f", "deps"),
        ] {
            assert_ne!(base, other);
        }
        assert_eq!(base, build_key("WAT", "v1", b"code", "h.f", "deps"));
    }
}
