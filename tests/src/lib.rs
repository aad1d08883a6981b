//! Harness for the end-to-end suites: starts the real binaries on loopback ports, talks real HTTP.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub mod cli;
pub mod cluster;
pub mod examples;
pub mod hostile;
pub mod nats;
pub mod realnode;

/// A binary of this workspace, built by `cargo test` next to the test executables.
pub fn binary(name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(format!(
        "WASMLESS_BIN_{}",
        name.replace('-', "_").to_uppercase()
    )) {
        return p.into();
    }
    let exe = std::env::current_exe().expect("the test binary has a path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(name))
        .expect("tests run from target/<profile>/deps")
}

/// The repository's `functions/` directory.
pub fn functions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions")
}

/// Copies the named example manifests (and everything they refer to) into a fresh directory.
pub fn copy_functions(names: &[&str]) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    for name in names {
        let from = functions_dir().join(name);
        std::fs::copy(&from, dir.path().join(name))
            .with_context(|| format!("copy {}", from.display()))?;
    }
    Ok(dir)
}

/// A WAT manifest whose function answers `body` with `text/plain`.
pub fn wat_manifest(namespace: &str, name: &str, body: &str) -> String {
    wat_printing(namespace, name, body, "")
}

/// Where [`wat_printing`]'s response (headers and body) starts in the module's memory.
pub const WAT_RESPONSE_AT: usize = 64;

/// The length of [`wat_printing`]'s response for `body`.
pub fn wat_response_len(body: &str) -> usize {
    "Content-Type: text/plain\n\n".len() + body.len()
}

/// A WAT manifest whose function runs the instructions `first`, then writes its memory from
/// [`WAT_RESPONSE_AT`], where its data puts a `text/plain` response of `body`.
pub fn wat_printing(namespace: &str, name: &str, body: &str, first: &str) -> String {
    let out = format!("Content-Type: text/plain\\n\\n{body}");
    let (at, len) = (WAT_RESPONSE_AT, wat_response_len(body));
    format!(
        r#"apiVersion: wasmless.dev/v1alpha1
kind: Function
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  runtime: wat
  function: |
    (module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const {at}) "{out}")
      (func (export "_start")
        {first}
        (i32.store (i32.const 0) (i32.const {at}))
        (i32.store (i32.const 4) (i32.const {len}))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#
    )
}

/// A running program of ours, killed on drop. Its stderr is echoed (prefixed) and kept.
pub struct Process {
    child: Child,
    log: Arc<Mutex<String>>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Process {
    pub fn spawn(mut command: Command, label: &str) -> anyhow::Result<Self> {
        let mut child = command
            .env("WASMLESS_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {label} (did cargo build the workspace binaries?)"))?;
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().context("stderr")?;
        let (sink, label) = (log.clone(), label.to_string());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{label}] {line}");
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Ok(Self { child, log, lines })
    }

    /// Reads stdout until a line starting with `prefix`; returns the address after it.
    pub fn address(&self, prefix: &str) -> anyhow::Result<SocketAddr> {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(120))
                .with_context(|| format!("no line starting {prefix:?}"))?;
            if let Some(addr) = line.strip_prefix(prefix) {
                return Ok(addr.trim().trim_start_matches("http://").parse()?);
            }
        }
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.lock().map(|l| l.contains(needle)).unwrap_or(false)
    }

    /// Its process id (the benchmarks read its memory in /proc).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The stderr log so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// How many times `needle` appears in the stderr log.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .map(|l| l.matches(needle).count())
            .unwrap_or(0)
    }

    /// Sends a signal (`STOP`, `CONT`, …) without waiting.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{name} failed");
        Ok(())
    }

    /// SIGTERM, then waits (up to 30 s) for the process to exit.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("still running 30 s after SIGTERM")
    }

    /// SIGKILL: no chance to clean up, as after a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A server of ours with a function listener and an admin listener (`wasmless up`,
/// `wasmless-host`).
pub struct Served {
    pub process: Process,
    pub functions: SocketAddr,
    pub admin: SocketAddr,
}

impl Served {
    /// Starts `command`, reads the two addresses it announces as `<program>: …`, and waits for
    /// `/readyz`.
    pub async fn start(command: Command, program: &str) -> anyhow::Result<Self> {
        let served = Self::spawn(command, program)?;
        served.until_ready(program).await?;
        Ok(served)
    }

    /// Waits for `/readyz`.
    pub async fn until_ready(&self, program: &str) -> anyhow::Result<()> {
        let ready = format!("http://{}/readyz", self.admin);
        // Ready comes after the first build of every function: Python and Node components take
        // tens of seconds each to build and compile on 2 cores.
        wait_until(Duration::from_secs(900), || async {
            matches!(client().get(&ready).send().await, Ok(r) if r.status() == 200)
        })
        .await
        .with_context(|| format!("{program} never became ready"))
    }

    /// [`Served::start`] without waiting for `/readyz`.
    pub fn spawn(command: Command, program: &str) -> anyhow::Result<Self> {
        let process = Process::spawn(command, program)?;
        let functions = process.address(&format!("{program}: functions on "))?;
        let admin = process.address(&format!("{program}: admin on "))?;
        Ok(Self {
            process,
            functions,
            admin,
        })
    }

    /// A request to the function listener with the given Host header.
    pub fn request(
        &self,
        method: reqwest::Method,
        host: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        client()
            .request(method, format!("http://{}{}", self.functions, path))
            .header("host", host)
    }

    pub async fn get(&self, host: &str, path: &str) -> anyhow::Result<(u16, String)> {
        let r = self
            .request(reqwest::Method::GET, host, path)
            .send()
            .await?;
        Ok((r.status().as_u16(), r.text().await?))
    }

    pub async fn admin_get(&self, path: &str) -> anyhow::Result<String> {
        let (status, body) = self.admin_get_with(path, None).await?;
        if !(200..300).contains(&status) {
            bail!("admin {path}: {status}");
        }
        Ok(body)
    }

    /// A GET of the admin listener, with `token` as a bearer token when given: its status and
    /// body.
    pub async fn admin_get_with(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        let mut request = client().get(format!("http://{}{}", self.admin, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let r = request.send().await?;
        Ok((r.status().as_u16(), r.text().await?))
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.process.log_contains(needle)
    }
}

/// A running `wasmless up` with its own artifact store (or one it is given).
pub struct Up {
    served: Served,
    _store: Option<tempfile::TempDir>,
}

impl std::ops::Deref for Up {
    type Target = Served;
    fn deref(&self) -> &Served {
        &self.served
    }
}

impl Up {
    pub async fn start(dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let up = Self::starting(dir, extra)?;
        up.until_ready("wasmless up").await?;
        Ok(up)
    }

    /// [`Up::start`] without waiting for `/readyz`: functions answer as their builds end.
    pub fn starting(dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let store = tempfile::tempdir()?;
        Ok(Self {
            served: Served::spawn(Self::command(dir, store.path(), extra), "wasmless up")?,
            _store: Some(store),
        })
    }

    /// [`Up::start`] with the artifact store `store`, which outlives it.
    pub async fn start_with_store(
        dir: &Path,
        store: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let up = Self {
            served: Served::spawn(Self::command(dir, store, extra), "wasmless up")?,
            _store: None,
        };
        up.until_ready("wasmless up").await?;
        Ok(up)
    }

    /// `wasmless up` over `dir` with `store`, on free loopback ports.
    pub fn command(dir: &Path, store: &Path, extra: &[&str]) -> Command {
        let mut command = Command::new(binary("wasmless"));
        command
            .arg("up")
            .arg("--dir")
            .arg(dir)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--store",
            ])
            .arg(store)
            .args(extra);
        command
    }

    /// The phase and message `/status` reports for a function.
    pub async fn phase(&self, namespace: &str, name: &str) -> Option<(String, String)> {
        let text = self.admin_get("/status").await.ok()?;
        let all: Vec<serde_json::Value> = serde_json::from_str(&text).ok()?;
        all.into_iter()
            .find(|s| s["namespace"] == namespace && s["name"] == name)
            .map(|s| {
                (
                    s["phase"].as_str().unwrap_or_default().to_string(),
                    s["message"].as_str().unwrap_or_default().to_string(),
                )
            })
    }
}

/// Every regular file under `dir` with its size (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.metadata() {
            Ok(m) if m.is_dir() => out.extend(files_under(&path)),
            Ok(m) if m.is_file() => out.push((path, m.len())),
            _ => {}
        }
    }
    out
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a plain HTTP client builds")
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("condition not met within {limit:?}")
}

/// Reads one sample from Prometheus text, e.g. `function_calls_total{namespace="test",...}`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// Prints a line past the test harness's output capture, so figures show in every run.
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A non-loopback IPv4 address of this machine: the API server refuses to proxy to loopback.
pub fn local_ip() -> Option<String> {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .map(str::to_string)
}
