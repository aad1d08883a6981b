//! Controller scale: N WAT Functions, each with its own source, created on a real API server
//! (etcd, kube-apiserver and kube-controller-manager as the end-to-end suites start them), with
//! `wasmless-controller --ready-when built` and its builder → every one Ready: the wall time
//! from the first create to the last Ready, and the controller's RSS. The baseline is a small
//! batch first, on the same controller.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use wasmless_api::function::{Function, Phase};
use wasmless_e2e::cluster::{self, Cluster};
use wasmless_e2e::{Process, wat_manifest};

use crate::report::{self, Memory, goal, mib, secs};

/// Creates in flight at once.
const CONCURRENCY: usize = 16;
const LIMIT: Duration = Duration::from_secs(3600);

/// What one batch took.
pub struct Batch {
    pub count: usize,
    pub created: Duration,
    pub ready: Duration,
    pub failed: usize,
    /// The controller's, once all are settled.
    pub memory: Memory,
}

pub async fn run(count: usize, baseline: usize) -> anyhow::Result<()> {
    let plane = ControlPlane::start().await?;
    println!(
        "controller scale: WAT Functions (each its own source and build) created on kube-apiserver with {CONCURRENCY} creates in flight; wasmless-controller --ready-when built"
    );
    println!(
        "{:>9} {:>10} {:>12} {:>14} {:>12} {:>12} {:>8}",
        "functions", "created s", "all Ready s", "per function", "RSS", "peak RSS", "failed"
    );
    let small = plane.batch("base", baseline).await?;
    print_batch(&small);
    let large = plane.batch("test", count).await?;
    print_batch(&large);
    goal(
        &format!(
            "controller scale: {} WAT Functions → all Ready",
            report::count(count)
        ),
        "≤ 5 min",
        &secs(large.ready),
        &format!("{} for {}", secs(small.ready), report::count(small.count)),
        large.failed == 0 && large.ready <= Duration::from_secs(300),
    );
    goal(
        &format!(
            "controller scale: controller RSS with {} Functions",
            report::count(count + baseline)
        ),
        "≤ 512 MiB",
        &format!(
            "{} (peak {})",
            mib(large.memory.rss),
            mib(large.memory.peak)
        ),
        &format!(
            "{} after {}",
            mib(small.memory.rss),
            report::count(small.count)
        ),
        large.memory.peak <= 512 << 20,
    );
    Ok(())
}

/// etcd, kube-apiserver and kube-controller-manager with the Function CRD, and a leading
/// `wasmless-controller --ready-when built` with its builder.
pub struct ControlPlane {
    pub controller: Process,
    /// The controller's artifact server.
    pub artifacts: String,
    pub client: kube::Client,
    pub cluster: Cluster,
    _store: tempfile::TempDir,
}

impl ControlPlane {
    pub async fn start() -> anyhow::Result<Self> {
        let cluster = Cluster::with_functions().await?;
        let store = tempfile::tempdir()?;
        let (controller, artifacts) = cluster.controller(store.path(), cluster::HOSTS_NOT_PODS)?;
        wasmless_e2e::wait_until(Duration::from_secs(60), || {
            let leading = controller.log_contains("leading: reconciling");
            async move { leading }
        })
        .await
        .context("the controller never started leading")?;
        let client = client(&cluster).await?;
        Ok(Self {
            controller,
            artifacts,
            client,
            cluster,
            _store: store,
        })
    }

    /// Creates Functions `f0`… in `namespace` (made unless it is `test`) and waits until each
    /// is Ready or Failed.
    pub async fn batch(&self, namespace: &str, count: usize) -> anyhow::Result<Batch> {
        if namespace != "test" {
            self.cluster.kubectl(&["create", "namespace", namespace])?;
        }
        create_and_wait(&self.client, &self.controller, namespace, count).await
    }
}

fn print_batch(b: &Batch) {
    println!(
        "{:>9} {:>10.1} {:>12.1} {:>11.1} ms {:>12} {:>12} {:>8}",
        report::count(b.count),
        b.created.as_secs_f64(),
        b.ready.as_secs_f64(),
        b.ready.as_secs_f64() * 1e3 / b.count.max(1) as f64,
        mib(b.memory.rss),
        mib(b.memory.peak),
        b.failed
    );
}

async fn client(cluster: &Cluster) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&cluster.kubeconfig)?;
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
    Ok(kube::Client::try_from(config)?)
}

async fn create_and_wait(
    client: &kube::Client,
    controller: &Process,
    namespace: &str,
    count: usize,
) -> anyhow::Result<Batch> {
    let api: Api<Function> = Api::namespaced(client.clone(), namespace);
    let settled = Arc::new(Mutex::new(Settled::default()));
    let watching = tokio::spawn(watch(api.clone(), settled.clone()));
    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| create(&api, namespace, i))
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    let created = started.elapsed();
    let mut reported = Instant::now();
    loop {
        let (ready, failed) = settled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .counts();
        if ready + failed >= count {
            break;
        }
        if started.elapsed() > LIMIT {
            bail!("{ready} Ready and {failed} Failed of {count} after {LIMIT:?}");
        }
        if reported.elapsed() > Duration::from_secs(30) {
            reported = Instant::now();
            println!(
                "  … {ready} Ready after {} (controller RSS {})",
                secs(started.elapsed()),
                mib(Memory::of(controller.id())?.rss)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = started.elapsed();
    watching.abort();
    let failed = settled
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .failed
        .len();
    Ok(Batch {
        count,
        created,
        ready,
        failed,
        memory: Memory::of(controller.id())?,
    })
}

async fn create(api: &Api<Function>, namespace: &str, i: usize) -> anyhow::Result<()> {
    let name = format!("f{i}");
    let function: Function = serde_yaml::from_str(&wat_manifest(
        namespace,
        &name,
        &format!("hello from {name}"),
    ))?;
    api.create(&PostParams::default(), &function)
        .await
        .with_context(|| format!("create {namespace}/{name}"))?;
    Ok(())
}

/// Functions seen Ready or Failed.
#[derive(Default)]
struct Settled {
    ready: HashSet<String>,
    failed: HashSet<String>,
}

impl Settled {
    fn counts(&self) -> (usize, usize) {
        (self.ready.len(), self.failed.len())
    }
}

/// Follows the namespace's Functions (one watch, not a list per poll: 10,000 objects).
async fn watch(api: Api<Function>, settled: Arc<Mutex<Settled>>) {
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    while let Some(next) = stream.next().await {
        let Ok(function) = next else { continue };
        let name = function.metadata.name.unwrap_or_default();
        let phase = function.status.map(|s| s.phase).unwrap_or_default();
        let mut s = settled.lock().unwrap_or_else(PoisonError::into_inner);
        match phase {
            Phase::Ready => {
                s.failed.remove(&name);
                s.ready.insert(name);
            }
            Phase::Failed => {
                s.failed.insert(name);
            }
            _ => {}
        }
    }
}
