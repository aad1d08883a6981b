//! Loads what the function source assigns, one task per function: fetches run concurrently (at
//! most `concurrency` at once, each within the fetch timeout), a fetch that fails for now is
//! retried with a growing delay until it succeeds or the Function changes, and a newer revision
//! of a function replaces a load still under way. The host turns ready once the source has
//! listed every Function and each has settled: loaded, or refused for a reason retrying cannot
//! fix (logged, and at the admin `/status`). Until then `/readyz` says 503, so a new host joins
//! no endpoints before it serves what the others serve.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::artifacts::{ArtifactSource, Artifacts, LoadError};
use crate::host::Host;
use crate::limits::LimitError;
use crate::registry::FunctionDef;
use crate::values::{ResolveError, Resolved};
use wasmless_api::FunctionKey;
use wasmless_api::digest::Sha256Digest;
use wasmless_api::function::{ArtifactRef, FunctionSpec, Phase, SourceStatus};

/// The first retry's delay; each next one doubles, up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// While loads are under way, the cache is walked for eviction at most this often: a host
/// starting with 1,000 functions walked it after each load, which took most of its start.
const EVICT_INTERVAL: Duration = Duration::from_secs(5);

pub struct Loader {
    inner: Arc<Inner>,
}

struct Inner {
    host: Arc<Host>,
    artifacts: Artifacts,
    fetches: Semaphore,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    tasks: HashMap<FunctionKey, Task>,
    /// The source has listed every Function once.
    listed: bool,
    generation: u64,
    /// When the cache was last walked for eviction.
    evicted_at: Option<Instant>,
}

impl State {
    fn all_settled(&self) -> bool {
        self.tasks.values().all(|t| t.settled)
    }
}

struct Task {
    generation: u64,
    /// The digests of what it loads: its code and files (their cache files are kept).
    needs: Vec<Sha256Digest>,
    settled: bool,
    handle: Option<JoinHandle<()>>,
}

impl Loader {
    pub fn new(host: Arc<Host>, artifacts: Artifacts, concurrency: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                host,
                artifacts,
                fetches: Semaphore::new(concurrency.max(1)),
                state: Mutex::default(),
            }),
        }
    }

    /// Loads `artifact` with `spec` and its resolved `values` for `key` (in the background),
    /// replacing a load of `key` still under way.
    pub fn assign(
        &self,
        key: FunctionKey,
        spec: FunctionSpec,
        artifact: ArtifactRef,
        values: Result<Resolved, ResolveError>,
    ) {
        let inner = &self.inner;
        let max_memory = inner.host.config().engine.max_memory_bytes;
        let def = values.map_err(LimitError::from).and_then(|values| {
            FunctionDef::from_spec(
                key.clone(),
                &spec,
                artifact.digest.clone(),
                max_memory,
                values,
            )
            .map(|def| def.with_files(artifact.files.clone()))
        });
        let mut state = inner.lock();
        state.generation += 1;
        let generation = state.generation;
        let mut task = Task {
            generation,
            needs: artifact.digests().cloned().collect(),
            settled: false,
            handle: None,
        };
        let loaded = |def: &FunctionDef| {
            inner
                .host
                .registry()
                .get(&key)
                .is_some_and(|loaded| &loaded.def == def)
        };
        match def {
            // What serves is already this: nothing to fetch.
            Ok(def) if loaded(&def) => task.settled = true,
            Ok(def) => {
                let inner = inner.clone();
                let key = key.clone();
                task.handle = Some(tokio::spawn(async move {
                    inner
                        .load_until_settled(key, def, artifact, generation)
                        .await;
                }));
            }
            Err(e) => {
                let e = LoadError::from(e);
                tracing::error!(function = %key, "cannot load; the serving revision (if any) stays: {e}");
                inner.host.set_status(&key, Some(failed(&e)));
                task.settled = true;
            }
        }
        if let Some(old) = state.tasks.insert(key, task)
            && let Some(handle) = old.handle
        {
            handle.abort();
        }
        inner.check_ready(&state);
    }

    /// `key` waits for the Secrets and ConfigMaps it reads to be listed: nothing is loaded yet
    /// and it is not settled (a host is not ready without it); the next `assign` replaces this.
    pub fn waiting(&self, key: FunctionKey, artifact: &ArtifactRef) {
        let mut state = self.inner.lock();
        state.generation += 1;
        let task = Task {
            generation: state.generation,
            needs: artifact.digests().cloned().collect(),
            settled: false,
            handle: None,
        };
        if let Some(old) = state.tasks.insert(key, task)
            && let Some(handle) = old.handle
        {
            handle.abort();
        }
    }

    /// `key` is no longer assigned: stops its load and unloads it.
    pub fn remove(&self, key: &FunctionKey) {
        let mut state = self.inner.lock();
        if let Some(task) = state.tasks.remove(key)
            && let Some(handle) = task.handle
        {
            handle.abort();
        }
        self.inner.host.unload(key);
        self.inner.host.set_status(key, None);
        self.inner.check_ready(&state);
        drop(state);
        self.inner.evict();
    }

    /// The source has listed every Function: `seen` are the ones it has. Functions loaded
    /// before and not seen were deleted meanwhile.
    pub fn listed(&self, seen: &HashSet<FunctionKey>) {
        let gone: Vec<FunctionKey> = {
            let state = self.inner.lock();
            let loaded = self.inner.host.registry().list();
            let loaded = loaded.iter().map(|f| f.def.key.clone());
            state
                .tasks
                .keys()
                .cloned()
                .chain(loaded)
                .filter(|k| !seen.contains(k))
                .collect()
        };
        for key in &gone {
            self.remove(key);
        }
        let mut state = self.inner.lock();
        state.listed = true;
        self.inner.check_ready(&state);
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn load_until_settled(
        self: Arc<Self>,
        key: FunctionKey,
        def: FunctionDef,
        artifact: ArtifactRef,
        generation: u64,
    ) {
        let mut delay = FIRST_RETRY_DELAY;
        for attempt in 1u32.. {
            let result = self.load_once(&def, &artifact, generation).await;
            let status = match result {
                Ok(()) => SourceStatus {
                    phase: Phase::Ready,
                    message: String::new(),
                    serving: Some(artifact.revision()),
                },
                Err(e) if e.retryable() => {
                    tracing::warn!(function = %key, digest = %artifact.digest, attempt, retry_in_ms = delay.as_millis() as u64, "cannot load yet, retrying: {e}");
                    self.host.set_status(
                        &key,
                        Some(SourceStatus {
                            phase: Phase::Loading,
                            message: format!("attempt {attempt}: {e}"),
                            serving: self.serving(&key),
                        }),
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                    continue;
                }
                Err(e) => {
                    tracing::error!(function = %key, digest = %artifact.digest, "cannot load; the serving revision (if any) stays: {e}");
                    failed(&e)
                }
            };
            let mut state = self.lock();
            if let Some(task) = state.tasks.get_mut(&key)
                && task.generation == generation
            {
                task.settled = true;
                self.host.set_status(&key, Some(status));
                self.check_ready(&state);
            }
            break;
        }
        if self.evict_due() {
            self.evict();
        }
    }

    /// Whether a settled load should walk the cache: when every assigned load has settled, or
    /// [`EVICT_INTERVAL`] after the last walk.
    fn evict_due(&self) -> bool {
        let mut state = self.lock();
        let due = state.all_settled()
            || state
                .evicted_at
                .is_none_or(|at| at.elapsed() >= EVICT_INTERVAL);
        if due {
            state.evicted_at = Some(Instant::now());
        }
        due
    }

    /// One attempt: fetch (one of at most `concurrency` at once), compile if need be, and swap
    /// in, unless a newer assignment replaced this one meanwhile.
    async fn load_once(
        &self,
        def: &FunctionDef,
        artifact: &ArtifactRef,
        generation: u64,
    ) -> Result<(), LoadError> {
        let (compiled, again, files) = {
            let _permit = self.fetches.acquire().await;
            let (compiled, again) = self.artifacts.compiled(artifact).await?;
            (compiled, again, self.artifacts.files(artifact).await?)
        };
        let state = self.lock();
        if state
            .tasks
            .get(&def.key)
            .is_some_and(|t| t.generation == generation)
        {
            self.host
                .load_with(def.clone(), &compiled, again, files.as_deref())?;
        }
        Ok(())
    }

    fn serving(&self, key: &FunctionKey) -> Option<Sha256Digest> {
        self.host.registry().get(key).map(|f| f.def.served())
    }

    fn check_ready(&self, state: &State) {
        if state.listed && state.all_settled() && !self.host.is_ready() {
            tracing::info!(
                functions = state.tasks.len(),
                loaded = self.host.registry().len(),
                "every assigned function has loaded or failed: ready"
            );
            self.host.set_ready();
        }
    }

    /// Holds the cache to its bound, keeping what serves and what is being loaded.
    fn evict(&self) {
        let needed: HashSet<Sha256Digest> = {
            let state = self.lock();
            let serving = self.host.registry().list();
            let serving = serving
                .iter()
                .flat_map(|f| f.def.needs().cloned().collect::<Vec<_>>());
            state
                .tasks
                .values()
                .flat_map(|t| t.needs.iter().cloned())
                .chain(serving)
                .collect()
        };
        self.artifacts.evict(&needed);
    }
}

fn failed(e: &LoadError) -> SourceStatus {
    SourceStatus {
        phase: Phase::Failed,
        message: e.to_string(),
        serving: None,
    }
}
