//! `wasmless-controller`: turns Function manifests into artifacts.
//!
//! - no subcommand: run, `--mode native` (the default: a kube-runtime controller with leader
//!   election) or `--mode metacontroller` (the sync/finalize webhook; no API access of its own).
//!   Both serve the artifact store that hosts fetch from on `--listen` (with `--token-file`);
//!   the hooks listen apart, on `--hook-listen` (with `--hook-token-file`).
//! - `crd [KIND]`: print the Function's CRD, or a trigger kind's. `build -f FILE`: build manifests into a store (with a
//!   `wasmless-builder` child process, as `wasmless up` does).
//!
//! Builds never run here: they go to `wasmless-builder` (`--builder-url`, `--builder-token-file`).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use wasmless_api::validate::{self, Origin};
use wasmless_build::driver::{self, Driver};
use wasmless_build::{DirStore, Pipeline, artifacts, manifest};
use wasmless_controller::children::ChildConfig;
use wasmless_controller::{eviction, leader, metacontroller, reconcile, triggers};
use wasmless_runtime::token::{self, Token};
use wasmless_runtime::{EngineConfig, server};

#[derive(Parser)]
#[command(
    name = "wasmless-controller",
    version,
    about = "Builds and reconciles wasmless Functions",
    after_help = wasmless_runtime::LOGGING_HELP
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Print a CustomResourceDefinition (YAML): the Function's, or a trigger kind's.
    Crd {
        #[arg(value_enum, default_value = "function")]
        kind: CrdKind,
    },
    /// Build every Function in a manifest file into the artifact store.
    Build {
        /// Manifest file (YAML, several documents allowed).
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// Artifact store directory.
        #[arg(long, env = "WASMLESS_STORE", default_value = "artifacts")]
        store: PathBuf,
        /// The wasmless-builder to run [default: the one beside this binary, else on PATH].
        #[arg(long, env = "WASMLESS_BUILDER_BIN")]
        builder_bin: Option<PathBuf>,
    },
}

/// The kinds whose CRD `crd` prints, each a file of the chart's `crds/`.
#[derive(Clone, Copy, ValueEnum)]
enum CrdKind {
    Function,
    Httptrigger,
    Cronjobtrigger,
    Natstrigger,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Watch Functions through the API and reconcile them (leader-elected).
    Native,
    /// Serve Metacontroller's sync and finalize hooks; Metacontroller makes every API call.
    Metacontroller,
}

#[derive(clap::Args)]
struct RunArgs {
    /// How Functions are reconciled.
    #[arg(long, value_enum, env = "WASMLESS_MODE", default_value = "native")]
    mode: Mode,
    /// Artifact store directory (a PersistentVolume in a cluster).
    #[arg(long, env = "WASMLESS_STORE", default_value = "artifacts")]
    store: PathBuf,
    /// The most the store keeps, a quantity (e.g. 8Gi; native mode): past it, the least
    /// recently used artifacts that no Function references (and not used in the last 10
    /// minutes) are removed, checked every 30 s. Unset: never evicted.
    #[arg(long, env = "WASMLESS_STORE_MAX_BYTES", value_parser = quantity)]
    store_max_bytes: Option<u64>,
    /// Address of the artifact server.
    #[arg(long, env = "WASMLESS_LISTEN", default_value = "0.0.0.0:8090")]
    listen: String,
    /// File holding the token (a mounted Secret) hosts send to fetch artifacts; the controller
    /// sends it to the hosts' admin port too.
    #[arg(long, env = "WASMLESS_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Address of Metacontroller's sync and finalize hooks (metacontroller mode), a port apart
    /// from the artifacts.
    #[arg(long, env = "WASMLESS_HOOK_LISTEN", default_value = "0.0.0.0:8092")]
    hook_listen: String,
    /// File holding the bearer token Metacontroller sends the hooks (its CompositeController's
    /// `webhook.authorization.secretRef` names the same Secret).
    #[arg(long, env = "WASMLESS_HOOK_TOKEN_FILE")]
    hook_token_file: Option<PathBuf>,
    /// This replica's name: in the Lease (with the process id) and in the Events it records.
    #[arg(long, env = "POD_NAME", default_value = "wasmless-controller")]
    pod_name: String,
    /// Namespace of the leader-election Lease (native mode).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Labels of the shared host pods (k=v,k=v): native mode makes each function's endpoints
    /// from the ready ones; metacontroller mode's Services select them.
    #[arg(long, env = "WASMLESS_HOST_SELECTOR", default_value = wasmless_api::cluster::DEFAULT_HOST_SELECTOR)]
    host_selector: String,
    /// Namespace of the host pods (native mode) [default: this pod's, POD_NAMESPACE, else the
    /// kubeconfig context's]; `*`: any namespace. Pods labelled like hosts elsewhere never
    /// receive functions' traffic, and a Role in that namespace grants the pod watch.
    #[arg(long, env = "WASMLESS_HOST_NAMESPACE")]
    host_namespace: Option<String>,
    /// The host pods' function port: a number or a container port's name.
    #[arg(long, env = "WASMLESS_HOST_PORT", default_value = "8080")]
    host_port: String,
    /// When a built Function turns Ready (native mode): `serving` once every ready host pod
    /// serves its artifact (the controller asks each host's admin port, the container port
    /// named `admin`, else 9090), `built` once it is stored.
    #[arg(
        long,
        value_enum,
        env = "WASMLESS_READY_WHEN",
        default_value = "serving"
    )]
    ready_when: reconcile::ReadyWhen,
    /// Metacontroller mode: handle only Functions labelled `wasmless.dev/controller:
    /// metacontroller`, leaving the rest to a native controller that runs beside the hook.
    /// Without it the hook handles every Function.
    #[arg(long, env = "WASMLESS_SHARE_WITH_NATIVE")]
    share_with_native: bool,
    /// The ingressClassName of HTTPTriggers' Ingresses when a trigger names no `gateway`
    /// (native mode) [default: none, the cluster's default class].
    #[arg(long, env = "WASMLESS_INGRESS_CLASS")]
    ingress_class: Option<String>,
    /// Where CronJobTriggers' and NATSTriggers' invocations go, with `Host:
    /// <name>.<namespace>` (native mode) [default: each function's Service,
    /// http://<name>.<namespace>.svc:8080].
    #[arg(long, env = "WASMLESS_FUNCTIONS_URL")]
    functions_url: Option<String>,
    /// The NATS server NATSTriggers subscribe on, such as nats://nats.nats:4222 (native
    /// mode) [default: none, NATSTriggers are not Ready].
    #[arg(long, env = "WASMLESS_NATS_URL")]
    nats_url: Option<String>,
    #[command(flatten)]
    builder: BuilderArgs,
}

/// Where builds go.
#[derive(clap::Args)]
struct BuilderArgs {
    /// URL of `wasmless-builder` (in a cluster, its Service).
    #[arg(long, env = "WASMLESS_BUILDER_URL")]
    builder_url: Option<String>,
    /// File holding the builder's bearer token (a mounted Secret).
    #[arg(long, env = "WASMLESS_BUILDER_TOKEN_FILE")]
    builder_token_file: Option<PathBuf>,
    /// How long to wait for one build, queueing at the builder included (seconds); then it is
    /// retried, as when the builder cannot be reached.
    #[arg(long, env = "WASMLESS_BUILDER_TIMEOUT", default_value_t = 1800)]
    builder_timeout: u64,
    /// Builds at once; more wait for a slot [default: the cores available].
    #[arg(long, env = "WASMLESS_MAX_BUILDS")]
    max_builds: Option<usize>,
}

impl BuilderArgs {
    fn driver(&self, pipeline: Arc<Pipeline>) -> Arc<Driver> {
        let settings = driver::Settings {
            max_builds: self.max_builds.unwrap_or_else(driver::default_max_builds),
            ..driver::Settings::default()
        };
        tracing::info!(max_builds = settings.max_builds, "builds");
        Driver::new(pipeline, settings)
    }

    /// The builder's client; inside a Tokio runtime.
    fn client(&self) -> anyhow::Result<Arc<wasmless_builder::Client>> {
        let (Some(url), Some(token_file)) = (&self.builder_url, &self.builder_token_file) else {
            anyhow::bail!(
                "no builder: pass --builder-url and --builder-token-file (builds never run in the controller)"
            );
        };
        let timeout = std::time::Duration::from_secs(self.builder_timeout);
        Ok(Arc::new(wasmless_builder::Client::with_token_file(
            url, token_file, timeout,
        )?))
    }
}

fn main() -> anyhow::Result<()> {
    wasmless_runtime::init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd { kind }) => {
            let file = match kind {
                CrdKind::Function => "functions.yaml",
                CrdKind::Httptrigger => "httptriggers.yaml",
                CrdKind::Cronjobtrigger => "cronjobtriggers.yaml",
                CrdKind::Natstrigger => "natstriggers.yaml",
            };
            let all = wasmless_controller::crd::all();
            let (_, text) = all
                .iter()
                .find(|(f, _)| *f == file)
                .context("no such CRD")?;
            print!("{text}");
            Ok(())
        }
        Some(Command::Build {
            file,
            store,
            builder_bin,
        }) => tokio::runtime::Runtime::new()?.block_on(build(&file, store, builder_bin.as_deref())),
        None => {
            let runtime = tokio::runtime::Runtime::new()?;
            let result = runtime.block_on(run(cli.run));
            // A build may still be precompiling on a blocking thread: not worth waiting for,
            // its input stays in the store (dropping the runtime would wait).
            runtime.shutdown_timeout(Duration::from_millis(500));
            result
        }
    }
}

async fn build(
    file: &std::path::Path,
    store: PathBuf,
    builder_bin: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let manifests = manifest::parse(&text).with_context(|| file.display().to_string())?;
    let local = wasmless_builder::local::LocalBuilder::spawn(builder_bin, &[])?;
    let client = wasmless_builder::Client::new(
        &local.url,
        &local.token,
        std::time::Duration::from_secs(3600),
    )?;
    let pipeline = Arc::new(Pipeline::new(
        compiling_engine(&store)?,
        Arc::new(DirStore::new(&store)),
        Arc::new(client),
    ));
    let origin = file.parent().map_or(Origin::Inline, Origin::Dir);
    for m in &manifests {
        validate::manifest(m, origin).with_context(|| format!("function {}", m.key()))?;
        let (pipeline, m2, dir) = (
            pipeline.clone(),
            m.clone(),
            file.parent().map(|p| p.to_path_buf()),
        );
        let artifact = tokio::task::spawn_blocking(move || {
            let origin = dir.as_deref().map_or(Origin::Inline, Origin::Dir);
            pipeline.build(&m2.key(), &m2.spec, origin)
        })
        .await?
        .with_context(|| format!("function {}", m.key()))?;
        println!(
            "{}",
            serde_json::json!({ "function": m.key().to_string(), "artifact": artifact })
        );
    }
    Ok(())
}

/// The hosts' engine configuration, with Cranelift's incremental cache kept next to the store.
fn compiling_engine(store: &std::path::Path) -> anyhow::Result<wasmtime::Engine> {
    Ok(EngineConfig {
        compile_cache: Some(wasmless_build::pipeline::compile_cache_dir(store)),
        ..EngineConfig::default()
    }
    .build()?)
}

fn children(args: &RunArgs) -> anyhow::Result<ChildConfig> {
    let host_port = match args.host_port.parse::<i32>() {
        Ok(n) => IntOrString::Int(n),
        Err(_) => IntOrString::String(args.host_port.clone()),
    };
    Ok(ChildConfig {
        host_port,
        ..host_selector(&args.host_selector)?
    })
}

fn host_selector(text: &str) -> anyhow::Result<ChildConfig> {
    let host_selector = text
        .split(',')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .with_context(|| format!("--host-selector: {kv:?} is not k=v"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(ChildConfig {
        host_selector,
        ..ChildConfig::default()
    })
}

/// `--host-namespace`, else the release's: the pod's own namespace, else the kubeconfig's.
fn host_namespace(flag: Option<&str>, client: &kube::Client) -> Option<String> {
    match flag.map(str::trim) {
        Some("*") => None,
        Some(ns) if !ns.is_empty() => Some(ns.to_string()),
        _ => Some(
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|ns| !ns.is_empty())
                .unwrap_or_else(|| client.default_namespace().to_string()),
        ),
    }
}

/// A required token file's token.
fn token(flag: &str, file: Option<&std::path::Path>) -> anyhow::Result<Token> {
    let file = file.with_context(|| {
        format!("{flag} is required: the chart mounts it from a Secret; outside a cluster, a file of 16 characters or more")
    })?;
    Ok(Token::from_file(file)?)
}

fn quantity(text: &str) -> Result<u64, String> {
    wasmless_api::limits::parse_quantity(text).map_err(|e| e.to_string())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.store_max_bytes.is_some() && args.mode != Mode::Native {
        anyhow::bail!(
            "--store-max-bytes needs --mode native: the hook cannot list Functions, so it cannot tell which artifacts are in use"
        );
    }
    let mut children = children(&args)?;
    let artifacts_token = token("--token-file", args.token_file.as_deref())?;
    children.host_token = Some(artifacts_token.clone());
    let store: artifacts::SharedStore = Arc::new(DirStore::new(&args.store));
    let pipeline = Arc::new(Pipeline::new(
        compiling_engine(&args.store)?,
        store.clone(),
        args.builder.client()?,
    ));
    let driver = args.builder.driver(pipeline);

    let stop = server::stop_on_signal();
    let stopped = || stop.clone().cancelled_owned();
    tokio::spawn(stopped().map(|()| exit_after(SHUTDOWN_GRACE)));

    let app = artifacts::router(store, artifacts_token);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(store = %args.store.display(), %addr, "serving artifacts");
    // Scripts and tests read these lines to learn the port.
    println!("wasmless-controller: artifacts on http://{addr}");
    let mut serving = vec![tokio::spawn(server::serve(listener, app, stopped()))];
    if args.mode == Mode::Metacontroller {
        let hook_token = token("--hook-token-file", args.hook_token_file.as_deref())?;
        let scope = if args.share_with_native {
            metacontroller::Scope::Labelled
        } else {
            metacontroller::Scope::All
        };
        let hooks = metacontroller::router(metacontroller::Hook::new(
            driver.clone(),
            children.clone(),
            scope,
        ))
        .layer(axum::middleware::from_fn_with_state(
            hook_token,
            token::require,
        ));
        let listener = tokio::net::TcpListener::bind(&args.hook_listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.hook_listen))?;
        let addr = listener.local_addr()?;
        println!("wasmless-controller: hooks on http://{addr}");
        serving.push(tokio::spawn(server::serve(listener, hooks, stopped())));
    }

    if args.mode == Mode::Native {
        let client = kube::Client::try_default()
            .await
            .context("no Kubernetes API reachable: set KUBECONFIG or run in a cluster")?;
        children.host_namespace = host_namespace(args.host_namespace.as_deref(), &client);
        if let Some(max) = args.store_max_bytes {
            tracing::info!(max, "store bounded");
            let (evicting, stop) = (
                eviction::run(client.clone(), args.store.clone(), max),
                stopped(),
            );
            serving.push(tokio::spawn(async move {
                tokio::select! {
                    () = evicting => {}
                    () = stop => {}
                }
                Ok(())
            }));
        }
        tracing::info!(
            host_namespace = children.host_namespace.as_deref().unwrap_or("*"),
            "host pods"
        );
        let ctx = Arc::new(reconcile::Context::new(
            client.clone(),
            driver,
            children,
            args.ready_when,
            args.pod_name.clone(),
        ));
        let triggers = Arc::new(triggers::Context::new(
            client.clone(),
            args.ingress_class.clone().filter(|c| !c.is_empty()),
            args.functions_url.clone().filter(|u| !u.is_empty()),
            args.nats_url.clone().filter(|u| !u.is_empty()),
        ));
        let identity = format!("{}-{}", args.pod_name, std::process::id());
        let term = leader::Term {
            ctx,
            triggers,
            lease_namespace: &args.lease_namespace,
            identity,
        };
        leader::reconcile_while_leading(client, term, &stop).await?;
    } else {
        stopped().await;
    }
    for task in serving {
        task.await??;
    }
    Ok(())
}

/// How long a SIGTERM may take before the process exits anyway: within Kubernetes' default
/// grace period (30 s), whatever it was doing.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Exits the process `after` from now unless it has exited by then: on a thread of its own, so
/// that a busy or stuck async runtime cannot hold it up.
fn exit_after(after: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        tracing::error!(
            "still running {} s after the stop signal: exiting",
            after.as_secs()
        );
        std::process::exit(1);
    });
}
