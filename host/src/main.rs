//! `wasmless-host`: the shared function host as a process of its own (the Deployment every
//! function's Service selects). With `--artifacts-url` it watches Functions through the
//! Kubernetes API (kubeconfig or in-cluster config) and serves every one whose status names an
//! artifact; without it, it serves no functions (use `wasmless up` locally).

#![forbid(unsafe_code)]

mod watch;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use wasmless_api::limits::parse_quantity;
use wasmless_runtime::artifacts::FetchConfig;
use wasmless_runtime::token::Token;
use wasmless_runtime::{Host, HostArgs, server};

use watch::KubeSource;

/// glibc's malloc took ~17 % of a hello's CPU, its arena lock contended between the worker
/// threads; mimalloc's per-thread heaps do not contend (BENCHMARKS.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "wasmless-host",
    version,
    about = "The shared wasmless function host",
    after_help = wasmless_runtime::LOGGING_HELP
)]
struct Args {
    /// Address for function traffic.
    #[arg(long, env = "WASMLESS_LISTEN", default_value_t = format!("0.0.0.0:{}", wasmless_api::cluster::FUNCTION_PORT))]
    listen: String,
    /// Address for health, readiness and metrics.
    #[arg(long, env = "WASMLESS_ADMIN", default_value_t = format!("0.0.0.0:{}", wasmless_api::cluster::ADMIN_PORT))]
    admin: String,
    /// The controller's artifact server, e.g. http://wasmless-controller.wasmless-system:8090.
    /// Enables the Kubernetes source.
    #[arg(long, env = "WASMLESS_ARTIFACTS_URL")]
    artifacts_url: Option<String>,
    /// Where fetched artifacts are kept across restarts.
    // Not `WASMLESS_CACHE`: that is the builder's toolchain cache, a different directory.
    #[arg(
        long = "artifact-cache",
        visible_alias = "cache",
        env = "WASMLESS_ARTIFACT_CACHE",
        default_value = "/var/cache/wasmless"
    )]
    cache: PathBuf,
    /// The most the cache keeps, a quantity: the least recently used artifacts no assigned
    /// function needs are removed past it.
    #[arg(
        long = "artifact-cache-max-bytes",
        visible_alias = "cache-max-bytes",
        env = "WASMLESS_ARTIFACT_CACHE_MAX_BYTES",
        default_value = "4Gi",
        value_parser = quantity
    )]
    cache_max_bytes: u64,
    /// File holding the token (a mounted Secret) sent to the artifact server and required for
    /// the admin listener's data (/functions, /status, logs). Required with --artifacts-url.
    #[arg(long, env = "WASMLESS_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Artifact fetches at once.
    #[arg(long, env = "WASMLESS_FETCH_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    fetch_concurrency: u64,
    /// Milliseconds one artifact fetch may take; a slower one is retried.
    #[arg(long, env = "WASMLESS_FETCH_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    fetch_timeout_ms: u64,
    /// Route `/fn/<namespace>/<name>/` when the Host names no function (`wasmless function call`
    /// through the API server's proxy needs it). Off: with it, anything that forwards one
    /// function's traffic by Host (an ingress) reaches every function.
    #[arg(long, env = "WASMLESS_PATH_ROUTING")]
    path_routing: bool,
    #[command(flatten)]
    host: HostArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wasmless_runtime::init_tracing();
    let args = Args::parse();
    let token = args
        .token_file
        .as_deref()
        .map(Token::from_file)
        .transpose()?;
    let mut config = args.host.host_config();
    config.path_routing = args.path_routing;
    let host = Host::new(config).context("cannot start the WebAssembly host")?;
    let listeners = server::Listeners::bind(&args.listen, &args.admin).await?;
    listeners.announce("wasmless-host")?;
    let (functions, admin) = listeners.addresses()?;
    match args.artifacts_url {
        Some(url) => {
            if token.is_none() {
                bail!(
                    "--artifacts-url needs --token-file: the artifact server answers nothing without its token"
                );
            }
            let client = kube::Client::try_default()
                .await
                .context("no Kubernetes API reachable: set KUBECONFIG or run in a cluster")?;
            tracing::info!(%functions, %admin, artifacts = %url, cache = %args.cache.display(), "serving Functions from Kubernetes");
            let fetch = FetchConfig {
                url,
                token: token.clone(),
                timeout: Duration::from_millis(args.fetch_timeout_ms),
                cache_max_bytes: args.cache_max_bytes,
            };
            let concurrency = usize::try_from(args.fetch_concurrency).unwrap_or(1);
            // Hostnames and paths of HTTPTriggers, routed beside Service names.
            tokio::spawn(watch::triggers::run(client.clone(), host.clone()));
            let source = KubeSource::new(client, host.clone(), fetch, args.cache, concurrency);
            tokio::spawn(source.run());
        }
        None => {
            tracing::info!(%functions, %admin, "serving; no function source (pass --artifacts-url)");
            host.set_ready();
        }
    }
    let admin = server::admin_app(host.clone(), token);
    listeners
        .serve(host, admin, server::stop_on_signal())
        .await?;
    Ok(())
}

fn quantity(text: &str) -> Result<u64, String> {
    parse_quantity(text).map_err(|e| e.to_string())
}
