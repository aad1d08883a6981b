//! `wasmless up`: the all-in-one local mode. A directory of Function manifests goes through the
//! controller's driver (builds in the background, a few at once) into the runtime's host, each
//! function served as soon as its own build is done, and reloads when files change. Builds run in a
//! `wasmless-builder` child process (loopback, random port and token), sandboxed as in a cluster.
//! A broken file, an invalid manifest or a failed build is logged, shown in `/status`, and the
//! last good version keeps serving. A `url` source is a file inside its manifest's directory.
//! `wasmless function … --local` deploys more functions through the admin API ([`api`]).
//! HTTPTriggers and CronJobTriggers in the same files are served too ([`triggers`]).

mod api;
mod local_only;
mod triggers;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use wasmless_api::digest::Sha256Digest;
use wasmless_api::function::{Phase, SourceStatus};
use wasmless_api::validate::{self, Origin};
use wasmless_api::{FunctionKey, FunctionManifest};
use wasmless_build::driver::{self, Driver, OriginBuf, Outcome, Waiter};
use wasmless_build::pipeline::compile_cache_dir;
use wasmless_build::{DirStore, Pipeline, manifest};
use wasmless_builder::Client;
use wasmless_builder::local::LocalBuilder;
use wasmless_runtime::artifacts::ArtifactSource;
use wasmless_runtime::{FunctionDef, Host, HostArgs, server};

/// The longest a build may take here, waiting for the builder included (its own timeout,
/// `WASMLESS_BUILD_TIMEOUT`, stops the build before).
const BUILD_WAIT: Duration = Duration::from_secs(3600);

#[derive(clap::Args)]
#[command(after_help = after_help())]
pub struct UpArgs {
    /// Directory of Function manifests (*.yaml, *.yml; several documents per file).
    #[arg(long, default_value = "functions")]
    dir: PathBuf,
    /// Address for function traffic.
    #[arg(long, default_value_t = format!("127.0.0.1:{}", wasmless_api::cluster::FUNCTION_PORT))]
    listen: String,
    /// Address for health, readiness, metrics, status and logs.
    #[arg(long, default_value_t = format!("127.0.0.1:{}", wasmless_api::cluster::ADMIN_PORT))]
    admin: String,
    /// Artifact store directory [default: $XDG_CACHE_HOME/wasmless or ~/.cache/wasmless].
    #[arg(long, env = "WASMLESS_STORE")]
    store: Option<PathBuf>,
    /// Cranelift's incremental compile cache [default: compile-cache in the user's wasmless
    /// cache, whatever the store: the machine's, like its toolchains].
    #[arg(long, env = "WASMLESS_COMPILE_CACHE")]
    compile_cache: Option<PathBuf>,
    /// The wasmless-builder to run [default: the one beside this binary, else on PATH].
    #[arg(long, env = "WASMLESS_BUILDER_BIN")]
    builder_bin: Option<PathBuf>,
    /// Builder flags passed to the wasmless-builder child, e.g. `--build-timeout 120`,
    /// `--build-memory 2Gi`, `--build-cpu 300` (see `wasmless-builder --help`); repeatable.
    #[arg(long = "builder-arg", allow_hyphen_values = true)]
    builder_args: Vec<String>,
    /// Builds at once; more wait for a slot [default: the cores available].
    #[arg(long)]
    max_builds: Option<usize>,
    /// The NATS server the directory's NATSTriggers subscribe on, such as
    /// nats://127.0.0.1:4222 [default: none, NATSTriggers are logged and skipped].
    #[arg(long, env = "WASMLESS_NATS_URL")]
    nats_url: Option<String>,
    #[command(flatten)]
    host: HostArgs,
}

fn after_help() -> String {
    format!(
        "{}\n\nBuilds run in a sandboxed wasmless-builder child process (beside this binary, on \
         PATH, or $WASMLESS_BUILDER_BIN); set its limits with --builder-arg=--build-timeout=120 \
         and the like, or its environment (WASMLESS_BUILD_TIMEOUT…; wasmless-builder --help).",
        wasmless_runtime::LOGGING_HELP
    )
}

/// What wakes the loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// Something under the functions directory changed.
    Files,
    /// A manifest was deployed or deleted through the admin API.
    Api,
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let result = runtime.block_on(serve(args));
    // A build may still be precompiling on a blocking thread: not worth waiting for.
    runtime.shutdown_timeout(Duration::from_millis(500));
    result
}

async fn serve(args: UpArgs) -> anyhow::Result<()> {
    if !args.dir.is_dir() {
        bail!(
            "{} is not a directory: pass --dir with your Function manifests",
            args.dir.display()
        );
    }
    let store = args
        .store
        .clone()
        .unwrap_or_else(wasmless_runtime::files::user_cache);
    local_only::check_bind(&args.admin)?;
    let mut config = args.host.host_config();
    config.path_routing = true;
    // Compiled code depends on the engine, not the store: one cache per machine, as the
    // toolchains, so a new store's first Python or Node.js function finds the interpreter that
    // an earlier build compiled (most of its machine code).
    config.engine.compile_cache = Some(
        args.compile_cache
            .clone()
            .unwrap_or_else(|| compile_cache_dir(&wasmless_runtime::files::user_cache())),
    );
    let host = Host::new(config).context("cannot start the WebAssembly host")?;
    // Lives as long as this function: dropping it stops the builder.
    let builder = LocalBuilder::spawn(args.builder_bin.as_deref(), &args.builder_args)
        .context("cannot start the builder")?;
    let client = Client::new(&builder.url, &builder.token, BUILD_WAIT)?;
    let pipeline = Arc::new(Pipeline::new(
        host.engine().clone(),
        Arc::new(DirStore::new(&store)),
        Arc::new(client),
    ));
    let driver = Driver::new(
        pipeline,
        driver::Settings {
            max_builds: args.max_builds.unwrap_or_else(driver::default_max_builds),
            ..driver::Settings::default()
        },
    );

    let listeners = server::Listeners::bind(&args.listen, &args.admin).await?;
    listeners.announce("wasmless up")?;
    let (functions_addr, _) = listeners.addresses()?;
    // File changes and API deploys both wake the loader.
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let deployed = api::Deployed::new(host.clone(), events_tx.clone(), functions_addr);
    let stop = server::stop_on_signal();
    let admin_app = server::admin_app(host.clone(), None)
        .merge(api::router(deployed.clone()))
        .layer(axum::middleware::from_fn(local_only::guard));
    let serving = tokio::spawn(listeners.serve(host.clone(), admin_app, stop.clone()));

    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reads are not changes: the loader's own reads of the directory (inotify's open and
        // close) woke it again, a sync every 150 ms forever.
        if event.is_ok_and(|e| e.kind.is_access()) {
            return;
        }
        let _ = events_tx.send(Change::Files);
    })
    .context("cannot watch the functions directory")?;
    watcher
        .watch(&args.dir, RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", args.dir.display()))?;

    // The stop signal also interrupts a sync (builds can be long).
    let shutdown = stop.cancelled();
    tokio::pin!(shutdown);
    // Finished builds wake the loader for their function.
    let (wake, mut woken) = mpsc::unbounded_channel();
    let nats = match &args.nats_url {
        Some(url) => Some(
            wasmless_build::triggers::subscription::options("wasmless-up")
                .connect(url.as_str())
                .await
                .with_context(|| format!("--nats-url: cannot connect to NATS at {url}"))?,
        ),
        None => None,
    };
    let triggers = triggers::Triggers::new(host.clone(), functions_addr, nats);
    let mut loader = DirLoader::new(
        host.clone(),
        driver,
        args.dir.clone(),
        deployed,
        wake,
        triggers,
    );
    let mut stopping = tokio::select! {
        _ = &mut shutdown => true,
        _ = loader.sync() => false,
    };
    let mut ready = false;
    while !stopping {
        // Ready once every function has had its first build, built or not.
        if !ready && loader.settled() {
            ready = true;
            host.set_ready();
            tracing::info!(dir = %args.dir.display(), store = %store.display(), functions = host.registry().len(), "ready");
        }
        stopping = tokio::select! {
            _ = &mut shutdown => true,
            key = woken.recv() => match key {
                None => true,
                Some(key) => {
                    tokio::select! {
                        _ = &mut shutdown => true,
                        _ = loader.woken(&key) => false,
                    }
                }
            },
            event = events.recv() => match event {
                None => true,
                Some(change) => {
                    // Editors write a file in several steps: wait for a quiet moment, then sync
                    // once. An API deploy is one complete step: synced at once.
                    if change == Change::Files {
                        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(150), events.recv()).await {}
                    }
                    tokio::select! {
                        _ = &mut shutdown => true,
                        _ = loader.sync() => false,
                    }
                }
            },
        };
    }
    tracing::info!("shutting down");
    stop.cancel();
    serving.await.context("server task")?.context("server")?;
    Ok(())
}

/// Keeps the host in step with a directory of manifests.
struct DirLoader {
    host: Arc<Host>,
    driver: Arc<Driver>,
    dir: PathBuf,
    deployed: Arc<api::Deployed>,
    /// What was last tried for each function, built or not: unchanged ones are skipped. The
    /// source's digest is part of it, so a changed file behind `function-content-type: url`
    /// rebuilds too.
    attempted: HashMap<FunctionKey, (FunctionManifest, Option<String>)>,
    /// The functions each file held when it last parsed.
    file_keys: HashMap<PathBuf, Vec<FunctionKey>>,
    /// What each function should be now, and the file that says so (none: the API).
    desired: BTreeMap<FunctionKey, (FunctionManifest, Option<PathBuf>)>,
    /// Functions whose build runs; the driver tells `wake` when it ends.
    building: HashSet<FunctionKey>,
    wake: Waiter,
    /// The directory's HTTPTriggers and CronJobTriggers.
    triggers: triggers::Triggers,
}

/// Where a function stands after one step.
enum Step {
    Loaded(Sha256Digest),
    Building(Option<String>),
}

impl DirLoader {
    fn new(
        host: Arc<Host>,
        driver: Arc<Driver>,
        dir: PathBuf,
        deployed: Arc<api::Deployed>,
        wake: Waiter,
        triggers: triggers::Triggers,
    ) -> Self {
        Self {
            host,
            driver,
            dir,
            deployed,
            attempted: HashMap::new(),
            file_keys: HashMap::new(),
            desired: BTreeMap::new(),
            building: HashSet::new(),
            wake,
            triggers,
        }
    }

    /// No function waits for a build.
    fn settled(&self) -> bool {
        self.building.is_empty()
    }

    /// A build ended: load it, if it is still what the function should be.
    async fn woken(&mut self, key: &FunctionKey) {
        if self.building.contains(key) {
            self.apply(key).await;
        }
    }

    async fn sync(&mut self) {
        let mut desired: BTreeMap<FunctionKey, (FunctionManifest, PathBuf)> = BTreeMap::new();
        // Functions of files that no longer parse: left exactly as they are.
        let mut protected: HashSet<FunctionKey> = HashSet::new();
        let files = manifest_files(&self.dir);
        self.file_keys.retain(|f, _| files.contains(f));
        self.triggers.sync(&files).await;
        for file in files {
            let parsed = std::fs::read_to_string(&file)
                .map_err(|e| e.to_string())
                .and_then(|text| manifest::parse(&text).map_err(|e| e.to_string()));
            match parsed {
                Ok(manifests) => {
                    let keys = manifests.iter().map(FunctionManifest::key).collect();
                    self.file_keys.insert(file.clone(), keys);
                    for m in manifests {
                        let key = m.key();
                        if let Some((_, first)) = desired.get(&key) {
                            tracing::error!(function = %key, "defined in both {} and {}; keeping the first", first.display(), file.display());
                            continue;
                        }
                        desired.insert(key, (m, file.clone()));
                    }
                }
                Err(e) => {
                    tracing::error!(file = %file.display(), "invalid manifest, its functions keep serving their last good version: {e}");
                    protected.extend(self.file_keys.get(&file).into_iter().flatten().cloned());
                }
            }
        }

        self.deployed.set_files(desired.clone());
        let mut desired: BTreeMap<FunctionKey, (FunctionManifest, Option<PathBuf>)> = desired
            .into_iter()
            .map(|(k, (m, f))| (k, (m, Some(f))))
            .collect();
        for (key, m) in self.deployed.api_manifests() {
            match desired.get(&key) {
                Some((_, Some(file))) => {
                    tracing::error!(function = %key, "defined in {} and deployed through the API; serving the file's", file.display());
                }
                _ => {
                    desired.insert(key, (m, None));
                }
            }
        }

        let statuses = self.host.statuses();
        let mut changed = Vec::new();
        for (key, (m, file)) in &desired {
            let base = file.as_deref().and_then(Path::parent);
            let source = wasmless_build::source::decode(&m.spec, origin(base))
                .ok()
                .map(|code| Sha256Digest::of(&code).to_string());
            let fingerprint = (m.clone(), source);
            // A deleted and redeployed API function is Pending or has no status: build it again.
            let settled = statuses.get(key).is_some_and(|s| s.phase != Phase::Pending);
            if settled && self.attempted.get(key) == Some(&fingerprint) {
                continue;
            }
            self.attempted.insert(key.clone(), fingerprint);
            changed.push(key.clone());
        }

        let stale: Vec<FunctionKey> = self
            .attempted
            .keys()
            .filter(|k| !desired.contains_key(*k) && !protected.contains(*k))
            .cloned()
            .collect();
        for key in stale {
            self.attempted.remove(&key);
            self.building.remove(&key);
            self.host.unload(&key);
            self.host.set_status(&key, None);
        }
        self.desired = desired;
        // In file order: the driver's slots go first come, first served.
        for key in changed {
            self.apply(&key).await;
        }
    }

    /// Starts or finishes one function's build and loads it; on failure the serving revision
    /// (if any) stays.
    async fn apply(&mut self, key: &FunctionKey) {
        let Some((m, file)) = self.desired.get(key).cloned() else {
            self.building.remove(key);
            return;
        };
        let origin = file
            .as_deref()
            .map_or_else(|| "api".to_string(), |f| f.display().to_string());
        let base = file.as_deref().and_then(Path::parent);
        let serving = self.host.registry().get(key).map(|f| f.def.served());
        let status = |phase, message: String, serving: Option<Sha256Digest>| SourceStatus {
            phase,
            message,
            serving,
        };
        let step = self.step(&m, base).await;
        if matches!(step, Ok(Step::Building(_))) {
            self.building.insert(key.clone());
        } else {
            self.building.remove(key);
        }
        match step {
            Ok(Step::Building(note)) => {
                self.host.set_status(
                    key,
                    Some(status(Phase::Building, note.unwrap_or_default(), serving)),
                );
            }
            Ok(Step::Loaded(revision)) => {
                self.host.set_status(
                    key,
                    Some(status(Phase::Ready, String::new(), Some(revision))),
                );
            }
            Err(e) => {
                let message = format!("{e:#}");
                let keeps = match &serving {
                    Some(r) => format!("; {r} keeps serving"),
                    None => String::new(),
                };
                tracing::error!(function = %key, %origin, "not built{keeps}: {message}");
                self.host.set_status(
                    key,
                    Some(status(
                        Phase::Failed,
                        wasmless_build::status::trim(&message),
                        serving,
                    )),
                );
            }
        }
    }

    async fn step(&self, m: &FunctionManifest, base: Option<&Path>) -> anyhow::Result<Step> {
        validate::manifest(m, origin(base)).context("invalid spec")?;
        let max_memory = self.host.config().engine.max_memory_bytes;
        // This host's own limits, before spending time on a build.
        FunctionDef::check_manifest(m, max_memory)?;
        let from = base.map_or(OriginBuf::Inline, |b| OriginBuf::Dir(b.to_path_buf()));
        let outcome = self
            .driver
            .request(&m.key(), &m.spec, from, Some(self.wake.clone()))
            .await;
        let artifact = match outcome {
            Outcome::Building { note } => return Ok(Step::Building(note)),
            Outcome::Done { result, .. } => result.map_err(anyhow::Error::msg)?,
        };
        // From the store as a cluster's host loads from its cache (ArtifactSource): checked
        // against its digest each time, so the code may be dropped and loaded again.
        let (pipeline, reference) = (self.driver.pipeline(), artifact.reference());
        let (compiled, again) = pipeline.compiled(&reference).await?;
        let files = pipeline.files(&reference).await?;
        let def =
            FunctionDef::from_manifest(m, artifact.digest, max_memory)?.with_files(artifact.files);
        self.host
            .load_with(def, &compiled, again, files.as_deref())?;
        Ok(Step::Loaded(reference.revision()))
    }
}

/// A file's manifests may name files beside it; the API's have no directory.
fn origin(manifest_dir: Option<&Path>) -> Origin<'_> {
    manifest_dir.map_or(Origin::Inline, Origin::Dir)
}

/// Every `*.yaml` / `*.yml` under `dir`, skipping hidden files and directories.
fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if hidden {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    // Shallow files first: the quick top-level examples serve before the source runtimes in
    // subdirectories have built.
    out.sort_by_key(|p| (p.components().count(), p.clone()));
    out
}
