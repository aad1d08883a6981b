//! The one wasmtime configuration. The host runs artifacts with it and the controller precompiles
//! with it, so a precompiled artifact always matches the engine that loads it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use thiserror::Error;

use crate::compile_cache::DirCacheStore;
use wasmless_api::digest::Sha256Digest;
use wasmtime::component::Component;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, Module, PoolingAllocationConfig,
    Precompiled,
};

/// Everything that shapes the engine, in one place.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Largest linear memory any instance may have; per-function caps sit below it.
    pub max_memory_bytes: u64,
    /// Concurrent core instances across all functions (a Python component holds ~75).
    pub total_core_instances: u32,
    pub total_component_instances: u32,
    pub total_memories: u32,
    pub total_tables: u32,
    /// Concurrent async stacks: one per request in flight.
    pub total_stacks: u32,
    /// Bytes of each pooled memory/table slot kept mapped between instances. Returning pages to
    /// the OS after every request cost 22% of CPU here (TLB-shootdown IPIs): see BENCHMARKS.md.
    pub keep_resident_bytes: usize,
    /// A module's initial memory mapped copy-on-write from an image (wasmtime's default), or
    /// copied into each new instance. Mapping shares a large image's untouched pages between
    /// instances (Python: 6.9 MiB anonymous per function, against 21.0 copied); copying
    /// avoids remapping a pool slot last used by another module, which many small functions
    /// spread over the slots do at each request (10,000 WAT functions: p50 4.03 ms mapped,
    /// 1.65 ms copied): BENCHMARKS.md.
    pub memory_init_cow: bool,
    /// How often running instances reach a yield point, which is what lets timeouts fire.
    pub epoch_tick: Duration,
    /// Directory of Cranelift's incremental compilation cache, for engines that compile (the
    /// controller, `wasmless up`): functions shared between modules compile once.
    pub compile_cache: Option<PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_memory_bytes: wasmless_api::limits::MAX_MEMORY_BYTES,
            total_core_instances: 10_000,
            total_component_instances: 1_000,
            total_memories: 2_000,
            total_tables: 4_000,
            total_stacks: 1_000,
            keep_resident_bytes: 64 << 10,
            memory_init_cow: true,
            epoch_tick: Duration::from_millis(10),
            compile_cache: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("invalid engine configuration: {0:#}")]
    Config(wasmtime::Error),
    #[error("not a WebAssembly module or component: {0:#}")]
    Compile(wasmtime::Error),
    #[error("cannot load precompiled artifact {path}: {source:#}")]
    Load {
        path: String,
        source: wasmtime::Error,
    },
}

/// A compiled function, ready to be linked: a handle whose clones share the code, so that
/// [`SharedCode`] can tell whether any function still holds it.
#[derive(Clone)]
pub struct Compiled(Arc<Kind>);

/// What was compiled.
pub enum Kind {
    /// A core module: the WAGI (CGI over WASI p1) ABI.
    Module(Module),
    /// A component: the WASI HTTP ABI.
    Component(Component),
}

impl Compiled {
    pub fn kind(&self) -> &Kind {
        &self.0
    }
}

impl From<Module> for Compiled {
    fn from(module: Module) -> Self {
        Self(Arc::new(Kind::Module(module)))
    }
}

impl From<Component> for Compiled {
    fn from(component: Component) -> Self {
        Self(Arc::new(Kind::Component(component)))
    }
}

/// Stored code loaded once per engine however many functions run it (the interpreter every
/// Python function shares: its compiled code and memory image), by the digest of its
/// precompiled artifact, for as long as any function holds it.
#[derive(Default)]
pub struct SharedCode(Mutex<HashMap<Sha256Digest, Weak<Kind>>>);

impl SharedCode {
    /// Code from a precompiled artifact on disk (`wasmless up`'s store, a cluster host's
    /// cache), checked against `expected` now and each time it is loaded again after its code
    /// was dropped ([`crate::resident`]), unless a function holds it already: the one way a
    /// host loads stored code.
    pub fn load_stored(
        self: &Arc<Self>,
        engine: &Engine,
        path: &Path,
        expected: &Sha256Digest,
    ) -> Result<(Compiled, LoadAgain), EngineError> {
        let compiled = self.load(engine, path, expected)?;
        let (shared, engine, path, expected) = (
            self.clone(),
            engine.clone(),
            path.to_path_buf(),
            expected.clone(),
        );
        let again: LoadAgain = Arc::new(move || shared.load(&engine, &path, &expected));
        Ok((compiled, again))
    }

    fn load(
        &self,
        engine: &Engine,
        path: &Path,
        expected: &Sha256Digest,
    ) -> Result<Compiled, EngineError> {
        if let Some(kind) = self.lock().get(expected).and_then(Weak::upgrade) {
            return Ok(Compiled(kind));
        }
        // Two loads of one digest may race: both load, the map keeps one, the other is dropped
        // with its function (correct, only not shared).
        let compiled = load_precompiled_verified(engine, path, expected)?;
        let mut map = self.lock();
        map.retain(|_, held| held.strong_count() > 0);
        map.insert(expected.clone(), Arc::downgrade(&compiled.0));
        Ok(compiled)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Sha256Digest, Weak<Kind>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl EngineConfig {
    fn wasmtime_config(&self) -> Result<Config, EngineError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.max_memory_size(usize::try_from(self.max_memory_bytes).unwrap_or(usize::MAX))
            .total_core_instances(self.total_core_instances)
            .total_component_instances(self.total_component_instances)
            .total_memories(self.total_memories)
            .total_tables(self.total_tables)
            .total_stacks(self.total_stacks)
            .linear_memory_keep_resident(self.keep_resident_bytes)
            .table_keep_resident(self.keep_resident_bytes)
            // Resets only the pages an instance wrote, instead of the whole resident region.
            .pagemap_scan(Enabled::Auto);

        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_init_cow(self.memory_init_cow)
            .epoch_interruption(true)
            // p2 WASI HTTP does not need the component-model-async machinery; without it each
            // Store is cheaper to create and drop.
            .concurrency_support(false)
            // No .eh_frame for the system unwinder: wasmtime takes its own backtraces and
            // catches host panics before they reach wasm frames. Registered frames made each
            // module's drop a walk of every module's (libgcc's __deregister_frame_info_bases:
            // 87 % of the CPU while a host of 100,000 functions dropped and loaded code).
            .native_unwind_info(false);
        if let Some(dir) = &self.compile_cache {
            config
                .enable_incremental_compilation(Arc::new(DirCacheStore::new(dir)))
                .map_err(EngineError::Config)?;
        }
        Ok(config)
    }

    /// Builds the engine and starts the thread that advances its epoch.
    pub fn build(&self) -> Result<Engine, EngineError> {
        let engine = Engine::new(&self.wasmtime_config()?).map_err(EngineError::Config)?;
        spawn_epoch_ticker(&engine, self.epoch_tick);
        Ok(engine)
    }
}

/// Advances the engine's epoch every `tick` for as long as the engine lives.
fn spawn_epoch_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(tick);
            }
        })
        .map(drop)
        .unwrap_or_else(|e| {
            tracing::error!("cannot start the epoch thread, timeouts will not fire: {e}")
        });
}

/// Names an engine configuration: precompiled artifacts are only valid for engines with the
/// same key (same wasmtime version, same settings that affect code).
pub fn compatibility_key(engine: &Engine) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Loads a function's code again from its artifact (see [`crate::resident`]).
pub type LoadAgain = Arc<dyn Fn() -> Result<Compiled, EngineError> + Send + Sync>;

/// Compiles a module or component (binary or text) for `engine`.
pub fn compile(engine: &Engine, wasm: &[u8]) -> Result<Compiled, EngineError> {
    if wasmparser::Parser::is_component(wasm) {
        Component::new(engine, wasm).map(Compiled::from)
    } else {
        Module::new(engine, wasm).map(Compiled::from)
    }
    .map_err(EngineError::Compile)
}

/// Compiles `wasm` ahead of time into the bytes [`load_precompiled`] maps back in.
pub fn precompile(engine: &Engine, wasm: &[u8]) -> Result<Vec<u8>, EngineError> {
    if wasmparser::Parser::is_component(wasm) {
        engine.precompile_component(wasm)
    } else {
        engine.precompile_module(wasm)
    }
    .map_err(EngineError::Compile)
}

/// Artifacts below this size are read rather than mapped: wasmtime keeps a mapped file open as
/// long as its module lives, one descriptor per function, and a host of 20,000 small functions
/// ran out of descriptors. Large ones (an interpreter's) stay mapped, shared in the page cache.
const MAP_FROM_BYTES: u64 = 1 << 20;

/// Loads an artifact written by [`precompile`] (no compilation).
pub fn load_precompiled(engine: &Engine, path: &Path) -> Result<Compiled, EngineError> {
    load_precompiled_checked(engine, path, None)
}

/// [`load_precompiled`], the contents first checked against `expected` when there is one: a
/// small file is read once and checked in memory, a large one hashed in pieces, then mapped.
fn load_precompiled_checked(
    engine: &Engine,
    path: &Path,
    expected: Option<&Sha256Digest>,
) -> Result<Compiled, EngineError> {
    let err = |source| EngineError::Load {
        path: path.display().to_string(),
        source,
    };
    let check = |found: Sha256Digest| match expected {
        Some(expected) if found != *expected => Err(err(wasmtime::format_err!(
            "its contents are {found}, not the {expected} recorded when it was built"
        ))),
        _ => Ok(()),
    };
    let len = std::fs::metadata(path).map_err(|e| err(e.into()))?.len();
    if len < MAP_FROM_BYTES {
        let bytes = std::fs::read(path).map_err(|e| err(e.into()))?;
        if expected.is_some() {
            check(Sha256Digest::of(&bytes))?;
        }
        // SAFETY: as below; the bytes are the file's.
        return unsafe { deserialize(engine, &bytes) }.map_err(err);
    }
    if expected.is_some() {
        check(Sha256Digest::of_file(path).map_err(|e| err(e.into()))?)?;
    }
    let kind = Engine::detect_precompiled_file(path).map_err(err)?;
    // SAFETY: the artifact store only holds files this project's `precompile` wrote, named by the
    // digest of their contents, and wasmtime checks that the engine configuration matches.
    unsafe {
        match kind {
            Some(Precompiled::Module) => Module::deserialize_file(engine, path).map(Compiled::from),
            Some(Precompiled::Component) => {
                Component::deserialize_file(engine, path).map(Compiled::from)
            }
            None => Err(wasmtime::format_err!("not a precompiled wasmtime artifact")),
        }
    }
    .map_err(err)
}

/// [`load_precompiled`], once the file's contents are checked against `expected`, the digest
/// recorded when it was written: what a host runs is always what was built.
fn load_precompiled_verified(
    engine: &Engine,
    path: &Path,
    expected: &Sha256Digest,
) -> Result<Compiled, EngineError> {
    load_precompiled_checked(engine, path, Some(expected))
}

/// # Safety
/// `bytes` must be what [`precompile`] wrote (wasmtime runs the code in it).
unsafe fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Compiled> {
    // SAFETY: the caller's promise.
    unsafe {
        match Engine::detect_precompiled(bytes) {
            Some(Precompiled::Module) => Module::deserialize(engine, bytes).map(Compiled::from),
            Some(Precompiled::Component) => {
                Component::deserialize(engine, bytes).map(Compiled::from)
            }
            None => Err(wasmtime::format_err!("not a precompiled wasmtime artifact")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module exporting `f` returning 7, with `data` bytes of data (which land in the artifact).
    fn precompiled(engine: &Engine, data: usize) -> Vec<u8> {
        let wat = format!(
            r#"(module (memory 32) (data (i32.const 0) "{}") (func (export "f") (result i32) i32.const 7))"#,
            "a".repeat(data)
        );
        precompile(engine, &wat::parse_str(wat).expect("valid wat")).expect("compiles")
    }

    #[test]
    fn stored_code_is_loaded_once_while_a_function_holds_it() {
        let engine = EngineConfig::default().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("code.cwasm");
        let bytes = precompiled(&engine, 10);
        std::fs::write(&path, &bytes).unwrap();
        let digest = Sha256Digest::of(&bytes);
        let shared = Arc::new(SharedCode::default());
        let (a, again) = shared.load_stored(&engine, &path, &digest).unwrap();
        let (b, _) = shared.load_stored(&engine, &path, &digest).unwrap();
        assert!(Arc::ptr_eq(&a.0, &b.0), "one load for two functions");
        assert_eq!(answers(&engine, b), 7);
        drop(a);
        // Held by no function: loaded from the file again, and checked again.
        std::fs::write(&path, precompiled(&engine, 20)).unwrap();
        let e = again().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("not the"), "{e}");
    }

    fn answers(engine: &Engine, compiled: Compiled) -> i32 {
        let Kind::Module(module) = compiled.kind() else {
            panic!("a core module")
        };
        let mut store = wasmtime::Store::new(engine, ());
        store.set_epoch_deadline(u64::MAX / 2); // the engine interrupts at epochs
        let instance = wasmtime::Instance::new(&mut store, module, &[]).expect("instantiates");
        let f = instance
            .get_typed_func::<(), i32>(&mut store, "f")
            .expect("exports f");
        f.call(&mut store, ()).expect("runs")
    }

    #[test]
    fn small_artifacts_are_read_and_large_ones_mapped_and_both_run() {
        let engine = EngineConfig::default().build().expect("engine");
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, data) in [("small", 16), ("large", MAP_FROM_BYTES as usize)] {
            let bytes = precompiled(&engine, data);
            assert_eq!(bytes.len() as u64 >= MAP_FROM_BYTES, name == "large");
            let path = dir.path().join(name);
            std::fs::write(&path, &bytes).expect("write");
            let compiled = load_precompiled(&engine, &path).expect(name);
            assert_eq!(answers(&engine, compiled), 7, "{name}");
        }
        let path = dir.path().join("not-an-artifact");
        std::fs::write(&path, b"(module)").expect("write");
        let e = load_precompiled(&engine, &path).err().expect("refused");
        assert!(e.to_string().contains("not-an-artifact"), "{e}");
    }

    #[test]
    fn a_precompiled_file_that_changed_since_it_was_built_is_refused() {
        let engine = EngineConfig::default().build().expect("engine");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("artifact");
        let bytes = precompiled(&engine, 16);
        std::fs::write(&path, &bytes).expect("write");
        let recorded = Sha256Digest::of(&bytes);
        assert_eq!(Sha256Digest::of_file(&path).expect("reads"), recorded);
        let compiled = load_precompiled_verified(&engine, &path, &recorded).expect("loads");
        assert_eq!(answers(&engine, compiled), 7);

        let other = precompiled(&engine, 17);
        std::fs::write(&path, &other).expect("write");
        let e = load_precompiled_verified(&engine, &path, &recorded)
            .err()
            .expect("refused");
        assert!(e.to_string().contains("not the sha256:"), "{e}");
    }
}
