//! `wasmless up` as the sections drive it: a process on free loopback ports over a directory of
//! manifests and a store the caller keeps across restarts.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wasmless_e2e::{Served, Up};

/// Manifests per file: each file is parsed whole, so a bounded size keeps parsing from showing
/// in the host's memory.
const PER_FILE: usize = 1_000;

/// Starts `wasmless up` over `dir` with `store` (its logs go to this process's stderr).
pub fn start(dir: &Path, store: &Path, extra: &[&str]) -> anyhow::Result<Served> {
    Served::spawn(Up::command(dir, store, extra), "wasmless up")
}

/// Waits for `/readyz` (every function had its first build or load), polling every 20 ms.
pub async fn until_ready(up: &Served, limit: Duration) -> anyhow::Result<()> {
    let client = client()?;
    let url = format!("http://{}/readyz", up.admin);
    let started = Instant::now();
    while started.elapsed() < limit {
        if matches!(client.get(&url).send().await, Ok(r) if r.status() == 200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("wasmless up not ready within {limit:?}")
}

/// Starts `wasmless up` and waits until it is ready; also returns how long that took.
pub async fn start_ready(
    dir: &Path,
    store: &Path,
    extra: &[&str],
    limit: Duration,
) -> anyhow::Result<(Served, Duration)> {
    let started = Instant::now();
    let up = start(dir, store, extra)?;
    until_ready(&up, limit).await?;
    Ok((up, started.elapsed()))
}

/// What `/status` says: how many functions are in each phase, and the first failure's message.
pub struct Phases {
    pub counts: BTreeMap<String, usize>,
    pub first_failure: Option<String>,
}

impl Phases {
    pub fn ready(&self) -> usize {
        self.counts.get("Ready").copied().unwrap_or(0)
    }
}

pub async fn phases(up: &Served) -> anyhow::Result<Phases> {
    let text = client()?
        .get(format!("http://{}/status", up.admin))
        .send()
        .await?
        .text()
        .await?;
    let all: Vec<serde_json::Value> = serde_json::from_str(&text).context("admin /status")?;
    let mut counts = BTreeMap::new();
    let mut first_failure = None;
    for s in &all {
        let phase = s["phase"].as_str().unwrap_or("none").to_string();
        if phase == "Failed" && first_failure.is_none() {
            first_failure = Some(format!(
                "{}/{}: {}",
                s["namespace"], s["name"], s["message"]
            ));
        }
        *counts.entry(phase).or_insert(0) += 1;
    }
    Ok(Phases {
        counts,
        first_failure,
    })
}

/// Writes `manifests` (YAML documents) into `dir`, [`PER_FILE`] to a file.
pub fn write_manifests(
    dir: &Path,
    manifests: impl Iterator<Item = String>,
) -> anyhow::Result<usize> {
    let mut written = 0;
    let mut batch = Vec::with_capacity(PER_FILE);
    let mut manifests = manifests.peekable();
    while manifests.peek().is_some() {
        batch.clear();
        batch.extend(manifests.by_ref().take(PER_FILE));
        let file = dir.join(format!("functions-{:05}.yaml", written / PER_FILE));
        std::fs::write(&file, batch.join("---\n")).with_context(|| file.display().to_string())?;
        written += batch.len();
    }
    Ok(written)
}

/// A client for many short requests on loopback.
pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(128)
        .build()?)
}

/// Whether `host` answers 200 on the function listener at `addr`.
pub async fn answers(client: &reqwest::Client, addr: std::net::SocketAddr, host: &str) -> bool {
    let sent = client
        .get(format!("http://{addr}/"))
        .header("host", host)
        .send()
        .await;
    matches!(sent, Ok(r) if r.status() == 200)
}
