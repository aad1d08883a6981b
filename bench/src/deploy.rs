//! Deploy: a new function sent to a running `wasmless up` (admin `PUT`, as `wasmless function
//! deploy --local` does) until its first 200, on a fresh store: WAT (median of three new
//! sources, and a source already built as the floor), then Python and Node.js, each twice: the
//! first with the compile cache empty (a new host), the second with the first in it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wasmless_e2e::{Served, wat_manifest};
use wasmless_runtime::FunctionManifest;

use crate::local;
use crate::report::{goal, median, secs};
use crate::runtimes;

const NAMESPACE: &str = "deploy";

pub async fn run(functions: &Path) -> anyhow::Result<()> {
    let (dir, store) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (mut up, _) =
        local::start_ready(dir.path(), store.path(), &[], Duration::from_secs(120)).await?;
    println!(
        "deploy: admin PUT of a new function to a running `wasmless up` → its first 200 (fresh store)"
    );
    let result = measure(&up, functions).await;
    up.process.terminate()?;
    result
}

async fn measure(up: &Served, functions: &Path) -> anyhow::Result<()> {
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
    for (runtime, file, comment) in [
        ("python", "python/functions.yaml", "#"),
        ("nodejs", "nodejs/functions.yaml", "//"),
    ] {
        let hello = runtimes::hello_of(&functions.join(file))?;
        let first = deploy_source(up, &hello, &format!("{runtime}-first"), comment).await?;
        let second = deploy_source(up, &hello, &format!("{runtime}-second"), comment).await?;
        println!(
            "  {runtime}: {} with the compile cache empty, {} with it warm",
            secs(first),
            secs(second)
        );
        goal(
            &format!("deploy: new {runtime} function, apply → first 200"),
            "≤ 10 s",
            &format!("{} on a fresh store", secs(first)),
            &format!("{} for a second one (compile cache warm)", secs(second)),
            first <= Duration::from_secs(10),
        );
    }
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
