//! The one flow every entry point drives: manifest → decoded source → build → precompile →
//! artifact store. An identical build (same runtime, source, deps and builder version) is never
//! repeated.

use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;
use wasmtime::Engine;

use wasmless_runtime::abi::Abi;
use wasmless_runtime::engine::{self, EngineError};
use wasmless_runtime::function::ArtifactRef;
use wasmless_runtime::{FunctionKey, FunctionSpec};

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
    pub abi: Abi,
    /// The precompiled form for this engine, and the `sha256:<hex>` of its bytes.
    pub precompiled: PathBuf,
    pub precompiled_digest: String,
    /// Whether this call found the build already done.
    pub cached: bool,
}

impl Artifact {
    /// How a Function's status names this artifact.
    pub fn reference(&self) -> ArtifactRef {
        ArtifactRef {
            digest: self.digest.clone(),
            size: self.size,
            abi: self.abi.as_str().to_string(),
            precompiled: self.precompiled_digest.clone(),
        }
    }
}

pub struct Pipeline {
    engine: Engine,
    store: DirStore,
    engine_hash: String,
}

impl Pipeline {
    /// `engine` must be configured by `wasmless_runtime::EngineConfig`, as hosts' engines are.
    pub fn new(engine: Engine, store: DirStore) -> Self {
        let engine_hash = engine::compatibility_key(&engine);
        Self {
            engine,
            store,
            engine_hash,
        }
    }

    pub fn store(&self) -> &DirStore {
        &self.store
    }

    /// The key precompiled artifacts are filed under (see `engine::compatibility_key`).
    pub fn engine_key(&self) -> &str {
        &self.engine_hash
    }

    /// Whether the artifact a status names is complete in this store (so nothing needs building).
    pub fn has(&self, artifact: &ArtifactRef) -> bool {
        self.store.wasm_path(&artifact.digest).exists()
            && self
                .store
                .precompiled_path(&self.engine_hash, &artifact.digest)
                .exists()
    }

    /// Builds one function. Blocking: run it off the async runtime. `base_dir` resolves relative
    /// `url` sources (the manifest's directory in local mode).
    pub fn build(
        &self,
        key: &FunctionKey,
        spec: &FunctionSpec,
        base_dir: Option<&Path>,
    ) -> Result<Artifact, PipelineError> {
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
            return self.precompiled(key, digest, true);
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
        self.precompiled(key, digest, false)
    }

    /// The precompiled form of a stored wasm, compiling it on first use.
    fn precompiled(
        &self,
        key: &FunctionKey,
        digest: String,
        cached: bool,
    ) -> Result<Artifact, PipelineError> {
        let wasm = self.store.read(&self.store.wasm_path(&digest))?;
        let abi = Abi::of_wasm(&wasm);
        let size = wasm.len() as u64;
        let path = self.store.precompiled_path(&self.engine_hash, &digest);
        let (bytes, cached) = match self.store.read(&path) {
            Ok(bytes) => (bytes, cached),
            Err(_) => {
                let started = std::time::Instant::now();
                let bytes = engine::precompile(&self.engine, &wasm)?;
                self.store.put(&path, &bytes)?;
                tracing::info!(function = %key, %digest, elapsed_ms = started.elapsed().as_millis() as u64, "precompiled");
                (bytes, false)
            }
        };
        Ok(Artifact {
            digest,
            size,
            abi,
            precompiled: path,
            precompiled_digest: source::digest(&bytes),
            cached,
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
        builders::canonical_runtime(runtime).as_bytes(),
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
    use wasmless_runtime::{EngineConfig, FunctionManifest};

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
        let build = |m: FunctionManifest| pipeline.build(&m.key(), &m.spec, None).unwrap();
        let first = build(manifest("a"));
        assert!(!first.cached);
        assert!(pipeline.has(&first.reference()));
        let again = build(manifest("a"));
        assert!(again.cached);
        assert_eq!(again.reference(), first.reference());
        let other = build(manifest("b"));
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
