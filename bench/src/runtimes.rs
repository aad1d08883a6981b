//! `runtimes`: per source runtime, what a user waits for and what a request costs. For each
//! runtime's `hello` example in `functions/<runtime>/`, through the controller's pipeline:
//! - cold build: empty store and compile cache, toolchain installed (build + precompile);
//! - edited build: the same function with a changed comment (new source, warm caches);
//! - cached build: the identical function again (the store answers by build key);
//! - precompile of the edited module with Cranelift's incremental cache warmed by the first
//!   module, against a plain engine in the same run (the baseline), and of the first module
//!   again (every function a cache hit: what compiling costs besides Cranelift);
//! - artifact size, and p50/p99 of requests through `Host::invoke`, one at a time.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use wasmless_api::FunctionManifest;
use wasmless_api::digest::Sha256Digest;
use wasmless_api::validate::Origin;
use wasmless_build::artifacts::{ArtifactStore, Object};
use wasmless_build::{DirStore, Pipeline, manifest};
use wasmless_runtime::engine;
use wasmless_runtime::{EngineConfig, FunctionDef, Host, HostConfig};

/// Runtime, example file, and how its source writes a comment line.
const RUNTIMES: [(&str, &str, &str); 8] = [
    ("wat", "hello-world.yaml", ";;"),
    ("c", "c/functions.yaml", "//"),
    ("rust", "rust/functions.yaml", "//"),
    ("go", "go/functions.yaml", "//"),
    ("nodejs", "nodejs/functions.yaml", "//"),
    ("python", "python/functions.yaml", "#"),
    ("ruby", "ruby/functions.yaml", "#"),
    ("java", "java/functions.yaml", "//"),
];

pub async fn run(functions: &Path, requests: usize, only: &[String]) -> anyhow::Result<()> {
    println!("{requests} sequential requests per function; times in seconds unless marked");
    println!(
        "{:<8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>7} {:>10} {:>9} {:>9} {:>9}",
        "runtime",
        "cold",
        "edited",
        "cached",
        "precomp",
        "no-cache",
        "ratio",
        "all-hits",
        "size",
        "p50 ms",
        "p99 ms"
    );
    for (runtime, file, comment) in RUNTIMES {
        if !only.is_empty() && !only.iter().any(|o| o == runtime) {
            continue;
        }
        let hello = hello_of(&functions.join(file))?;
        let row = measure(&hello, comment, requests)
            .await
            .with_context(|| format!("runtime {runtime}"))?;
        println!(
            "{runtime:<8} {:>8.2} {:>8.2} {:>8.3} {:>10.2} {:>10.2} {:>6.1}x {:>10.2} {:>8.1}K {:>9.2} {:>9.2}",
            row.cold.as_secs_f64(),
            row.edited.as_secs_f64(),
            row.cached.as_secs_f64(),
            row.precompile_warm.as_secs_f64(),
            row.precompile_plain.as_secs_f64(),
            row.precompile_plain.as_secs_f64() / row.precompile_warm.as_secs_f64().max(1e-6),
            row.precompile_all_hits.as_secs_f64(),
            row.size as f64 / 1024.0,
            row.p50.as_secs_f64() * 1e3,
            row.p99.as_secs_f64() * 1e3,
        );
    }
    Ok(())
}

struct Row {
    cold: Duration,
    edited: Duration,
    cached: Duration,
    precompile_warm: Duration,
    precompile_plain: Duration,
    precompile_all_hits: Duration,
    size: u64,
    p50: Duration,
    p99: Duration,
}

/// The example named `*hello*` (or the only one) in a manifest file.
pub fn hello_of(path: &Path) -> anyhow::Result<FunctionManifest> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    manifest::parse(&text)?
        .into_iter()
        .find(|m| m.metadata.name.contains("hello"))
        .with_context(|| format!("no hello example in {}", path.display()))
}

const BUILD_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);

async fn measure(hello: &FunctionManifest, comment: &str, requests: usize) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let host = Host::new(HostConfig {
        engine: EngineConfig {
            compile_cache: Some(dir.path().join("compile-cache")),
            ..EngineConfig::default()
        },
        ..HostConfig::default()
    })?;
    let store = Arc::new(DirStore::new(dir.path().join("store")));
    // Builds go to a wasmless-builder child process, as in `wasmless up`.
    let builder = wasmless_builder::local::LocalBuilder::spawn(None, &[])?;
    let client = wasmless_builder::Client::new(&builder.url, &builder.token, BUILD_WAIT)?;
    let pipeline = Pipeline::new(host.engine().clone(), store.clone(), Arc::new(client));
    let key = hello.key();
    let mut edited = hello.clone();
    edited.spec.function = format!("{}\n{comment} edited\n", edited.spec.function);

    let timed = |m: &FunctionManifest| {
        let started = Instant::now();
        // The client waits on this runtime: not from one of its tasks.
        tokio::task::block_in_place(|| pipeline.build(&key, &m.spec, Origin::Inline))
            .map(|artifact| (artifact, started.elapsed()))
    };
    let (artifact, cold) = timed(hello)?;
    let (edited_artifact, edited_time) = timed(&edited)?;
    let (_, cached) = timed(hello)?;

    // The incremental cache on its own: warmed by the first module only, then the edited one,
    // against an engine without it.
    let wasm = |digest: &Sha256Digest| -> anyhow::Result<Vec<u8>> {
        store
            .get(Object::Wasm(digest))?
            .context("the build stored its wasm")
    };
    let (first, second) = (wasm(&artifact.digest)?, wasm(&edited_artifact.digest)?);
    let cached_engine = EngineConfig {
        compile_cache: Some(dir.path().join("fresh-cache")),
        ..EngineConfig::default()
    }
    .build()?;
    engine::precompile(&cached_engine, &first)?;
    let started = Instant::now();
    engine::precompile(&cached_engine, &second)?;
    let precompile_warm = started.elapsed();
    // The floor: the first module again, every function a cache hit.
    let started = Instant::now();
    engine::precompile(&cached_engine, &first)?;
    let precompile_all_hits = started.elapsed();
    let plain = EngineConfig::default().build()?;
    let started = Instant::now();
    engine::precompile(&plain, &second)?;
    let precompile_plain = started.elapsed();

    let path = artifact
        .precompiled
        .as_ref()
        .context("the directory store keeps a local file")?;
    let compiled = engine::load_precompiled(host.engine(), path)?;
    // A Python function's own files, beside the interpreter's code.
    let files = match &artifact.files {
        Some(f) => Some(
            store
                .get(Object::Files(&f.digest))?
                .context("the build stored its files")?,
        ),
        None => None,
    };
    let def = FunctionDef::from_manifest(hello, artifact.digest.clone(), 1 << 30)?
        .with_files(artifact.files.clone());
    host.load_with(def, &compiled, None, files.as_deref())?;
    let f = host.registry().get(&key).context("loaded above")?;
    let mut times = Vec::with_capacity(requests);
    for i in 0..requests + requests / 10 {
        let (parts, _) = http::Request::get("/")
            .header("host", format!("{}.{}", key.name, key.namespace))
            .body(())?
            .into_parts();
        let started = Instant::now();
        let response = host.invoke(f.clone(), parts, Bytes::new(), None).await;
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body()).await?;
        anyhow::ensure!(
            status == 200 && body.to_bytes().starts_with(b"hello"),
            "the hello example answered {status}"
        );
        // The first tenth warms up.
        if i >= requests / 10 {
            times.push(started.elapsed());
        }
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    Ok(Row {
        cold,
        edited: edited_time,
        cached,
        precompile_warm,
        precompile_plain,
        precompile_all_hits,
        size: artifact.size,
        p50: at(0.5),
        p99: at(0.99),
    })
}
