//! A real single-node Kubernetes for the real-node suite: `tests/realnode/up.sh` starts etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet, kube-proxy and
//! CoreDNS (binaries from `scripts/k8s-binaries.sh --node`), and dropping a [`RealNode`] runs
//! `tests/realnode/down.sh`, which stops them and undoes every host change.
//!
//! The node's names (bridge, device, iptables chain) are host-wide, so only one runs at a time:
//! the suite that uses it is one test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cluster::k8s_binaries;

/// The image every test pod runs (Debian's busybox-static, built by up.sh).
pub const BUSYBOX: &str = "localhost/realnode/busybox:1.35";

pub struct RealNode {
    dir: PathBuf,
    bin: PathBuf,
    pub kubeconfig: PathBuf,
}

fn harness(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("realnode")
        .join(script)
}

impl RealNode {
    /// Starts the node (up.sh prints its timings) and waits for CoreDNS.
    pub fn start() -> anyhow::Result<Self> {
        let bin = k8s_binaries(true)?;
        let dir = std::env::temp_dir().join(format!("wasmless-realnode-{}", std::process::id()));
        let node = Self {
            kubeconfig: dir.join("kubeconfig"),
            dir,
            bin,
        };
        let status = Command::new("bash")
            .arg(harness("up.sh"))
            .arg(&node.dir)
            .env("WASMLESS_K8S_BIN", &node.bin)
            .status()
            .context("run tests/realnode/up.sh")?;
        if !status.success() {
            bail!(
                "tests/realnode/up.sh failed ({status}); logs in {}",
                node.dir.display()
            );
        }
        Ok(node)
    }

    /// A path inside the node's directory (removed with the node).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A binary built by `scripts/k8s-binaries.sh --node` (kubectl, helm, crictl, ...).
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// Runs kubectl (v1.35, built with the node) against the node: stdout, or an error with stderr.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.kubectl_with(args, None)
    }

    /// `kubectl apply -f -` with `yaml` on stdin.
    pub fn apply(&self, yaml: &str) -> anyhow::Result<String> {
        self.kubectl_with(&["apply", "-f", "-"], Some(yaml))
    }

    fn kubectl_with(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let mut command = self.command("kubectl");
        command.args(args);
        run(command, stdin).with_context(|| format!("kubectl {}", args.join(" ")))
    }

    pub fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = self.command("helm");
        command.args(args);
        run(command, None).with_context(|| format!("helm {}", args.join(" ")))
    }

    /// kubectl or helm with this node's kubeconfig, and kubectl's cache inside the node's dir.
    pub fn command(&self, tool: &str) -> Command {
        let mut command = Command::new(self.tool(tool));
        command.env("KUBECONFIG", &self.kubeconfig);
        if tool == "kubectl" {
            command.arg("--cache-dir").arg(self.dir.join("kube-cache"));
        } else {
            // helm keeps its caches under $HOME by default: inside the node's dir instead.
            for (var, sub) in [
                ("HELM_CACHE_HOME", "helm/cache"),
                ("HELM_CONFIG_HOME", "helm/config"),
                ("HELM_DATA_HOME", "helm/data"),
            ] {
                command.env(var, self.dir.join(sub));
            }
        }
        command
    }

    /// Imports an OCI archive into the node's containerd (namespace k8s.io, where kubelet looks).
    pub fn import_image(&self, archive: &Path) -> anyhow::Result<()> {
        let mut command = self.ctr();
        command.args(["images", "import"]).arg(archive);
        run(command, None).with_context(|| format!("ctr images import {}", archive.display()))?;
        Ok(())
    }

    /// Gives an imported image another name (e.g. the Docker Hub name an example's pod asks
    /// for), so that kubelet finds it without pulling.
    pub fn tag_image(&self, image: &str, name: &str) -> anyhow::Result<()> {
        let mut command = self.ctr();
        command.args(["images", "tag", "--force", image, name]);
        run(command, None).with_context(|| format!("ctr images tag {image} {name}"))?;
        Ok(())
    }

    /// containerd's `ctr` on the node's containerd, in the namespace kubelet uses.
    fn ctr(&self) -> Command {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(self.dir.join("containerd/containerd.sock"))
            .args(["--namespace", "k8s.io"]);
        command
    }

    /// `kubectl exec POD -- sh -c SCRIPT` in namespace `default`.
    pub fn sh(&self, pod: &str, script: &str) -> anyhow::Result<String> {
        self.kubectl(&["exec", pod, "--", "sh", "-c", script])
    }

    /// [`RealNode::sh`] with `input` on the script's stdin.
    pub fn sh_with_input(&self, pod: &str, script: &str, input: &str) -> anyhow::Result<String> {
        self.kubectl_with(&["exec", "-i", pod, "--", "sh", "-c", script], Some(input))
    }

    /// [`RealNode::sh`] in the background: the caller waits for it with [`Child::wait_with_output`].
    pub fn sh_background(&self, pod: &str, script: &str) -> anyhow::Result<Child> {
        let mut command = self.command("kubectl");
        command
            .args(["exec", pod, "--", "sh", "-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.spawn().context("kubectl exec")
    }

    /// A busybox pod in `default` that sleeps, for running clients inside the cluster.
    pub fn client_pod(&self, name: &str) -> anyhow::Result<()> {
        self.apply(&format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: client
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: [sleep, "3600"]
"#
        ))?;
        self.kubectl(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{name}"),
            "--timeout=120s",
        ])?;
        Ok(())
    }

    /// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
    pub fn poll<T>(
        &self,
        what: &str,
        limit: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> anyhow::Result<T> {
        let start = Instant::now();
        loop {
            if let Some(v) = check() {
                return Ok(v);
            }
            if start.elapsed() > limit {
                bail!("timed out after {limit:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What a failing test needs to see: every pod, recent events, the wasmless pods' logs.
    pub fn dump(&self, namespace: &str) {
        for args in [
            vec!["get", "pods", "-A", "-o", "wide"],
            vec!["get", "events", "-A", "--sort-by=.lastTimestamp"],
            vec!["get", "fn", "-A", "-o", "yaml"],
        ] {
            eprintln!("---- kubectl {}", args.join(" "));
            eprintln!(
                "{}",
                self.kubectl(&args).unwrap_or_else(|e| format!("{e:#}"))
            );
        }
        let pods = self
            .kubectl(&["get", "pods", "-n", namespace, "-o", "name"])
            .unwrap_or_default();
        for pod in pods.lines() {
            eprintln!("---- logs of {namespace}/{pod}");
            eprintln!(
                "{}",
                self.kubectl(&["logs", "-n", namespace, pod, "--tail=40"])
                    .unwrap_or_else(|e| format!("{e:#}"))
            );
        }
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        let status = Command::new("bash")
            .arg(harness("down.sh"))
            .arg("--purge")
            .arg(&self.dir)
            .env("WASMLESS_K8S_BIN", &self.bin)
            .stdout(Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("tests/realnode/down.sh {}: {status:?}", self.dir.display());
        }
    }
}

/// Runs `command` with `stdin`: its stdout, or an error with its stderr.
fn run(mut command: Command, stdin: Option<&str>) -> anyhow::Result<String> {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
