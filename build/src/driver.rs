//! The one control loop every entry point drives: the native reconciler, the Metacontroller
//! hook and `wasmless up`. From a Function's spec, its status and the artifact store it decides
//! whether anything needs building ([`Driver::next`]), and runs builds in the background
//! ([`Driver::request`]): at most `max_builds` at once, one per build key however many Functions
//! or reconciles ask for it, transient failures (the builder unreachable, its 5xx, a timeout
//! talking to it) retried with exponential backoff, compile errors not. Asking never waits for a
//! build: the answer is `Building` until it ends, and then each asker's [`Waiter`] is told (a
//! channel it reads; the reconciler feeds it to kube-runtime's `reconcile_on`).
//!
//! A build's time limit is the builder client's (`--builder-timeout`), and the builder's own
//! (`--build-timeout`) stops the build itself before that.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};

use wasmless_api::FunctionKey;
use wasmless_api::digest::Sha256Digest;
use wasmless_api::function::{Function, FunctionSpec, Phase};
use wasmless_api::validate::Origin;
use wasmless_builder::BuildError;

use crate::backoff::Exponential;
use crate::pipeline::{Artifact, Pipeline, PipelineError};
use crate::status::Failure;

/// Finished builds remembered, so that every Function that asked gets the same answer; older
/// ones are found in the store (successes) or built again (failures).
const REMEMBERED: usize = 1024;

#[derive(Clone, Debug)]
pub struct Settings {
    /// Builds at once (each holds a slot while the builder builds and while it precompiles).
    pub max_builds: usize,
    /// The first and the longest wait before retrying a transient failure.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_builds: default_max_builds(),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }
}

/// The cores available to this process.
pub fn default_max_builds() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// [`Origin`], owned: a build outlives the request that started it.
#[derive(Clone, Debug)]
pub enum OriginBuf {
    Cluster,
    Dir(PathBuf),
    Inline,
}

impl OriginBuf {
    pub fn as_origin(&self) -> Origin<'_> {
        match self {
            OriginBuf::Cluster => Origin::Cluster,
            OriginBuf::Dir(d) => Origin::Dir(d),
            OriginBuf::Inline => Origin::Inline,
        }
    }
}

/// Told the Function's key when a build it asked for ends, or is to be retried.
pub type Waiter = mpsc::UnboundedSender<FunctionKey>;

#[derive(Clone, Debug)]
pub enum Outcome {
    /// Building, or waiting for a slot or a retry; `note` says why it takes longer, if it does.
    Building { note: Option<String> },
    /// Built (or found built), or failed with the reason (for a build, the compiler's message).
    Done {
        result: Result<Artifact, String>,
        elapsed: Duration,
    },
}

/// What a Function needs, as far as its status says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Its status settles its generation: nothing to build.
    Keep,
    /// Ask [`Driver::request`].
    Build,
}

enum Entry {
    Running {
        /// Every Function that asked meanwhile, and how to tell it (if it can be told).
        askers: HashMap<FunctionKey, Option<Waiter>>,
        note: Option<String>,
    },
    Done {
        result: Result<Artifact, String>,
        elapsed: Duration,
        /// Those that asked while it ran and have not had the answer since: built for them.
        /// Anyone else finds it built before (`cached`).
        askers: HashSet<FunctionKey>,
    },
}

#[derive(Default)]
struct Builds {
    by_key: HashMap<Sha256Digest, Entry>,
    /// Build keys of finished entries, oldest first.
    finished: VecDeque<Sha256Digest>,
}

pub struct Driver {
    pipeline: Arc<Pipeline>,
    slots: Semaphore,
    settings: Settings,
    builds: Mutex<Builds>,
}

impl Driver {
    pub fn new(pipeline: Arc<Pipeline>, settings: Settings) -> Arc<Self> {
        let settings = Settings {
            max_builds: settings.max_builds.max(1),
            ..settings
        };
        Arc::new(Self {
            pipeline,
            slots: Semaphore::new(settings.max_builds),
            settings,
            builds: Mutex::default(),
        })
    }

    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// Whether a Function's status already settles its generation: a failure of it (but a
    /// Service conflict, which ends when that Service goes), or an artifact still in the store.
    pub fn next(&self, function: &Function) -> Next {
        let Some(previous) = &function.status else {
            return Next::Build;
        };
        let current = previous.observed_generation == function.metadata.generation;
        let stored = || {
            previous
                .artifact
                .as_ref()
                .is_some_and(|a| self.pipeline.has(a))
        };
        match previous.phase {
            Phase::Failed if current && !Failure::ServiceConflict.is_why(previous) => Next::Keep,
            Phase::Ready | Phase::Loading if current && stored() => Next::Keep,
            _ => Next::Build,
        }
    }

    /// The outcome of building `spec`: found in the store, joined to a build already running or
    /// finished, or a build started now. Never waits for a build; `waiter` is told `key` when
    /// the build ends.
    pub async fn request(
        self: &Arc<Self>,
        key: &FunctionKey,
        spec: &FunctionSpec,
        origin: OriginBuf,
        waiter: Option<Waiter>,
    ) -> Outcome {
        // Errors that need no build (an invalid spec, a source that does not decode) at once.
        let build_key = match self.pipeline.build_key_of(spec, origin.as_origin()) {
            Ok(k) => k,
            Err(e) => return failed(e),
        };
        if let Some(outcome) = self.join(&build_key, key, &waiter) {
            return outcome;
        }
        // Built before (by an earlier run, or another replica sharing the store)?
        let (pipeline, looked_up, from) = (self.pipeline.clone(), spec.clone(), origin.clone());
        let found =
            tokio::task::spawn_blocking(move || pipeline.lookup(&looked_up, from.as_origin()))
                .await;
        match found {
            Ok(Ok(Some(artifact))) => {
                return Outcome::Done {
                    result: Ok(artifact),
                    elapsed: Duration::ZERO,
                };
            }
            Ok(Err(e)) => return failed(e),
            Ok(Ok(None)) | Err(_) => {}
        }
        let mut builds = self.builds.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(outcome) = join_locked(&mut builds, &build_key, key, &waiter) {
            return outcome;
        }
        builds.by_key.insert(
            build_key.clone(),
            Entry::Running {
                askers: HashMap::from([(key.clone(), waiter)]),
                note: None,
            },
        );
        drop(builds);
        let driver = self.clone();
        tokio::spawn(driver.run(build_key, key.clone(), spec.clone(), origin));
        Outcome::Building { note: None }
    }

    /// Builds holding a slot now.
    pub fn running(&self) -> usize {
        self.settings.max_builds - self.slots.available_permits()
    }

    fn join(
        &self,
        build_key: &Sha256Digest,
        key: &FunctionKey,
        waiter: &Option<Waiter>,
    ) -> Option<Outcome> {
        let mut builds = self.builds.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome = join_locked(&mut builds, build_key, key, waiter);
        // A finished build whose artifact has left the store since is built again.
        if let Some(Outcome::Done {
            result: Ok(artifact),
            ..
        }) = &outcome
            && !self.pipeline.has(&artifact.reference())
        {
            builds.by_key.remove(build_key);
            return None;
        }
        outcome
    }

    /// One build, from a slot to its end, retried while it fails for transient reasons.
    async fn run(
        self: Arc<Self>,
        build_key: Sha256Digest,
        key: FunctionKey,
        spec: FunctionSpec,
        origin: OriginBuf,
    ) {
        let started = Instant::now();
        let mut backoff = Exponential::new(self.settings.retry_min, self.settings.retry_max);
        let mut attempt = 1u32;
        let result = loop {
            if self.slots.available_permits() == 0 {
                let why = format!(
                    "waiting for a build slot ({} builds at once)",
                    self.settings.max_builds
                );
                self.note(&build_key, Some(why));
            }
            // Never closed, so acquiring fails only if that changes.
            let Ok(slot) = self.slots.acquire().await else {
                break Err("the controller is stopping".to_string());
            };
            self.note(&build_key, None);
            tracing::info!(function = %key, %build_key, attempt, running = self.running(), max = self.settings.max_builds, "build started");
            let (pipeline, spec, from, for_key) = (
                self.pipeline.clone(),
                spec.clone(),
                origin.clone(),
                key.clone(),
            );
            let result = tokio::task::spawn_blocking(move || {
                pipeline.build(&for_key, &spec, from.as_origin())
            })
            .await;
            // Logged while the slot is held, so the log shows how many builds ran at once.
            let ok = matches!(result, Ok(Ok(_)));
            tracing::info!(function = %key, %build_key, attempt, ok, elapsed_ms = started.elapsed().as_millis() as u64, "build ended");
            drop(slot);
            match result {
                Ok(Err(e)) if transient(&e) => {
                    let delay = backoff.next().unwrap_or(self.settings.retry_max);
                    tracing::warn!(function = %key, attempt, retry_in_ms = delay.as_millis() as u64, "build not done, retrying: {e:#}");
                    self.note(
                        &build_key,
                        Some(format!(
                            "attempt {attempt} failed ({e:#}); retrying in {} s",
                            delay.as_secs_f32().ceil()
                        )),
                    );
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                }
                Ok(result) => break result.map_err(|e| format!("{e:#}")),
                Err(e) => break Err(format!("build task: {e}")),
            }
        };
        self.finish(build_key, result, started.elapsed());
    }

    /// Records why a running build takes longer (or that it no longer does), and tells its
    /// waiters when that changes.
    fn note(&self, build_key: &Sha256Digest, why: Option<String>) {
        let mut builds = self.builds.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(Entry::Running { askers, note }) = builds.by_key.get_mut(build_key)
            && *note != why
        {
            *note = why;
            tell(askers);
        }
    }

    fn finish(&self, build_key: Sha256Digest, result: Result<Artifact, String>, elapsed: Duration) {
        let mut builds = self.builds.lock().unwrap_or_else(PoisonError::into_inner);
        let askers = match builds.by_key.remove(&build_key) {
            Some(Entry::Running { askers, .. }) => {
                tell(&askers);
                askers.into_keys().collect()
            }
            _ => HashSet::new(),
        };
        let done = Entry::Done {
            result,
            elapsed,
            askers,
        };
        builds.by_key.insert(build_key.clone(), done);
        builds.finished.push_back(build_key);
        while builds.finished.len() > REMEMBERED {
            if let Some(old) = builds.finished.pop_front() {
                builds.by_key.remove(&old);
            }
        }
    }
}

/// A build for `build_key` running (then `waiter` joins it) or finished.
fn join_locked(
    builds: &mut Builds,
    build_key: &Sha256Digest,
    key: &FunctionKey,
    waiter: &Option<Waiter>,
) -> Option<Outcome> {
    match builds.by_key.get_mut(build_key)? {
        Entry::Running { askers, note } => {
            let asker = askers.entry(key.clone()).or_default();
            if waiter.is_some() {
                asker.clone_from(waiter);
            }
            Some(Outcome::Building { note: note.clone() })
        }
        Entry::Done {
            result,
            elapsed,
            askers,
        } => {
            let mut result = result.clone();
            if !askers.remove(key)
                && let Ok(artifact) = &mut result
            {
                artifact.cached = true;
            }
            Some(Outcome::Done {
                result,
                elapsed: *elapsed,
            })
        }
    }
}

fn tell(askers: &HashMap<FunctionKey, Option<Waiter>>) {
    for (key, waiter) in askers {
        // A waiter gone (a leadership term over) reconciles everything when it comes back.
        if let Some(waiter) = waiter {
            let _ = waiter.send(key.clone());
        }
    }
}

fn failed(e: PipelineError) -> Outcome {
    Outcome::Done {
        result: Err(format!("{e:#}")),
        elapsed: Duration::ZERO,
    }
}

/// Failures of the builder rather than of the source: it could not be reached, answered 5xx,
/// or did not answer in time. Worth another try; anything else would fail the same way again.
fn transient(e: &PipelineError) -> bool {
    matches!(e, PipelineError::Build(BuildError::Unavailable(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::DirStore;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use wasmless_api::function::Runtime;
    use wasmless_builder::{Build, Source, builders};
    use wasmless_runtime::EngineConfig;

    /// Builds WAT in-process, slowly, counting what it does; the first `unavailable` calls fail
    /// as an unreachable builder would.
    #[derive(Default)]
    struct Counting {
        calls: AtomicUsize,
        running: AtomicUsize,
        most: AtomicUsize,
        unavailable: AtomicUsize,
    }

    struct Counted(Arc<Counting>);

    impl Build for Counted {
        fn build(&self, runtime: Runtime, _: &str, source: &Source) -> Result<Vec<u8>, BuildError> {
            let this = &self.0;
            this.calls.fetch_add(1, Ordering::SeqCst);
            if this
                .unavailable
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(BuildError::Unavailable("connection refused".into()));
            }
            let now = this.running.fetch_add(1, Ordering::SeqCst) + 1;
            this.most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(30));
            this.running.fetch_sub(1, Ordering::SeqCst);
            builders::builder(runtime).build(source)
        }
    }

    fn driver(dir: &std::path::Path, max_builds: usize) -> (Arc<Driver>, Arc<Counting>) {
        let counting = Arc::new(Counting::default());
        let engine = EngineConfig::default().build().unwrap();
        let pipeline = Pipeline::new(
            engine,
            Arc::new(DirStore::new(dir)),
            Arc::new(Counted(counting.clone())),
        );
        let settings = Settings {
            max_builds,
            retry_min: Duration::from_millis(10),
            retry_max: Duration::from_millis(40),
        };
        (Driver::new(Arc::new(pipeline), settings), counting)
    }

    fn spec(source: &str) -> FunctionSpec {
        serde_json::from_value(serde_json::json!({"runtime": "wat", "function": source})).unwrap()
    }

    fn wat(body: &str) -> String {
        format!(r#"(module (func (export "_start")) (data "{body}"))"#)
    }

    /// Asks until every key is done, waking on the waiter's channel.
    async fn settle(driver: &Arc<Driver>, asks: &[(FunctionKey, FunctionSpec)]) -> Vec<Outcome> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut outcomes = Vec::new();
        for (key, spec) in asks {
            outcomes.push(
                driver
                    .request(key, spec, OriginBuf::Cluster, Some(tx.clone()))
                    .await,
            );
        }
        while outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Building { .. }))
        {
            let woken = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .unwrap()
                .unwrap();
            let i = asks.iter().position(|(k, _)| *k == woken).unwrap();
            outcomes[i] = driver
                .request(&asks[i].0, &asks[i].1, OriginBuf::Cluster, Some(tx.clone()))
                .await;
        }
        outcomes
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn builds_are_bounded_and_each_build_key_builds_once() {
        let dir = tempfile::tempdir().unwrap();
        let (driver, counting) = driver(dir.path(), 2);
        // 12 Functions, 6 sources: each pair shares one build.
        let asks: Vec<_> = (0..12)
            .map(|i| {
                let key = FunctionKey::new("t", &format!("f{i}"));
                (key, spec(&wat(&format!("body {}", i % 6))))
            })
            .collect();
        let outcomes = settle(&driver, &asks).await;
        for o in &outcomes {
            assert!(matches!(o, Outcome::Done { result: Ok(_), .. }), "{o:?}");
        }
        assert_eq!(counting.calls.load(Ordering::SeqCst), 6);
        assert!(counting.most.load(Ordering::SeqCst) <= 2);
        assert_eq!(driver.running(), 0);
        // Built for those that asked while it ran; found built by anyone asking later (a new
        // generation with the same source), and nothing is built again.
        let digest = |o: &Outcome| match o {
            Outcome::Done { result: Ok(a), .. } => Some((a.digest.clone(), a.cached)),
            _ => None,
        };
        let first = digest(&outcomes[0]);
        assert!(first.as_ref().is_some_and(|(_, cached)| !cached));
        let again = settle(&driver, &asks[..1]).await;
        assert_eq!(
            digest(&again[0]),
            first.map(|(d, _)| (d, true)),
            "{again:?}"
        );
        assert_eq!(counting.calls.load(Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_compile_errors_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let (driver, counting) = driver(dir.path(), 1);
        counting.unavailable.store(2, Ordering::SeqCst);
        let key = FunctionKey::new("t", "f");
        let outcomes = settle(&driver, &[(key.clone(), spec(&wat("x")))]).await;
        assert!(
            matches!(&outcomes[0], Outcome::Done { result: Ok(_), .. }),
            "{outcomes:?}"
        );
        assert_eq!(counting.calls.load(Ordering::SeqCst), 3, "two retries");

        let broken = spec("(module (memory oops))");
        let outcomes = settle(&driver, &[(key.clone(), broken.clone())]).await;
        let Outcome::Done {
            result: Err(message),
            ..
        } = &outcomes[0]
        else {
            panic!("{outcomes:?}");
        };
        assert!(message.contains("expected"), "{message}");
        assert_eq!(counting.calls.load(Ordering::SeqCst), 4, "built once");
        // Asked again: the same failure, not built again.
        settle(&driver, &[(key, broken)]).await;
        assert_eq!(counting.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_status_that_settles_its_generation_needs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (driver, _) = driver(dir.path(), 1);
        let key = FunctionKey::new("t", "f");
        let source = spec(&wat("x"));
        let Outcome::Done {
            result: Ok(artifact),
            ..
        } = settle(&driver, &[(key, source.clone())]).await.remove(0)
        else {
            panic!("not built");
        };
        let mut function = Function::new("f", source);
        function.metadata.generation = Some(2);
        assert_eq!(driver.next(&function), Next::Build, "no status yet");
        let status = |phase, generation, artifact: Option<&Artifact>| {
            Some(wasmless_api::function::FunctionStatus {
                phase,
                observed_generation: Some(generation),
                artifact: artifact.map(Artifact::reference),
                ..Default::default()
            })
        };
        function.status = status(Phase::Ready, 2, Some(&artifact));
        assert_eq!(driver.next(&function), Next::Keep);
        function.status = status(Phase::Ready, 1, Some(&artifact));
        assert_eq!(driver.next(&function), Next::Build, "a new generation");
        function.status = status(Phase::Failed, 2, None);
        assert_eq!(driver.next(&function), Next::Keep, "failed for good");
        function.status = status(Phase::Building, 2, None);
        assert_eq!(driver.next(&function), Next::Build);
    }
}
