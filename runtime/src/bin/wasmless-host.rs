//! `wasmless-host`: the shared function host as a standalone process (one per node or Deployment
//! replica in a cluster).
//!
//! Its Kubernetes source (watching Functions and loading their artifacts) arrives with the
//! Kubernetes issue; until then it serves the listeners, health and metrics with no functions.
//! `wasmless up` is the way to run functions locally.

use anyhow::Context;
use clap::Parser;
use wasmless_runtime::{Host, HostConfig, server};

#[derive(Parser)]
#[command(
    name = "wasmless-host",
    version,
    about = "The shared wasmless function host"
)]
struct Args {
    /// Address for function traffic.
    #[arg(long, env = "WASMLESS_LISTEN", default_value = "0.0.0.0:8080")]
    listen: String,
    /// Address for health, readiness and metrics.
    #[arg(long, env = "WASMLESS_ADMIN", default_value = "0.0.0.0:9090")]
    admin: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wasmless_runtime::init_tracing();
    let args = Args::parse();
    let host = Host::new(HostConfig::default()).context("cannot start the WebAssembly host")?;
    let listeners = server::Listeners::bind(&args.listen, &args.admin).await?;
    let (functions, admin) = listeners.addresses()?;
    tracing::info!(%functions, %admin, "serving; no function source is configured in this build");
    host.set_ready();
    listeners.serve(host, server::shutdown_signal()).await?;
    Ok(())
}
