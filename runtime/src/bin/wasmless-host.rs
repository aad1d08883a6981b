//! `wasmless-host`: the shared function host as a process of its own (the Deployment every
//! function's Service selects). With `--artifacts-url` it watches Functions through the
//! Kubernetes API (kubeconfig or in-cluster config) and serves every one whose status names an
//! artifact; without it, it serves no functions (use `wasmless up` locally).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use wasmless_runtime::watch::KubeSource;
use wasmless_runtime::{Host, HostArgs, server};

#[derive(Parser)]
#[command(
    name = "wasmless-host",
    version,
    about = "The shared wasmless function host",
    after_help = wasmless_runtime::LOGGING_HELP
)]
struct Args {
    /// Address for function traffic.
    #[arg(long, env = "WASMLESS_LISTEN", default_value = "0.0.0.0:8080")]
    listen: String,
    /// Address for health, readiness and metrics.
    #[arg(long, env = "WASMLESS_ADMIN", default_value = "0.0.0.0:9090")]
    admin: String,
    /// The controller's artifact server, e.g. http://wasmless-controller.wasmless-system:8090.
    /// Enables the Kubernetes source.
    #[arg(long, env = "WASMLESS_ARTIFACTS_URL")]
    artifacts_url: Option<String>,
    /// Where fetched artifacts are kept across restarts.
    #[arg(long, env = "WASMLESS_CACHE", default_value = "/var/cache/wasmless")]
    cache: PathBuf,
    #[command(flatten)]
    host: HostArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wasmless_runtime::init_tracing();
    let args = Args::parse();
    let host = Host::new(args.host.host_config()).context("cannot start the WebAssembly host")?;
    let listeners = server::Listeners::bind(&args.listen, &args.admin).await?;
    listeners.announce("wasmless-host")?;
    let (functions, admin) = listeners.addresses()?;
    match args.artifacts_url {
        Some(url) => {
            let client = kube::Client::try_default()
                .await
                .context("no Kubernetes API reachable: set KUBECONFIG or run in a cluster")?;
            tracing::info!(%functions, %admin, artifacts = %url, cache = %args.cache.display(), "serving Functions from Kubernetes");
            tokio::spawn(KubeSource::new(client, host.clone(), url, args.cache).run());
        }
        None => {
            tracing::info!(%functions, %admin, "serving; no function source (pass --artifacts-url)");
            host.set_ready();
        }
    }
    listeners.serve(host, server::shutdown_signal()).await?;
    Ok(())
}
