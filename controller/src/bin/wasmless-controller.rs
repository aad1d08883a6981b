//! `wasmless-controller`: turns Function manifests into artifacts.
//!
//! This build has the `build` command (manifest file → artifacts in a store, one JSON line per
//! function). The Kubernetes reconciler, the artifact server and the Metacontroller webhook arrive
//! with their issues.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wasmless_controller::{DirStore, Pipeline, manifest};
use wasmless_runtime::EngineConfig;

#[derive(Parser)]
#[command(
    name = "wasmless-controller",
    version,
    about = "Builds wasmless Functions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the Function CustomResourceDefinition (YAML).
    Crd,
    /// Reconcile Functions in the cluster (kubeconfig or in-cluster config) and serve artifacts.
    Run(RunArgs),
    /// Build every Function in a manifest file into the artifact store.
    Build {
        /// Manifest file (YAML, several documents allowed).
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// Artifact store directory.
        #[arg(long, env = "WASMLESS_STORE", default_value = "artifacts")]
        store: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Artifact store directory (a PersistentVolume in a cluster).
    #[arg(long, env = "WASMLESS_STORE", default_value = "artifacts")]
    store: PathBuf,
    /// Address of the artifact server hosts fetch from.
    #[arg(
        long,
        env = "WASMLESS_ARTIFACTS_LISTEN",
        default_value = "0.0.0.0:8090"
    )]
    listen: String,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Labels of the shared host pods, which each function's Service selects (k=v,k=v).
    #[arg(long, default_value = "app.kubernetes.io/name=wasmless-host")]
    host_selector: String,
}

fn main() -> anyhow::Result<()> {
    wasmless_runtime::init_tracing();
    match Cli::parse().command {
        Command::Run(args) => tokio::runtime::Runtime::new()?.block_on(run(args)),
        Command::Crd => {
            print!("{}", wasmless_controller::crd::yaml());
            Ok(())
        }
        Command::Build { file, store } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let manifests = manifest::parse(&text).with_context(|| file.display().to_string())?;
            let engine = EngineConfig::default().build()?;
            let pipeline = Pipeline::new(engine, std::sync::Arc::new(DirStore::new(store)));
            for m in &manifests {
                let artifact = pipeline
                    .build(&m.key(), &m.spec, file.parent())
                    .with_context(|| format!("function {}", m.key()))?;
                let line =
                    serde_json::json!({ "function": m.key().to_string(), "artifact": artifact });
                println!("{line}");
            }
            Ok(())
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    use std::sync::Arc;
    use wasmless_controller::children::ChildConfig;
    use wasmless_controller::{artifacts, leader, reconcile};
    use wasmless_runtime::server;

    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes API reachable: set KUBECONFIG or run in a cluster")?;
    let host_selector = args
        .host_selector
        .split(',')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .with_context(|| format!("--host-selector: {kv:?} is not k=v"))
        })
        .collect::<anyhow::Result<_>>()?;
    let children = ChildConfig {
        host_selector,
        ..ChildConfig::default()
    };
    let engine = EngineConfig::default().build()?;
    let store: artifacts::SharedStore = Arc::new(DirStore::new(&args.store));
    let pipeline = Arc::new(Pipeline::new(engine, store.clone()));

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(store = %args.store.display(), "serving artifacts");
    // Scripts and tests read this line to learn the port.
    println!(
        "wasmless-controller: artifacts on http://{}",
        listener.local_addr()?
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_flag = stop_rx.clone();
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let artifact_server =
        tokio::spawn(server::serve(listener, artifacts::router(store), stopped()));
    tokio::spawn(async move {
        server::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });

    let identity = format!(
        "{}-{}",
        std::env::var("POD_NAME").unwrap_or_else(|_| "wasmless-controller".into()),
        std::process::id()
    );
    let mut leadership =
        leader::Leadership::elect(client.clone(), &args.lease_namespace, identity.clone()).await?;
    let ctx = Arc::new(reconcile::Context::new(client, pipeline, children));
    let shutdown = stopped();
    tokio::pin!(shutdown);
    loop {
        tracing::info!(%identity, "waiting to lead");
        tokio::select! {
            _ = &mut shutdown => break,
            r = leadership.leading.wait_for(|l| *l) => { r.context("lease manager stopped")?; }
        }
        tracing::info!(%identity, "leading: reconciling Functions");
        let mut lost = leadership.leading.clone();
        let stop = stopped();
        reconcile::run(ctx.clone(), async move {
            tokio::select! {
                _ = stop => {},
                _ = lost.wait_for(|l| !*l) => tracing::warn!("lost the lease"),
            }
        })
        .await;
        if *stop_flag.borrow() {
            break;
        }
    }
    leadership.release().await;
    artifact_server.await??;
    Ok(())
}
