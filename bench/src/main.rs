//! `wasmless-bench`: the pieces `scripts/bench.sh` measures.
//!
//! - `plain`: a plain axum "hello world" server, the baseline the host is compared with.
//! - `instantiate`: in-process cost of one request (fresh store + instance + call) through the
//!   host for both ABIs, and of a bare instantiation with and without keep-resident pool slots.
//! - `runtimes`: per source runtime, build times (cold, edited, cached), the incremental compile
//!   cache against a plain engine, artifact size and request latency (see `runtimes.rs`).
//! - `density`, `density-python`, `scale`, `cold-start`, `deploy`: the goals of issue 13 that
//!   take many functions, a real API server or a running `wasmless up` (one module each). They
//!   print their figures on stdout, each goal as a `goal |` line; the processes they start log
//!   to stderr. They start the release binaries that `scripts/bench.sh` names in
//!   `WASMLESS_BIN_*` (the end-to-end harness's `binary`), and the control plane from
//!   `WASMLESS_K8S_BIN`.

#![forbid(unsafe_code)]

mod coldstart;
mod density;
mod deploy;
mod local;
mod report;
mod runtimes;
mod scale;
mod wrk;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use wasmless_api::FunctionKey;
use wasmless_api::digest::Sha256Digest;
use wasmless_api::function::FunctionSpec;
use wasmless_runtime::engine::{self, Kind};
use wasmless_runtime::{EngineConfig, FunctionDef, Host, HostConfig};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a plain axum hello world (the baseline).
    Plain {
        #[arg(long, default_value = "127.0.0.1:18081")]
        listen: String,
    },
    /// Time per-request instantiation in-process.
    Instantiate {
        #[arg(long, default_value_t = 20_000)]
        iterations: u32,
        /// The repository's functions/ directory.
        #[arg(long, default_value = "functions")]
        functions: PathBuf,
    },
    /// Build and call each source runtime's hello example.
    Runtimes {
        #[arg(long, default_value = "functions")]
        functions: PathBuf,
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Only these runtimes (wat, c, rust, go, nodejs, python); all by default.
        only: Vec<String>,
    },
    /// WAT functions in one `wasmless up`: RSS, load time and p50 against one function.
    Density {
        /// Function counts, comma-separated, smallest first.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        counts: Vec<usize>,
        /// Seconds of wrk per count.
        #[arg(long, default_value_t = 8)]
        secs: u32,
        /// The longest one host may take to load, in seconds.
        #[arg(long, default_value_t = 300)]
        budget_secs: u64,
    },
    /// Distinct Python functions in one `wasmless up`: RSS per function, extrapolated to 1,000.
    DensityPython {
        #[arg(long, default_value_t = 10)]
        count: usize,
        #[arg(long, default_value = "functions")]
        functions: PathBuf,
    },
    /// WAT Functions on a real API server → all Ready: wall time and controller RSS.
    Scale {
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// The smaller batch measured first, as the baseline.
        #[arg(long, default_value_t = 100)]
        baseline: usize,
    },
    /// A host restarted with N cached functions → the last one's first 200 (`wasmless up`, and
    /// `wasmless-host` in a cluster).
    ColdStart {
        #[arg(long, default_value_t = 1_000)]
        count: usize,
    },
    /// A new function through a running `wasmless up` → its first 200 (WAT, Python, Node.js).
    Deploy {
        #[arg(long, default_value = "functions")]
        functions: PathBuf,
    },
}

const HELLO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "Content-Type: text/plain\n\nhello world")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 37))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    match Cli::parse().command {
        Command::Plain { listen } => runtime.block_on(async {
            let app = axum::Router::new().fallback(|| async { "hello world" });
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            println!("plain axum on http://{}", listener.local_addr()?);
            axum::serve(listener, app).await?;
            Ok(())
        }),
        Command::Instantiate {
            iterations,
            functions,
        } => runtime.block_on(instantiate(iterations, functions)),
        Command::Runtimes {
            functions,
            requests,
            only,
        } => runtime.block_on(runtimes::run(&functions, requests, &only)),
        Command::Density {
            counts,
            secs,
            budget_secs,
        } => runtime.block_on(density::wat(
            &counts,
            secs,
            std::time::Duration::from_secs(budget_secs),
        )),
        Command::DensityPython { count, functions } => {
            runtime.block_on(density::python(&functions, count))
        }
        Command::Scale { count, baseline } => runtime.block_on(scale::run(count, baseline)),
        Command::ColdStart { count } => runtime.block_on(coldstart::run(count)),
        Command::Deploy { functions } => runtime.block_on(deploy::run(&functions)),
    }
}

async fn instantiate(iterations: u32, functions: PathBuf) -> anyhow::Result<()> {
    println!("in-process, {iterations} iterations each (median of 3 runs)");
    println!("{:<64} {:>10}", "what", "µs/op");

    let host = Host::new(HostConfig::default())?;
    let wagi = engine::compile(host.engine(), HELLO_WAT.as_bytes())?;
    let http_path = functions.join("hello-http.wasm");
    let http_wasm = std::fs::read(&http_path).with_context(|| http_path.display().to_string())?;
    let http = engine::compile(host.engine(), &http_wasm)?;
    for (name, compiled) in [("wagi", &wagi), ("wasi-http", &http)] {
        let spec = FunctionSpec {
            runtime: "wasm".into(),
            ..Default::default()
        };
        let key = FunctionKey::new("bench", name);
        let revision = Sha256Digest::of(name.as_bytes());
        let def = FunctionDef::from_spec(key, &spec, revision, 1 << 30, Default::default())?;
        host.load(def, compiled)?;
    }
    for name in ["wagi", "wasi-http"] {
        let f = host
            .registry()
            .get(&FunctionKey::new("bench", name))
            .context("loaded above")?;
        let us = median_us(iterations, || {
            let (host, f) = (host.clone(), f.clone());
            async move {
                let (parts, _) = http::Request::get("/")
                    .header("host", "x.bench")
                    .body(())?
                    .into_parts();
                let response = host.invoke(f, parts, Bytes::new(), None).await;
                let body = http_body_util::BodyExt::collect(response.into_body()).await?;
                anyhow::ensure!(body.to_bytes().len() > 5, "empty response");
                Ok(())
            }
        })
        .await?;
        println!(
            "{:<64} {us:>10.1}",
            format!("request through Host::invoke, {name} hello")
        );
    }

    // Bare instantiation: the same engine settings, then without keep-resident as the baseline.
    let bare =
        r#"(module (memory 1) (func (export "_start") (i32.store (i32.const 0) (i32.const 1))))"#;
    let mut results = Vec::new();
    for (label, keep) in [
        ("keep-resident 64 KiB (default)", 64 << 10),
        ("keep-resident 0 (baseline)", 0),
    ] {
        let config = EngineConfig {
            keep_resident_bytes: keep,
            ..EngineConfig::default()
        };
        let engine = config.build()?;
        let compiled = engine::compile(&engine, bare.as_bytes())?;
        let Kind::Module(module) = compiled.kind() else {
            anyhow::bail!("expected a core module");
        };
        let pre = wasmtime::Linker::<()>::new(&engine).instantiate_pre(module)?;
        let us = median_us(iterations, || {
            let (engine, pre) = (engine.clone(), pre.clone());
            async move {
                let mut store = wasmtime::Store::new(&engine, ());
                store.set_epoch_deadline(u64::MAX / 2);
                let instance = pre.instantiate_async(&mut store).await?;
                let f = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                f.call_async(&mut store, ()).await?;
                Ok(())
            }
        })
        .await?;
        println!(
            "{:<64} {us:>10.1}",
            format!("instantiate + call, core module, {label}")
        );
        results.push(us);
    }
    if let [with, without] = results[..] {
        println!("keep-resident speed-up: {:.2}x", without / with);
    }
    Ok(())
}

/// Median over three runs of the mean µs per call of `op`.
async fn median_us<F, Fut>(iterations: u32, mut op: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    for _ in 0..iterations / 10 {
        op().await?;
    }
    let mut runs = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        for _ in 0..iterations {
            op().await?;
        }
        runs.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations));
    }
    runs.sort_by(f64::total_cmp);
    Ok(runs[1])
}
