//! Faults under load on a real control plane: a client loops on a WAT function over real HTTP
//! while a host, the controller or the API server is killed with SIGKILL. Requests lost are
//! counted and printed; a loss is a failure only where none may happen: a host that was not
//! killed keeps answering for a function that did nothing wrong.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sha2::Digest;

use wasmless_e2e::cluster::{self, Cluster};
use wasmless_e2e::{Served, client, files_under, report, wait_until, wat_manifest};

const STEADY: &str = "steady";
const STEADY_BODY: &str = "steady ok";

/// A client looping on one function of one host until stopped, counting what it got.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    first_failure: Arc<std::sync::Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(addr: SocketAddr, host: &str, body: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let first_failure = Arc::new(std::sync::Mutex::new(None));
        let (host, body) = (host.to_string(), body.to_string());
        let task = {
            let (stop, ok, failed, first) = (
                stop.clone(),
                ok.clone(),
                failed.clone(),
                first_failure.clone(),
            );
            tokio::spawn(async move {
                let client = client();
                while !stop.load(Ordering::Relaxed) {
                    let got = client
                        .get(format!("http://{addr}/"))
                        .header("host", &host)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    let outcome = match got {
                        Ok(r) if r.status() == 200 => match r.text().await {
                            Ok(b) if b == body => Ok(()),
                            other => Err(format!("200 with {other:?}")),
                        },
                        Ok(r) => Err(format!("status {}", r.status())),
                        Err(e) => Err(e.to_string()),
                    };
                    match outcome {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            if let Ok(mut f) = first.lock() {
                                f.get_or_insert(e);
                            }
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    // Bounded: at most ~100 requests a second per loop.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        Self {
            stop,
            ok,
            failed,
            first_failure,
            task,
        }
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Stops the loop; returns (ok, failed, the first failure).
    async fn finish(self) -> (u64, u64, String) {
        self.stop.store(true, Ordering::Relaxed);
        let (ok, failed) = (self.ok.clone(), self.failed.clone());
        let _ = self.task.await;
        let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
        let first = self
            .first_failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        (ok, failed, first)
    }
}

async fn until_body(served: &Served, host: &str, body: &str) -> anyhow::Result<()> {
    wait_until(Duration::from_secs(120), || async {
        matches!(served.get(host, "/").await, Ok((200, b)) if b == body)
    })
    .await
    .with_context(|| format!("{host} never answered {body:?}"))
}

async fn until_leading(controller: &wasmless_e2e::Process) -> anyhow::Result<()> {
    wait_until(Duration::from_secs(60), || {
        let leading = controller.log_contains("leading: reconciling");
        async move { leading }
    })
    .await
}

/// A control plane, a controller and one host serving `steady`, with a client looping on it.
struct Setup {
    cluster: Cluster,
    store: tempfile::TempDir,
    controller: wasmless_e2e::Process,
    artifacts: String,
}

async fn setup() -> anyhow::Result<Setup> {
    let cluster = Cluster::with_functions().await?;
    let store = tempfile::tempdir()?;
    let (controller, artifacts) = cluster.controller(store.path(), cluster::HOSTS_NOT_PODS)?;
    until_leading(&controller).await?;
    cluster.apply(&wat_manifest("test", STEADY, STEADY_BODY))?;
    Ok(Setup {
        cluster,
        store,
        controller,
        artifacts,
    })
}

fn lost(label: &str, ok: u64, failed: u64, first: &str) {
    report(&format!(
        "faults: {label}: {failed} lost of {} ({ok} answered){}",
        ok + failed,
        if first.is_empty() {
            String::new()
        } else {
            format!("; first loss: {first}")
        }
    ));
}

#[tokio::test]
async fn a_killed_host_restarts_from_its_cache_with_the_controller_down() -> anyhow::Result<()> {
    let Setup {
        cluster,
        controller: mut ctl,
        artifacts,
        store: _store,
    } = setup().await?;
    let (cache_a, cache_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let mut a = cluster.host(&artifacts, cache_a.path()).await?;
    let b = cluster.host(&artifacts, cache_b.path()).await?;
    until_body(&a, "steady.test", STEADY_BODY).await?;
    until_body(&b, "steady.test", STEADY_BODY).await?;

    let on_a = Load::start(a.functions, "steady.test", STEADY_BODY);
    let on_b = Load::start(b.functions, "steady.test", STEADY_BODY);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // kill -9 host A, then the controller: nothing can hand A its artifacts again.
    a.process.kill();
    let killed = Instant::now();
    ctl.kill();
    let before_restart = on_a.counts();
    let a = cluster.host("http://127.0.0.1:9", cache_a.path()).await?;
    let ready = killed.elapsed();
    let (ok, failed, first) = on_a.finish().await;
    lost(
        "host A before its kill -9 and while down (the client keeps the dead address)",
        ok,
        failed,
        &first,
    );
    report(&format!(
        "faults: host A killed → restarted and ready (controller down, artifacts unreachable): {:.1} s; {} requests refused meanwhile",
        ready.as_secs_f64(),
        failed.saturating_sub(before_restart.1)
    ));

    // The restarted host answers from its cache alone.
    let first_200 = Instant::now();
    until_body(&a, "steady.test", STEADY_BODY).await?;
    report(&format!(
        "faults: restarted host A: ready → first 200 {:.0} ms",
        first_200.elapsed().as_secs_f64() * 1e3
    ));
    let on_a = Load::start(a.functions, "steady.test", STEADY_BODY);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ok, failed, first) = on_a.finish().await;
    lost(
        "restarted host A from its cache, controller down",
        ok,
        failed,
        &first,
    );
    assert_eq!(
        failed, 0,
        "a function loaded from cache keeps answering: {first}"
    );

    let (ok, failed, first) = on_b.finish().await;
    lost("host B (never killed) throughout", ok, failed, &first);
    assert_eq!(failed, 0, "host B was not killed: {first}");
    assert!(ok > 0);
    Ok(())
}

/// A WAT function whose compile takes a while (a long straight-line function), so that a kill
/// lands during builds.
fn slow_manifest(name: &str, adds: usize) -> String {
    let mut body = String::with_capacity(adds * 48);
    for i in 0..adds {
        body.push_str(&format!(
            "        (local.set 0 (i32.add (local.get 0) (i32.const {})))\n",
            i % 97
        ));
    }
    let start = "      (func (export \"_start\")\n";
    let busy = format!(
        "      (func $busy (param i32) (result i32)\n{body}        (local.get 0))\n{start}        (drop (call $busy (i32.const 0)))\n"
    );
    wat_manifest("test", name, name).replacen(start, &busy, 1)
}

/// Every file of the store, relative path → bytes.
fn store_files(root: &Path) -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let bytes = std::fs::read(&path)?;
                out.push((path.strip_prefix(root)?.to_path_buf(), bytes));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_controller_killed_mid_build_leaves_no_duplicate_or_corrupt_artifact()
-> anyhow::Result<()> {
    const SLOW: usize = 6;
    let Setup {
        cluster,
        controller: mut ctl,
        artifacts,
        store,
    } = setup().await?;
    let cache = tempfile::tempdir()?;
    let host = cluster.host(&artifacts, cache.path()).await?;
    until_body(&host, "steady.test", STEADY_BODY).await?;
    let on_steady = Load::start(host.functions, "steady.test", STEADY_BODY);

    let names: Vec<String> = (0..SLOW).map(|i| format!("slow-{i}")).collect();
    // `kubectl create`: `apply` would copy each ~0.8 MB source into an annotation (256 KiB max).
    let manifests = tempfile::tempdir()?;
    for name in &names {
        let file = manifests.path().join(format!("{name}.yaml"));
        std::fs::write(&file, slow_manifest(name, 15_000))?;
    }
    cluster.kubectl(&["create", "-f", &manifests.path().to_string_lossy()])?;
    // Kill as soon as a build has started (its status says Building).
    wait_until(Duration::from_secs(60), || async {
        cluster
            .kubectl(&[
                "get",
                "fn",
                "-n",
                "test",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ])
            // All Ready already (a fast machine) still checks the store; the report says so.
            .is_ok_and(|p| {
                p.contains("Building") || p.split(' ').filter(|p| *p == "Ready").count() > SLOW
            })
    })
    .await?;
    ctl.kill();
    // steady's build finished before the slow ones were applied.
    let slow_done = ctl.log_count("build finished").saturating_sub(1);
    report(&format!(
        "faults: controller killed with SIGKILL once a build had started: {slow_done} of {SLOW} slow builds finished"
    ));
    let leftovers_after_kill = store_files(store.path())?
        .iter()
        .filter(|(p, _)| file_name(p).starts_with(".tmp-"))
        .count();

    let (ctl2, artifacts2) = cluster.controller(store.path(), cluster::HOSTS_NOT_PODS)?;
    until_leading(&ctl2).await?;
    // The host fetches from the new artifact server's address only for what it has not loaded;
    // a second host fetches everything from it.
    let cache2 = tempfile::tempdir()?;
    let fresh = cluster.host(&artifacts2, cache2.path()).await?;
    for name in &names {
        until_body(&fresh, &format!("{name}.test"), name).await?;
    }
    let rebuilt = ctl2.log_count("build finished");

    // The store: every wasm named by its digest; every build record names a stored wasm; every
    // precompiled file has its wasm; one wasm per distinct function, so nothing doubled.
    let files = store_files(store.path())?;
    let (mut wasm, mut builds, mut precompiled, mut temporary) = (0, 0, 0, 0);
    let digests: std::collections::BTreeSet<String> = files
        .iter()
        .filter(|(p, _)| p.starts_with("wasm") && !file_name(p).starts_with(".tmp-"))
        .map(|(p, _)| file_name(p).replacen('-', ":", 1))
        .collect();
    for (path, bytes) in &files {
        let name = file_name(path);
        if name.starts_with(".tmp-") {
            temporary += 1;
            continue;
        }
        if path.starts_with("wasm") {
            wasm += 1;
            let actual = format!("sha256-{}", hex::encode(sha2::Sha256::digest(bytes)));
            assert_eq!(name, actual, "{} is corrupt", path.display());
        } else if path.starts_with("builds") {
            builds += 1;
            let digest = String::from_utf8_lossy(bytes).trim().to_string();
            assert!(
                digests.contains(&digest),
                "build record {} names {digest:?}, which is not stored",
                path.display()
            );
        } else if path.starts_with("precompiled") {
            precompiled += 1;
            let digest = name.replacen('-', ":", 1);
            assert!(digests.contains(&digest), "{} has no wasm", path.display());
            assert!(!bytes.is_empty(), "{} is empty", path.display());
        }
    }
    let mut served: Vec<String> = Vec::new();
    for name in names.iter().map(String::as_str).chain([STEADY]) {
        served.push(cluster.function_field(name, "{.status.artifact.digest}")?);
    }
    served.sort();
    served.dedup();
    report(&format!(
        "faults: store after the kill and a restart: {wasm} wasm, {builds} build records, {precompiled} precompiled, {temporary} temporary files ({leftovers_after_kill} right after the kill); {} distinct digests in status; the new controller finished {rebuilt} builds",
        served.len()
    ));
    assert_eq!(
        wasm,
        served.len(),
        "one wasm per distinct function, none doubled or orphaned: {digests:?} vs {served:?}"
    );
    for digest in &served {
        assert!(
            digests.contains(digest),
            "status names {digest}, not stored"
        );
    }

    let (ok, failed, first) = on_steady.finish().await;
    lost(
        "steady on the host while the controller was killed mid-build and restarted",
        ok,
        failed,
        &first,
    );
    assert_eq!(failed, 0, "steady did nothing wrong: {first}");
    Ok(())
}

/// The API server's process of `cluster`, found by its certificate directory: its pid and
/// command line.
fn api_server(cluster: &Cluster) -> anyhow::Result<(u32, Vec<String>)> {
    let dir = cluster.kubeconfig.parent().context("kubeconfig dir")?;
    let certs = dir.join("certs").to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.ends_with("kube-apiserver")) && args.contains(&certs) {
            return Ok((pid, args));
        }
    }
    bail!("no kube-apiserver with --cert-dir {certs}")
}

/// A process this test started, killed on drop.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn watches_recover_after_an_api_server_restart() -> anyhow::Result<()> {
    let Setup {
        cluster,
        controller: ctl,
        artifacts,
        store: _store,
    } = setup().await?;
    let cache = tempfile::tempdir()?;
    let host = cluster.host(&artifacts, cache.path()).await?;
    until_body(&host, "steady.test", STEADY_BODY).await?;
    let on_steady = Load::start(host.functions, "steady.test", STEADY_BODY);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (pid, args) = api_server(&cluster)?;
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -9 {pid} failed");
    }
    let killed = Instant::now();
    // Down for a while, as in a real restart (an image pull, a node reboot).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = cluster
        .kubeconfig
        .parent()
        .context("kubeconfig dir")?
        .join("kube-apiserver.log");
    let out = std::fs::File::options().append(true).open(&log)?;
    let _api = Owned(
        Command::new(&args[0])
            .args(&args[1..])
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .context("restart kube-apiserver")?,
    );
    wait_until(Duration::from_secs(90), || async {
        cluster
            .kubectl(&["get", "--raw", "/readyz"])
            .is_ok_and(|o| o.trim() == "ok")
    })
    .await
    .context("kube-apiserver never became ready again")?;
    let api_back = killed.elapsed();

    // A Function applied after the restart is built and served: both watches recovered.
    let applied = Instant::now();
    cluster.apply(&wat_manifest("test", "after-restart", "after restart"))?;
    // Which watch took the time: the controller's (Ready) or the host's (first 200).
    wait_until(Duration::from_secs(300), || async {
        cluster.phase("after-restart") == "Ready"
    })
    .await
    .context("the controller never built a Function applied after the restart")?;
    let ready_after = applied.elapsed();
    wait_until(Duration::from_secs(300), || async {
        matches!(host.get("after-restart.test", "/").await, Ok((200, b)) if b == "after restart")
    })
    .await
    .context("the host never served a Function applied after the restart")?;
    let served_after = applied.elapsed();
    // And one deleted is unloaded.
    cluster.kubectl(&["delete", "fn", "after-restart", "-n", "test"])?;
    wait_until(Duration::from_secs(120), || async {
        matches!(host.get("after-restart.test", "/").await, Ok((404, _)))
    })
    .await
    .context("a Function deleted after the restart is still served")?;
    report(&format!(
        "faults: kube-apiserver killed with SIGKILL, back after {:.1} s; a Function applied then → Ready {:.1} s, first 200 {:.1} s; its deletion unloaded it",
        api_back.as_secs_f64(),
        ready_after.as_secs_f64(),
        served_after.as_secs_f64()
    ));
    assert!(
        !ctl.log_contains("panicked"),
        "the controller did not panic"
    );

    let (ok, failed, first) = on_steady.finish().await;
    lost(
        "steady on the host while the API server was down and back",
        ok,
        failed,
        &first,
    );
    assert_eq!(failed, 0, "the host serves without the API server: {first}");
    Ok(())
}

/// The `/status` entry of a function on a host (with the hosts' token): `phase: message`.
async fn host_status(host: &Served, name: &str) -> String {
    let Ok((200, text)) = host
        .admin_get_with("/status", Some(cluster::INTERNAL_TOKEN))
        .await
    else {
        return String::new();
    };
    let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
    all.iter()
        .find(|s| s["name"] == name)
        .map(|s| {
            format!(
                "{}: {}",
                s["phase"].as_str().unwrap_or_default(),
                s["message"].as_str().unwrap_or_default()
            )
        })
        .unwrap_or_default()
}

/// A host that starts while the artifact server is down retries the fetch, stays unready (503)
/// meanwhile, and turns ready and answers once the controller is back.
#[tokio::test]
async fn a_fetch_that_fails_for_now_is_retried_and_readiness_waits_for_it() -> anyhow::Result<()> {
    let cluster = Cluster::with_functions().await?;
    let store = tempfile::tempdir()?;
    // A fixed port, so that the controller started again serves where the host fetches.
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .to_string();
    let (mut ctl, artifacts) =
        cluster.controller_on(&listen, store.path(), cluster::HOSTS_NOT_PODS)?;
    until_leading(&ctl).await?;
    cluster.apply(&wat_manifest("test", STEADY, STEADY_BODY))?;
    wait_until(Duration::from_secs(120), || async {
        cluster.phase(STEADY) == "Ready"
    })
    .await?;
    ctl.kill();

    let cache = tempfile::tempdir()?;
    let host = cluster.host_starting(&artifacts, cache.path(), &[])?;
    wait_until(Duration::from_secs(60), || async {
        host_status(&host, STEADY)
            .await
            .starts_with("Loading: attempt 3")
    })
    .await
    .with_context(|| format!("the host's log:\n{}", host.process.log()))?;
    let (ready, _) = host.admin_get_with("/readyz", None).await?;
    assert_eq!(
        ready, 503,
        "not ready while an assigned function cannot load"
    );
    let (status, _) = host.get("steady.test", "/").await?;
    assert_eq!(status, 404, "nothing loaded yet");

    let started = Instant::now();
    let (_ctl, _) = cluster.controller_on(&listen, store.path(), cluster::HOSTS_NOT_PODS)?;
    host.until_ready("wasmless-host").await?;
    let ready_after = started.elapsed();
    until_body(&host, "steady.test", STEADY_BODY).await?;
    assert!(host_status(&host, STEADY).await.starts_with("Ready"));
    report(&format!(
        "faults: artifact server down at the host's start: retried until it came back, ready {:.1} s after the controller restarted",
        ready_after.as_secs_f64()
    ));
    Ok(())
}

/// `--cache-max-bytes`: a host loads more artifacts than its cache holds (functions made and
/// deleted one after another); the files on disk stay within the bound and the function that
/// stays assigned keeps answering.
#[tokio::test]
async fn the_host_cache_stays_within_its_bound() -> anyhow::Result<()> {
    const BOUND: u64 = 160 * 1024;
    let Setup {
        cluster,
        artifacts,
        controller: _controller,
        store: _store,
    } = setup().await?;
    let cache = tempfile::tempdir()?;
    let host = cluster
        .host_with(
            &artifacts,
            cache.path(),
            "127.0.0.1",
            &["--cache-max-bytes", "160Ki"],
        )
        .await?;
    until_body(&host, "steady.test", STEADY_BODY).await?;
    let within = || async {
        wait_until(Duration::from_secs(30), || {
            let used: u64 = files_under(cache.path()).iter().map(|(_, n)| n).sum();
            async move { used <= BOUND }
        })
        .await
        .with_context(|| format!("the cache holds {:?}", files_under(cache.path())))
    };
    // Every file the cache held at some point, by name.
    let mut seen = std::collections::HashMap::new();
    for i in 0..5 {
        let name = format!("big{i}");
        // ~40 KB of data each, in the wasm and in its precompiled form.
        let body = format!("{name} {}", "x".repeat(40_000));
        cluster.apply(&wat_manifest("test", &name, &body))?;
        until_body(&host, &format!("{name}.test"), &body).await?;
        seen.extend(files_under(cache.path()));
        within().await?;
        cluster.kubectl(&["delete", "fn", &name, "-n", "test"])?;
        wait_until(Duration::from_secs(60), || async {
            matches!(host.get(&format!("{name}.test"), "/").await, Ok((404, _)))
        })
        .await?;
        within().await?;
        until_body(&host, "steady.test", STEADY_BODY).await?;
    }
    let loaded: u64 = seen.values().sum();
    report(&format!(
        "faults: host cache: {} artifact files of {loaded} bytes loaded in all, held within {BOUND} bytes",
        seen.len()
    ));
    assert!(loaded > BOUND, "loaded more than the cache holds");
    assert!(host.log_contains("evicted unused artifacts from the cache"));
    Ok(())
}
