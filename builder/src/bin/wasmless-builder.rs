//! `wasmless-builder`: builds Function sources into WebAssembly for the controller, the
//! Metacontroller hook and `wasmless up`, over authenticated HTTP; each build in a confined
//! child process (see the crate's `sandbox`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use wasmless_api::limits::parse_quantity;
use wasmless_builder::local::ANNOUNCE;
use wasmless_builder::sandbox::{self, Config, Limits, Sandbox};
use wasmless_builder::server::{self, Server};
use wasmless_runtime::token::Token;

#[derive(Parser)]
#[command(name = "wasmless-builder", version, about = "Builds wasmless Functions in a sandbox", after_help = wasmless_runtime::LOGGING_HELP)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Args,
}

#[derive(Subcommand)]
enum Command {
    /// One build, confined: how the server runs each build (a job on stdin). Not for people.
    #[command(hide = true)]
    Sandboxed,
}

#[derive(clap::Args)]
struct Args {
    /// Address of the build API.
    #[arg(long, env = "WASMLESS_BUILDER_LISTEN", default_value = "0.0.0.0:8091")]
    listen: String,
    /// File holding the bearer token callers must send (a mounted Secret).
    #[arg(long, env = "WASMLESS_BUILDER_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Cache whose toolchains/ builds read (read-only to them) [default: $XDG_CACHE_HOME/wasmless
    /// or ~/.cache/wasmless].
    #[arg(long, env = "WASMLESS_CACHE")]
    cache: Option<PathBuf>,
    /// Where each tenant's build caches live (tenants/<namespace>/) [default: <cache>/builds].
    #[arg(long, env = "WASMLESS_BUILDER_STATE")]
    state: Option<PathBuf>,
    /// Where each build's scratch directory is made [default: $TMPDIR or /tmp].
    #[arg(long, env = "WASMLESS_BUILDER_SCRATCH")]
    scratch: Option<PathBuf>,
    /// More directories builds may read (toolchains installed elsewhere); repeatable.
    #[arg(
        long = "read-only",
        env = "WASMLESS_BUILDER_READ_ONLY",
        value_delimiter = ','
    )]
    read_only: Vec<PathBuf>,
    /// Builds at once [default: the cores available].
    #[arg(long, env = "WASMLESS_BUILDER_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Wall-clock seconds a build may take before its processes are killed.
    #[arg(long, env = "WASMLESS_BUILD_TIMEOUT", default_value_t = Limits::default().timeout_seconds)]
    build_timeout: u64,
    /// CPU seconds each process of a build may use.
    #[arg(long, env = "WASMLESS_BUILD_CPU", default_value_t = Limits::default().cpu_seconds)]
    build_cpu: u64,
    /// Writable memory each process of a build may use (a quantity: 4Gi, 512Mi).
    #[arg(long, env = "WASMLESS_BUILD_MEMORY", default_value = "4Gi")]
    build_memory: String,
    /// The largest file a build may write.
    #[arg(long, env = "WASMLESS_BUILD_FILE_SIZE", default_value = "1Gi")]
    build_file_size: String,
    /// Processes the builder's user may run (RLIMIT_NPROC; root ignores it).
    #[arg(long, env = "WASMLESS_BUILD_PROCESSES", default_value_t = Limits::default().processes)]
    build_processes: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Sandboxed) = cli.command {
        std::process::exit(sandbox::child_main());
    }
    wasmless_runtime::init_tracing();
    tokio::runtime::Runtime::new()?.block_on(run(cli.run))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let token = match (&args.token_file, std::env::var("WASMLESS_BUILDER_TOKEN")) {
        (Some(file), _) => Token::from_file(file)?,
        (None, Ok(token)) => Token::new(&token, "WASMLESS_BUILDER_TOKEN")?,
        (None, Err(_)) => bail!("no token: pass --token-file (or set WASMLESS_BUILDER_TOKEN)"),
    };
    // Not passed on: builds get a cleared environment anyway.
    // SAFETY: no other thread reads the environment yet (the runtime's workers do not).
    unsafe { std::env::remove_var("WASMLESS_BUILDER_TOKEN") };
    let cache = args
        .cache
        .clone()
        .unwrap_or_else(wasmless_runtime::files::user_cache);
    let quantity = |flag: &str, q: &str| {
        parse_quantity(q).with_context(|| format!("{flag}: {q:?} is not a quantity"))
    };
    let limits = Limits {
        cpu_seconds: args.build_cpu,
        memory_bytes: quantity("--build-memory", &args.build_memory)?,
        file_bytes: quantity("--build-file-size", &args.build_file_size)?,
        processes: args.build_processes,
        timeout_seconds: args.build_timeout,
    };
    let config = Config {
        state: args.state.clone().unwrap_or_else(|| cache.join("builds")),
        scratch: args.scratch.clone().unwrap_or_else(std::env::temp_dir),
        read_only: args.read_only.clone(),
        cache,
        limits,
    };
    tracing::info!(cache = %config.cache.display(), state = %config.state.display(), scratch = %config.scratch.display(), limits = ?config.limits, "builder");
    let concurrency = args.concurrency.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let sandbox = Arc::new(Sandbox::new(config));
    let server = Server::new(sandbox.clone(), token, concurrency);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    // `wasmless up` and tests read this line to learn the port.
    println!("{ANNOUNCE}http://{addr}");
    tracing::info!(%addr, concurrency, "serving builds");
    tokio::select! {
        r = axum::serve(listener, server::router(server)) => r?,
        () = wasmless_runtime::server::stop_on_signal().cancelled_owned() => tracing::info!("shutting down"),
    }
    // Builds in flight end with the builder, whatever they started.
    sandbox.kill_all();
    Ok(())
}
