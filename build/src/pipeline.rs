//! The one flow every entry point drives: manifest → decoded source → build (by the builder
//! process, never here) → precompile → artifact store. An identical build (same runtime, source,
//! deps and builder version) is never repeated.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use thiserror::Error;
use wasmtime::Engine;

use wasmless_api::Abi;
use wasmless_api::digest::Sha256Digest;
use wasmless_api::files::{self, FilesRef, NotWasm};
use wasmless_api::function::{ArtifactRef, Packaging, Runtime};
use wasmless_api::validate::{self, Invalid, Origin};
use wasmless_api::{FunctionKey, FunctionSpec};
use wasmless_runtime::artifacts::{ArtifactSource, LoadError};
use wasmless_runtime::engine::{self, Compiled, EngineError, LoadAgain, SharedCode};

use wasmless_builder::builders;
use wasmless_builder::{Build, BuildError, Source};

use crate::artifacts::{Object, SharedStore, StoreError};
use crate::source::{self, SourceError};

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error("invalid spec: {0}")]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("the built binary is not valid WebAssembly: {0}")]
    Compile(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the builder's output: {0}")]
    NotWasm(#[from] NotWasm),
}

/// Where Cranelift's incremental compilation cache lives for a store directory (see
/// `wasmless_runtime::compile_cache`): shared by every build that uses the store.
pub fn compile_cache_dir(store: &Path) -> PathBuf {
    store.join("compile-cache")
}

/// A built function, ready for a host.
#[derive(Clone, Debug, Serialize)]
pub struct Artifact {
    /// The wasm's.
    pub digest: Sha256Digest,
    pub size: u64,
    pub abi: Abi,
    /// The precompiled form for this engine (a local file, when the store has one), and the
    /// `sha256:<hex>` of its bytes.
    pub precompiled: Option<PathBuf>,
    pub precompiled_digest: Sha256Digest,
    /// The function's own files, when its code is shared ([`wasmless_api::files`]).
    pub files: Option<FilesRef>,
    /// Whether this call found the build already done.
    pub cached: bool,
}

impl Artifact {
    /// How a Function's status names this artifact.
    pub fn reference(&self) -> ArtifactRef {
        ArtifactRef {
            digest: self.digest.clone(),
            size: self.size,
            abi: self.abi,
            precompiled: Some(self.precompiled_digest.clone()),
            files: self.files.clone(),
        }
    }
}

/// What a build produced, as its record in the store names it: the code, and the function's
/// files when the build split them off.
pub struct BuildRecord {
    code: Sha256Digest,
    files: Option<Sha256Digest>,
}

impl BuildRecord {
    /// The digests it names (what store eviction keeps it by).
    pub fn digests(&self) -> impl Iterator<Item = &Sha256Digest> {
        files::digests(&self.code, self.files.as_ref())
    }

    /// The record: the code's digest, then the files' on a line of their own.
    fn record(&self) -> String {
        match &self.files {
            None => self.code.to_string(),
            Some(files) => format!("{}\n{files}", self.code),
        }
    }

    /// A record that does not read names nothing: built again.
    pub fn parse(record: &[u8]) -> Option<Self> {
        let text = String::from_utf8_lossy(record);
        let mut lines = text.lines().map(str::trim);
        let code = Sha256Digest::parse(lines.next()?).ok()?;
        let files = match lines.next() {
            Some(line) => Some(Sha256Digest::parse(line).ok()?),
            None => None,
        };
        Some(Self { code, files })
    }
}

pub struct Pipeline {
    engine: Engine,
    store: SharedStore,
    engine_hash: String,
    builder: std::sync::Arc<dyn Build>,
    shared: std::sync::Arc<SharedCode>,
    described: Mutex<HashMap<Sha256Digest, Described>>,
}

/// Stored code as statuses tell it.
#[derive(Clone)]
struct Described {
    size: u64,
    abi: Abi,
    precompiled_digest: Sha256Digest,
}

impl Pipeline {
    /// `engine` must be configured by `wasmless_runtime::EngineConfig`, as hosts' engines are;
    /// `builder` is the builder process's client.
    pub fn new(engine: Engine, store: SharedStore, builder: std::sync::Arc<dyn Build>) -> Self {
        let engine_hash = engine::compatibility_key(&engine);
        Self {
            engine,
            store,
            engine_hash,
            builder,
            shared: Default::default(),
            described: Mutex::default(),
        }
    }

    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// The key precompiled artifacts are filed under (see `engine::compatibility_key`).
    pub fn engine_key(&self) -> &str {
        &self.engine_hash
    }

    /// Whether the artifact a status names is complete in this store (so nothing needs building).
    pub fn has(&self, artifact: &ArtifactRef) -> bool {
        self.store.contains(Object::Wasm(&artifact.digest))
            && artifact
                .files
                .as_ref()
                .is_none_or(|f| self.store.contains(Object::Files(&f.digest)))
            && self
                .store
                .contains(self.precompiled_object(&artifact.digest))
    }

    /// Builds one function. Blocking: run it off the async runtime. `origin` says what a `url`
    /// source may name.
    pub fn build(
        &self,
        key: &FunctionKey,
        spec: &FunctionSpec,
        origin: Origin,
    ) -> Result<Artifact, PipelineError> {
        let plan = Plan::new(spec, origin)?;
        // Built before: precompiled too, unless the engine is new (then compiled once here).
        if let Some(built) = self.build_result(&plan.build_key)? {
            return self.precompiled(key, built, true);
        }
        let started = std::time::Instant::now();
        let source = Source {
            code: &plan.code,
            packaging: plan.packaging,
            handler: &spec.handler,
            deps: &spec.deps,
        };
        let output = self.builder.build(plan.runtime, &key.namespace, &source)?;
        let (wasm, files) = files::split(&output)?;
        let digest = Sha256Digest::of(wasm);
        // An interpreter many functions share is stored once.
        if !self.store.contains(Object::Wasm(&digest)) {
            self.store.put(Object::Wasm(&digest), wasm)?;
        }
        let files = match files {
            Some(files) => {
                let digest = Sha256Digest::of(files);
                self.store.put(Object::Files(&digest), files)?;
                Some(digest)
            }
            None => None,
        };
        let built = BuildRecord {
            code: digest,
            files,
        };
        self.store
            .put(Object::Build(&plan.build_key), built.record().as_bytes())?;
        tracing::info!(function = %key, digest = %built.code, files = ?built.files, size = output.len(), elapsed_ms = started.elapsed().as_millis() as u64, "built");
        self.precompiled(key, built, false)
    }

    /// The finished artifact for `spec` if it was built and precompiled before; never builds.
    /// Cheap: decoding the source and a few store look-ups.
    pub fn lookup(
        &self,
        spec: &FunctionSpec,
        origin: Origin,
    ) -> Result<Option<Artifact>, PipelineError> {
        self.lookup_plan(&Plan::new(spec, origin)?)
    }

    /// The build key of `spec`: what names its build, in the store and in flight.
    pub fn build_key_of(
        &self,
        spec: &FunctionSpec,
        origin: Origin,
    ) -> Result<Sha256Digest, PipelineError> {
        Ok(Plan::new(spec, origin)?.build_key)
    }

    fn lookup_plan(&self, plan: &Plan) -> Result<Option<Artifact>, PipelineError> {
        let Some(built) = self.build_result(&plan.build_key)? else {
            return Ok(None);
        };
        self.stored_artifact(&built, true)
    }

    /// `built`'s artifact when its precompiled form is stored, its code described from memory
    /// when an earlier call read it.
    fn stored_artifact(
        &self,
        built: &BuildRecord,
        cached: bool,
    ) -> Result<Option<Artifact>, PipelineError> {
        let object = self.precompiled_object(&built.code);
        if let Some(code) = self
            .described(&built.code)
            .filter(|_| self.store.contains(object))
        {
            return Ok(Some(self.artifact(built, code, cached)?));
        }
        let Some(precompiled) = self.store.get(object)? else {
            return Ok(None);
        };
        let wasm = self
            .store
            .get(Object::Wasm(&built.code))?
            .unwrap_or_default();
        let code = self.describe(&built.code, &wasm, &precompiled);
        Ok(Some(self.artifact(built, code, cached)?))
    }

    /// What an earlier call read of stored code, if one did.
    fn described(&self, code: &Sha256Digest) -> Option<Described> {
        let described = self
            .described
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        described.get(code).cloned()
    }

    /// `wasm` and its precompiled form as statuses tell them, kept for later calls: stored code
    /// never changes (it is named by its digest), and an interpreter's is tens of MB that every
    /// function of its runtime names.
    fn describe(&self, code: &Sha256Digest, wasm: &[u8], precompiled: &[u8]) -> Described {
        let described = Described {
            size: wasm.len() as u64,
            abi: Abi::of_wasm(wasm),
            precompiled_digest: Sha256Digest::of(precompiled),
        };
        self.described
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(code.clone(), described.clone());
        described
    }

    /// What status and hosts are told about a stored wasm and its precompiled form.
    fn artifact(
        &self,
        built: &BuildRecord,
        code: Described,
        cached: bool,
    ) -> Result<Artifact, StoreError> {
        let files = match built.files.clone() {
            Some(digest) => {
                let size = self
                    .store
                    .get(Object::Files(&digest))?
                    .unwrap_or_default()
                    .len();
                Some(FilesRef {
                    digest,
                    size: size as u64,
                })
            }
            None => None,
        };
        Ok(Artifact {
            size: code.size,
            abi: code.abi,
            precompiled: self.store.local_path(self.precompiled_object(&built.code)),
            precompiled_digest: code.precompiled_digest,
            files,
            cached,
            digest: built.code.clone(),
        })
    }

    fn precompiled_object<'a>(&'a self, digest: &'a Sha256Digest) -> Object<'a> {
        Object::Precompiled {
            engine: &self.engine_hash,
            digest,
        }
    }

    /// What an earlier build with this key produced, if it is all still stored.
    fn build_result(&self, build_key: &Sha256Digest) -> Result<Option<BuildRecord>, StoreError> {
        let Some(bytes) = self.store.get(Object::Build(build_key))? else {
            return Ok(None);
        };
        let Some(built) = BuildRecord::parse(&bytes) else {
            return Ok(None);
        };
        let stored = self.store.contains(Object::Wasm(&built.code))
            && built
                .files
                .as_ref()
                .is_none_or(|f| self.store.contains(Object::Files(f)));
        Ok(stored.then_some(built))
    }

    /// The precompiled form of a stored wasm, compiling it on first use.
    fn precompiled(
        &self,
        key: &FunctionKey,
        built: BuildRecord,
        cached: bool,
    ) -> Result<Artifact, PipelineError> {
        if let Some(artifact) = self.stored_artifact(&built, cached)? {
            return Ok(artifact);
        }
        let digest = &built.code;
        let wasm = self.store.get(Object::Wasm(digest))?.unwrap_or_default();
        let started = std::time::Instant::now();
        let bytes = engine::precompile(&self.engine, &wasm)?;
        self.store.put(self.precompiled_object(digest), &bytes)?;
        tracing::info!(function = %key, %digest, elapsed_ms = started.elapsed().as_millis() as u64, "precompiled");
        let code = self.describe(digest, &wasm, &bytes);
        Ok(self.artifact(&built, code, false)?)
    }
}

/// `wasmless up`'s source of code: its store's precompiled forms, for this pipeline's engine.
impl ArtifactSource for Pipeline {
    async fn compiled(
        &self,
        artifact: &ArtifactRef,
    ) -> Result<(Compiled, Option<LoadAgain>), LoadError> {
        let not_stored = || LoadError::NotStored(artifact.digest.clone());
        let expected = artifact.precompiled.clone().ok_or_else(not_stored)?;
        let path = self
            .store
            .local_path(self.precompiled_object(&artifact.digest))
            .ok_or_else(not_stored)?;
        // Hashing tens of MB (an interpreter's artifact) is blocking work.
        let (engine, shown) = (self.engine.clone(), path.display().to_string());
        let shared = self.shared.clone();
        let (compiled, again) =
            tokio::task::spawn_blocking(move || shared.load_stored(&engine, &path, &expected))
                .await
                .map_err(|e| EngineError::Load {
                    path: shown,
                    source: wasmtime::format_err!("{e}"),
                })??;
        Ok((compiled, Some(again)))
    }

    async fn files(&self, artifact: &ArtifactRef) -> Result<Option<Vec<u8>>, LoadError> {
        let Some(files) = &artifact.files else {
            return Ok(None);
        };
        let bytes = self
            .store
            .get(Object::Files(&files.digest))
            .ok()
            .flatten()
            .filter(|bytes| files.digest.matches(bytes))
            .ok_or_else(|| LoadError::NotStored(files.digest.clone()))?;
        Ok(Some(bytes))
    }
}

/// What a build of one spec would do: the runtime, the decoded source, the build key.
struct Plan {
    runtime: Runtime,
    code: Vec<u8>,
    packaging: Packaging,
    build_key: Sha256Digest,
}

impl Plan {
    /// Entry points validate first (to report `InvalidSpec`); checked again here so that no
    /// path reaches a builder with a spec the validator refuses.
    fn new(spec: &FunctionSpec, origin: Origin) -> Result<Self, PipelineError> {
        let runtime = validate::spec(spec, origin)?.runtime;
        let version = builders::builder(runtime).version();
        let code = source::decode(spec, origin)?;
        let packaging = spec.packaging();
        let build_key = build_key(
            runtime,
            version,
            packaging,
            &code,
            &spec.handler,
            &spec.deps,
        );
        Ok(Self {
            runtime,
            code,
            packaging,
            build_key,
        })
    }
}

/// Names a build by everything that can change its output: an archive's key covers its bytes
/// (every file in it) and says it is one, so the same bytes as a single file build apart.
pub fn build_key(
    runtime: Runtime,
    builder_version: &str,
    packaging: Packaging,
    code: &[u8],
    handler: &str,
    deps: &str,
) -> Sha256Digest {
    let mut input = Vec::with_capacity(code.len() + deps.len() + 64);
    let mut parts = vec![
        runtime.name().as_bytes(),
        builder_version.as_bytes(),
        handler.as_bytes(),
        deps.as_bytes(),
        code,
    ];
    // Only archives add a part: single files keep the keys they were stored under.
    if packaging == Packaging::Zip {
        parts.push(b"zip");
    }
    for part in parts {
        input.extend_from_slice(&(part.len() as u64).to_le_bytes());
        input.extend_from_slice(part);
    }
    Sha256Digest::of(&input)
}

/// Builds WAT in this process: for unit tests of what surrounds a build, never for tenants
/// (so only in tests, and with the `testing` feature other crates' tests turn on).
#[cfg(any(test, feature = "testing"))]
pub struct InProcess;

#[cfg(any(test, feature = "testing"))]
impl Build for InProcess {
    fn build(&self, runtime: Runtime, _: &str, source: &Source) -> Result<Vec<u8>, BuildError> {
        assert_eq!(runtime, Runtime::Wat, "unit tests build WAT only");
        builders::builder(runtime).build(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::DirStore;
    use std::sync::Arc;
    use wasmless_api::FunctionManifest;
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
        let store = Arc::new(DirStore::new(dir.path()));
        let pipeline = Pipeline::new(engine.clone(), store, Arc::new(InProcess));
        let build =
            |m: FunctionManifest| pipeline.build(&m.key(), &m.spec, Origin::Cluster).unwrap();
        let lookup = |m: FunctionManifest| pipeline.lookup(&m.spec, Origin::Cluster).unwrap();
        assert!(lookup(manifest("a")).is_none());
        let first = build(manifest("a"));
        assert!(!first.cached);
        let found = lookup(manifest("a")).map(|a| a.reference());
        assert_eq!(found, Some(first.reference()));
        assert!(pipeline.has(&first.reference()));
        let again = build(manifest("a"));
        assert!(again.cached);
        assert_eq!(again.reference(), first.reference());
        let other = build(manifest("b"));
        assert_ne!(other.digest, first.digest);
        // The precompiled artifact loads into an engine of the same configuration.
        let path = first
            .precompiled
            .as_deref()
            .unwrap_or(Path::new("/missing"));
        assert!(engine::load_precompiled(&engine, path).is_ok());
    }

    /// As an ArtifactSource (`wasmless up`'s), the store's code is checked at every load: a
    /// precompiled file rewritten behind the store's back (valid code of another function) is
    /// refused, now and when dropped code is loaded again.
    #[tokio::test]
    async fn the_store_loads_only_what_was_built() {
        let dir = tempfile::tempdir().unwrap();
        let engine = EngineConfig::default().build().unwrap();
        let store = Arc::new(DirStore::new(dir.path()));
        let pipeline = Pipeline::new(engine, store, Arc::new(InProcess));
        let built = |body| {
            let m = manifest(body);
            pipeline.build(&m.key(), &m.spec, Origin::Cluster).unwrap()
        };
        let (a, b) = (built("a"), built("b"));
        let (_, again) = pipeline.compiled(&a.reference()).await.unwrap();
        let again = again.expect("stored code can be loaded again");
        let (a_path, b_path) = (
            a.precompiled.clone().unwrap(),
            b.precompiled.clone().unwrap(),
        );
        std::fs::copy(&b_path, &a_path).unwrap();
        let refused = |e: String| e.contains("recorded when it was built");
        let e = pipeline.compiled(&a.reference()).await.err().unwrap();
        assert!(refused(e.to_string()), "{e}");
        let e = again().err().unwrap();
        assert!(refused(e.to_string()), "{e}");
        assert!(pipeline.compiled(&b.reference()).await.is_ok());
    }

    #[test]
    fn build_keys_change_with_every_input() {
        let wat = Runtime::Wat;
        let file = Packaging::File;
        let base = build_key(wat, "v1", file, b"code", "h.f", "deps");
        for other in [
            build_key(Runtime::Wasm, "v1", file, b"code", "h.f", "deps"),
            build_key(wat, "v2", file, b"code", "h.f", "deps"),
            build_key(wat, "v1", file, b"code!", "h.f", "deps"),
            build_key(wat, "v1", file, b"code", "h.g", "deps"),
            build_key(wat, "v1", file, b"code", "h.f", ""),
            build_key(wat, "v1", file, b"cod", "eh.f", "deps"),
            build_key(wat, "v1", Packaging::Zip, b"code", "h.f", "deps"),
        ] {
            assert_ne!(base, other);
        }
        // What stored builds are named by, so that none is repeated after an upgrade.
        assert_eq!(
            base.as_str(),
            "sha256:f5c132c81f66b007f14485909732b990b69ef176b3dde1a33e896c3aff41eaf7"
        );
    }
}
