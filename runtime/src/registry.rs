//! The functions a host serves, by key. Readers take a lock-free snapshot; a replace swaps one
//! entry atomically, so requests already running finish on the old revision and new ones see the
//! new revision, with nothing failing in between. Snapshots are persistent maps: a change copies
//! O(log N) of the map, not all of it (a full copy per load made loading N functions O(N²)).

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::limits::{LimitError, Limits};
use crate::logs::LogBuffer;
use crate::metrics::FunctionMetrics;
use crate::outbound::OutboundPolicy;
use crate::resident::Code;
use crate::values::{self, Known, MountDirs, Resolved};
use wasmless_api::admin::FunctionInfo;
use wasmless_api::digest::Sha256Digest;
use wasmless_api::files::FilesRef;
use wasmless_api::function::{FunctionKey, FunctionManifest, FunctionSpec, Settings};

/// What the host needs to know about a function besides its code.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionDef {
    pub key: FunctionKey,
    /// Names its code: `sha256:<hex>` of the wasm (which other functions may share: see
    /// [`FunctionDef::served`]).
    pub revision: Sha256Digest,
    pub runtime: String,
    pub handler: String,
    pub limits: Limits,
    /// The environment and mounted files, Secret and ConfigMap values resolved.
    pub values: Resolved,
    /// `allowedOutboundHosts`, as written.
    pub allowed_outbound_hosts: Vec<String>,
    /// Its own files, when its code is shared with other functions ([`wasmless_api::files`]).
    pub files: Option<FilesRef>,
}

impl FunctionDef {
    /// The definition a manifest asks for, with no Secrets or ConfigMaps to read (`wasmless
    /// up`); `max_memory` is the engine's per-instance maximum.
    pub fn from_manifest(
        manifest: &FunctionManifest,
        revision: Sha256Digest,
        max_memory: u64,
    ) -> Result<Self, LimitError> {
        let values = Self::local_values(manifest)?;
        Self::from_spec(manifest.key(), &manifest.spec, revision, max_memory, values)
    }

    /// What [`FunctionDef::from_manifest`] would refuse, known before anything is built.
    pub fn check_manifest(manifest: &FunctionManifest, max_memory: u64) -> Result<(), LimitError> {
        Self::local_values(manifest)?;
        Limits::from_spec(&manifest.spec, max_memory)?;
        Ok(())
    }

    /// A manifest's values with no Secrets or ConfigMaps to read them from.
    fn local_values(manifest: &FunctionManifest) -> Result<Resolved, LimitError> {
        let settings = Settings::of(&manifest.spec);
        Ok(values::resolve(
            &settings,
            manifest.namespace(),
            &Known::new(),
        )?)
    }

    /// The definition `spec` asks for, with its Secret and ConfigMap `values` resolved.
    pub fn from_spec(
        key: FunctionKey,
        spec: &FunctionSpec,
        revision: Sha256Digest,
        max_memory: u64,
        values: Resolved,
    ) -> Result<Self, LimitError> {
        Ok(Self {
            key,
            revision,
            runtime: spec.runtime.clone(),
            handler: spec.handler.clone(),
            limits: Limits::from_spec(spec, max_memory)?,
            values,
            allowed_outbound_hosts: spec
                .allowed_outbound_hosts
                .strings()
                .unwrap_or_default()
                .to_vec(),
            files: None,
        })
    }

    /// This definition with the files its artifact carries.
    pub fn with_files(self, files: Option<FilesRef>) -> Self {
        Self { files, ..self }
    }

    /// What it serves, as hosts report it: its code's digest, or with files of its own, a
    /// digest of both (`ArtifactRef::revision`).
    pub fn served(&self) -> Sha256Digest {
        wasmless_api::files::revision(&self.revision, self.files.as_ref())
    }

    /// The digests of what it loads from an artifact cache: its code, and its files.
    pub fn needs(&self) -> impl Iterator<Item = &Sha256Digest> {
        wasmless_api::files::digests(&self.revision, self.files.as_ref().map(|f| &f.digest))
    }

    /// The variables Kubeless set for every runtime, then the function's own (which win).
    pub fn environment(&self, port: u16) -> Vec<(String, String)> {
        let module = self.handler.split('.').next().unwrap_or_default();
        let mut env = vec![
            ("FUNC_HANDLER".to_string(), self.handler.clone()),
            ("MOD_NAME".to_string(), module.to_string()),
            (
                "FUNC_TIMEOUT".to_string(),
                self.limits.timeout.as_secs().to_string(),
            ),
            ("FUNC_RUNTIME".to_string(), self.runtime.clone()),
            (
                "FUNC_MEMORY_LIMIT".to_string(),
                self.limits.memory_bytes.to_string(),
            ),
            ("FUNC_PORT".to_string(), port.to_string()),
            ("FUNC_NAME".to_string(), self.key.name.clone()),
            ("FUNC_NAMESPACE".to_string(), self.key.namespace.clone()),
        ];
        env.extend(self.values.env.iter().cloned());
        env
    }
}

/// A function ready to serve: its definition, its pre-instantiated code (loaded, or dropped
/// until its next request: [`crate::resident`]), and the handles a request needs, all
/// resolved at load time.
pub struct LoadedFunction {
    pub def: FunctionDef,
    pub code: Code,
    pub env: Arc<[(String, String)]>,
    /// Its mounts written out, kept while any instance may read them.
    pub mounts: Arc<MountDirs>,
    pub metrics: FunctionMetrics,
    pub logs: Arc<LogBuffer>,
    /// What it may call (wasi:http), parsed from `allowed_outbound_hosts`.
    pub outbound: Arc<OutboundPolicy>,
}

impl LoadedFunction {
    pub fn info(&self) -> FunctionInfo {
        FunctionInfo {
            namespace: self.def.key.namespace.clone(),
            name: self.def.key.name.clone(),
            revision: self.def.served(),
            runtime: self.def.runtime.clone(),
            handler: self.def.handler.clone(),
            abi: self.code.abi(),
            timeout_seconds: self.def.limits.timeout.as_secs(),
            memory_bytes: self.def.limits.memory_bytes,
        }
    }
}

/// The functions by key, as a snapshot holds them.
pub type Map = imbl::HashMap<FunctionKey, Arc<LoadedFunction>>;

#[derive(Default)]
pub struct Registry {
    functions: ArcSwap<Map>,
}

impl Registry {
    pub fn get(&self, key: &FunctionKey) -> Option<Arc<LoadedFunction>> {
        self.functions.load().get(key).cloned()
    }

    /// Adds or replaces a function; returns the revision it replaced.
    pub fn insert(&self, function: Arc<LoadedFunction>) -> Option<Arc<LoadedFunction>> {
        let key = function.def.key.clone();
        let before = self
            .functions
            .rcu(|map| map.update(key.clone(), function.clone()));
        before.get(&key).cloned()
    }

    pub fn remove(&self, key: &FunctionKey) -> Option<Arc<LoadedFunction>> {
        let before = self.functions.rcu(|map| map.without(key));
        before.get(key).cloned()
    }

    pub fn len(&self) -> usize {
        self.functions.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every loaded function, in no order (a snapshot: cheap, whatever the count).
    pub fn snapshot(&self) -> Arc<Map> {
        self.functions.load_full()
    }

    /// Every loaded function, sorted by namespace and name.
    pub fn list(&self) -> Vec<Arc<LoadedFunction>> {
        let mut all: Vec<_> = self.functions.load().values().cloned().collect();
        all.sort_by(|a, b| a.def.key.cmp(&b.def.key));
        all
    }
}
