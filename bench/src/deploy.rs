//! Deploy: a new function sent to a running `wasmless up` (admin `PUT`, as `wasmless function
//! deploy --local` does) until its first 200, on a fresh store. First with an empty compile
//! cache: WAT (median of three new sources, and a source already built as the floor), then a
//! Python and a Node.js function, the first builds of their kind. Then the goal's case: another
//! `wasmless up` on another fresh store, the toolchains installed and the machine's compile
//! cache as those first builds left it (`up` keeps one per machine), and new Python and
//! Node.js functions.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;
use wasmless_api::FunctionManifest;
use wasmless_e2e::{Served, wat_manifest};

use crate::local;
use crate::report::{goal, median, secs};
use crate::runtimes;

const NAMESPACE: &str = "deploy";

/// The interpreted runtimes: where their hello is, and how their sources comment.
const INTERPRETED: [(&str, &str, &str); 2] = [
    ("python", "python/functions.yaml", "#"),
    ("nodejs", "nodejs/functions.yaml", "//"),
];

pub async fn run(functions: &Path) -> anyhow::Result<()> {
    let compile_cache = tempfile::tempdir()?;
    println!(
        "deploy: admin PUT of a new function to a running `wasmless up` → its first 200 (fresh store)"
    );
    let up = FreshUp::start(compile_cache.path()).await?;
    let first = async {
        measure_wat(&up.served).await?;
        interpreted(&up.served, functions, "first").await
    }
    .await;
    up.stop()?;
    let first = first?;
    let up = FreshUp::start(compile_cache.path()).await?;
    let again = interpreted(&up.served, functions, "new").await;
    up.stop()?;
    for ((runtime, _, _), (first, again)) in INTERPRETED.iter().zip(first.into_iter().zip(again?)) {
        println!(
            "  {runtime}: {} as the first build (compile cache empty), {} on a new store after it",
            secs(first),
            secs(again)
        );
        goal(
            &format!("deploy: new {runtime} function, apply → first 200"),
            "≤ 10 s",
            &format!("{} (new store, toolchain installed)", secs(again)),
            &format!("{} as the first build, compile cache empty", secs(first)),
            again <= Duration::from_secs(10),
        );
    }
    Ok(())
}

/// A `wasmless up` on an empty functions directory and an empty store.
struct FreshUp {
    served: Served,
    _dirs: (TempDir, TempDir),
}

impl FreshUp {
    async fn start(compile_cache: &Path) -> anyhow::Result<Self> {
        let (dir, store) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let cache = compile_cache.to_str().context("compile cache path")?;
        let (served, _) = local::start_ready(
            dir.path(),
            store.path(),
            &["--compile-cache", cache],
            Duration::from_secs(120),
        )
        .await?;
        Ok(Self {
            served,
            _dirs: (dir, store),
        })
    }

    fn stop(mut self) -> anyhow::Result<()> {
        self.served.process.terminate()?;
        Ok(())
    }
}

/// A new function of each interpreted runtime, named `<runtime>-<suffix>`: how long each took.
async fn interpreted(up: &Served, functions: &Path, suffix: &str) -> anyhow::Result<Vec<Duration>> {
    let mut took = Vec::new();
    for (runtime, file, comment) in INTERPRETED {
        let hello = runtimes::hello_of(&functions.join(file))?;
        took.push(deploy_source(up, &hello, &format!("{runtime}-{suffix}"), comment).await?);
    }
    Ok(took)
}

async fn measure_wat(up: &Served) -> anyhow::Result<()> {
    let mut wat = Vec::new();
    for i in 0..3 {
        let name = format!("wat{i}");
        let yaml = wat_manifest(NAMESPACE, &name, &format!("deployed {i}"));
        wat.push(deploy(up, &name, &yaml).await?);
    }
    // A new function whose source is already built: what deploying costs besides the build.
    let floor = deploy(
        up,
        "wat-again",
        &wat_manifest(NAMESPACE, "wat-again", "deployed 0"),
    )
    .await?;
    let wat_median = median(wat.clone());
    println!(
        "  wat: {} (new sources: {}); source already built: {}",
        secs(wat_median),
        wat.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(", "),
        secs(floor)
    );
    goal(
        "deploy: new WAT function, apply → first 200",
        "≤ 0.3 s",
        &format!("{} (median of 3)", secs(wat_median)),
        &format!("{} for a source already built", secs(floor)),
        wat_median <= Duration::from_millis(300),
    );
    Ok(())
}

/// `hello` deployed as `name`, its source made new by a comment.
async fn deploy_source(
    up: &Served,
    hello: &FunctionManifest,
    name: &str,
    comment: &str,
) -> anyhow::Result<Duration> {
    let mut m = hello.clone();
    m.metadata.name = name.to_string();
    m.metadata.namespace = Some(NAMESPACE.into());
    m.spec.function = format!("{}\n{comment} {name}\n", m.spec.function);
    deploy(up, name, &serde_yaml::to_string(&m)?).await
}

/// PUTs `yaml` as function `name` and polls it until it answers 200: the time between.
async fn deploy(up: &Served, name: &str, yaml: &str) -> anyhow::Result<Duration> {
    let client = local::client()?;
    let host = format!("{name}.{NAMESPACE}");
    let started = Instant::now();
    let put = client
        .put(format!("http://{}/functions/{NAMESPACE}/{name}", up.admin))
        .body(yaml.to_string())
        .send()
        .await
        .context("admin PUT")?;
    if !put.status().is_success() {
        bail!(
            "PUT {name}: {} {}",
            put.status(),
            put.text().await.unwrap_or_default()
        );
    }
    let mut checked = Instant::now();
    while started.elapsed() < Duration::from_secs(600) {
        if local::answers(&client, up.functions, &host).await {
            return Ok(started.elapsed());
        }
        // A failed build never answers: say why instead of waiting for the limit.
        if checked.elapsed() > Duration::from_secs(2) {
            checked = Instant::now();
            if let Some(failure) = local::phases(up).await?.first_failure {
                bail!("{failure}");
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("{host} never answered 200")
}
