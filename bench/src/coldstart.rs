//! Host cold start, timed from the start of the process to the last function's first 200 (each
//! function polled until it answers):
//! - `wasmless up` restarted on a store that has every function built, against the same restart
//!   with one function;
//! - `wasmless-host` in a cluster (API server, controller `--ready-when built`): a host that
//!   loaded every Function killed (-9) and started again on its disk cache.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use futures::StreamExt;
use wasmless_e2e::wat_manifest;

use crate::local;
use crate::report::{self, goal, secs};
use crate::scale::ControlPlane;

const NAMESPACE: &str = "cold";
/// Requests in flight while polling.
const CONCURRENCY: usize = 64;

pub async fn run(count: usize) -> anyhow::Result<()> {
    println!(
        "cold start: a host restarted with {} distinct WAT functions it had loaded; time from its start to each function's first 200",
        report::count(count)
    );
    let one = up_restart(1).await?;
    let all = up_restart(count).await?;
    println!(
        "  wasmless up, 1 function: first 200 after {}; {}: median first 200 {}, last {}",
        secs(one.last),
        report::count(count),
        secs(all.median),
        secs(all.last)
    );
    goal(
        &format!(
            "host cold start (wasmless up): {} cached functions all answering",
            report::count(count)
        ),
        "≤ 1 s",
        &secs(all.last),
        &format!("{} with one function", secs(one.last)),
        all.last <= Duration::from_secs(1),
    );
    let host = host_restart(count).await?;
    println!(
        "  wasmless-host (cluster), {}: median first 200 {}, last {}",
        report::count(count),
        secs(host.median),
        secs(host.last)
    );
    goal(
        &format!(
            "host cold start (wasmless-host in a cluster): {} cached functions all answering",
            report::count(count)
        ),
        "≤ 1 s",
        &secs(host.last),
        &format!("wasmless up {} for the same count", secs(all.last)),
        host.last <= Duration::from_secs(1),
    );
    Ok(())
}

struct Restart {
    median: Duration,
    last: Duration,
}

impl Restart {
    fn of(firsts: Vec<Duration>) -> Self {
        Self {
            last: firsts.iter().copied().max().unwrap_or_default(),
            median: report::median(firsts),
        }
    }
}

/// Builds `count` functions, stops the host, starts it again and times the first answers.
async fn up_restart(count: usize) -> anyhow::Result<Restart> {
    let (dir, store) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let names: Vec<String> = (0..count).map(|i| format!("f{i}")).collect();
    let manifests = names
        .iter()
        .map(|name| wat_manifest(NAMESPACE, name, &format!("hello from {name}")));
    local::write_manifests(dir.path(), manifests)?;
    let started = Instant::now();
    let (mut first, _) = build_all(dir.path(), store.path(), count).await?;
    println!(
        "  {} functions built in {}",
        report::count(count),
        secs(started.elapsed())
    );
    first.process.terminate()?;

    let started = Instant::now();
    let mut up = local::start(dir.path(), store.path(), &[])?;
    let firsts = first_answers(up.functions, &names, NAMESPACE, started).await?;
    up.process.terminate()?;
    Ok(Restart::of(firsts))
}

/// `count` Functions Ready in a cluster, loaded by a host that is then killed and started again
/// on its cache (the controller keeps serving artifacts, but none is fetched again).
async fn host_restart(count: usize) -> anyhow::Result<Restart> {
    let plane = ControlPlane::start().await?;
    let cache = tempfile::tempdir()?;
    let batch = plane.batch("test", count).await?;
    ensure!(batch.failed == 0, "{} Functions failed", batch.failed);
    let mut host = plane.cluster.host(&plane.artifacts, cache.path()).await?;
    host.process.kill();
    let names: Vec<String> = (0..count).map(|i| format!("f{i}")).collect();
    let started = Instant::now();
    let host = plane
        .cluster
        .host_starting(&plane.artifacts, cache.path(), &[])?;
    let firsts = first_answers(host.functions, &names, "test", started).await?;
    Ok(Restart::of(firsts))
}

async fn build_all(
    dir: &Path,
    store: &Path,
    count: usize,
) -> anyhow::Result<(wasmless_e2e::Served, Duration)> {
    let (up, took) = local::start_ready(dir, store, &[], Duration::from_secs(1800)).await?;
    let phases = local::phases(&up).await?;
    if phases.ready() != count {
        bail!(
            "not every function built: {:?} {}",
            phases.counts,
            phases.first_failure.unwrap_or_default()
        );
    }
    Ok((up, took))
}

/// Polls every function of `names` in `namespace` until each has answered 200 once; the time of
/// each first 200 since `started`.
async fn first_answers(
    addr: SocketAddr,
    names: &[String],
    namespace: &str,
    started: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let client = local::client()?;
    let mut firsts = vec![Duration::ZERO; names.len()];
    let mut pending: Vec<usize> = (0..names.len()).collect();
    while !pending.is_empty() {
        if started.elapsed() > Duration::from_secs(300) {
            bail!(
                "{} functions still not answering after 300 s",
                pending.len()
            );
        }
        let round: Vec<(usize, Option<Duration>)> = futures::stream::iter(pending)
            .map(|i| {
                let client = client.clone();
                let host = format!("{}.{namespace}", names[i]);
                async move {
                    let ok = local::answers(&client, addr, &host).await;
                    (i, ok.then(|| started.elapsed()))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        pending = Vec::new();
        for (i, answered) in round {
            match answered {
                Some(at) => firsts[i] = at,
                None => pending.push(i),
            }
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(firsts)
}
