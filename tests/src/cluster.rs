//! A real Kubernetes control plane for the end-to-end suites: etcd, kube-apiserver and
//! kube-controller-manager (garbage collection of owned objects needs it), built from the Go
//! module proxy by `scripts/k8s-binaries.sh`, on loopback ports, with a kubeconfig for the real
//! `kubectl` and for our binaries.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{Process, Served, binary, wait_until};

pub struct Cluster {
    dir: tempfile::TempDir,
    children: Vec<Child>,
    pub kubeconfig: PathBuf,
    /// The `wasmless-builder` every controller of this cluster sends builds to (started with
    /// the first controller), and its URL.
    builder: std::sync::Mutex<Option<(Process, String)>>,
}

/// Limits of the suites' builder: generous for real builds (a timeout of
/// [`BUILD_TIMEOUT_SECONDS`] unless a test asks for less), small enough that a runaway one stops
/// soon.
const BUILDER_LIMITS: &[&str] = &["--build-cpu", "240", "--build-memory", "2Gi"];
const BUILD_TIMEOUT_SECONDS: u64 = 300;

/// The directory with etcd, kube-apiserver and kube-controller-manager, and with `node` also
/// the node's binaries, kubectl and helm (`scripts/k8s-binaries.sh`: built once, cached).
/// `scripts/test.sh` passes it in `WASMLESS_K8S_BIN`, with everything.
pub fn k8s_binaries(node: bool) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WASMLESS_K8S_BIN") {
        return Ok(dir.into());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/k8s-binaries.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(node.then_some("--node"))
        .stderr(Stdio::inherit())
        .output()
        .context("run scripts/k8s-binaries.sh")?;
    if !out.status.success() {
        bail!("scripts/k8s-binaries.sh failed");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .last()
        .context("k8s-binaries.sh printed nothing")?;
    Ok(PathBuf::from(last.trim()))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

const TOKEN: &str = "wasmless-e2e-admin-token";
/// What the controllers' artifact servers and the hosts' admin data require here.
pub const INTERNAL_TOKEN: &str = "wasmless-e2e-internal-token";

/// Controller flags for suites whose hosts are processes, not pods ([`Cluster::host`]): the
/// controller has no host pod to ask whether it serves a Function, so Ready means built.
pub const HOSTS_NOT_PODS: &[&str] = &["--ready-when", "built"];

impl Cluster {
    pub async fn start() -> anyhow::Result<Self> {
        let started = Instant::now();
        let bin = k8s_binaries(false)?;
        let dir = tempfile::tempdir()?;
        let d = dir.path().to_path_buf();
        let log = |name: &str| -> anyhow::Result<Stdio> {
            Ok(std::fs::File::options()
                .create(true)
                .append(true)
                .open(d.join(format!("{name}.log")))?
                .into())
        };
        let mut children = Vec::new();

        let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        children.push(
            Command::new(bin.join("etcd"))
                .args(["--name", "e2e", "--data-dir"])
                .arg(d.join("etcd"))
                .args([
                    "--listen-client-urls",
                    &etcd_url,
                    "--advertise-client-urls",
                    &etcd_url,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer_url,
                    "--initial-advertise-peer-urls",
                    &peer_url,
                ])
                .args(["--initial-cluster", &format!("e2e={peer_url}")])
                .args(["--unsafe-no-fsync", "--log-level", "warn"])
                .stdout(log("etcd")?)
                .stderr(log("etcd")?)
                .spawn()
                .context("start etcd")?,
        );

        let status = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(d.join("sa.key"))
            .arg("2048")
            .stderr(Stdio::null())
            .status()
            .context("openssl genrsa (Debian package openssl)")?;
        if !status.success() {
            bail!("openssl genrsa failed");
        }
        std::fs::write(
            d.join("tokens.csv"),
            format!("{TOKEN},admin,admin,system:masters\n"),
        )?;
        let sa_key = d.join("sa.key");
        children.push(
            Command::new(bin.join("kube-apiserver"))
                .args(["--etcd-servers", &etcd_url])
                .args([
                    "--bind-address",
                    "127.0.0.1",
                    "--advertise-address",
                    "127.0.0.1",
                ])
                .args(["--secure-port", &api_port.to_string()])
                .arg("--cert-dir")
                .arg(d.join("certs"))
                .arg("--token-auth-file")
                .arg(d.join("tokens.csv"))
                .args(["--authorization-mode", "RBAC"])
                .args(["--service-account-issuer", "https://kubernetes.default.svc"])
                .arg("--service-account-key-file")
                .arg(&sa_key)
                .arg("--service-account-signing-key-file")
                .arg(&sa_key)
                .args(["--service-cluster-ip-range", "10.96.0.0/16"])
                .args([
                    "--enable-priority-and-fairness=false",
                    "--endpoint-reconciler-type=none",
                    "--v=1",
                ])
                .stdout(log("kube-apiserver")?)
                .stderr(log("kube-apiserver")?)
                .spawn()
                .context("start kube-apiserver")?,
        );

        let kubeconfig = d.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: https://127.0.0.1:{api_port}\n    insecure-skip-tls-verify: true\nusers:\n- name: admin\n  user:\n    token: {TOKEN}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: admin, namespace: default}}\ncurrent-context: e2e\n"
            ),
        )?;
        let mut cluster = Self {
            dir,
            children,
            kubeconfig,
            builder: std::sync::Mutex::new(None),
        };
        wait_until(Duration::from_secs(90), || async {
            cluster
                .kubectl(&["get", "--raw", "/readyz"])
                .is_ok_and(|o| o.trim() == "ok")
        })
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "kube-apiserver never became ready ({e}):\n{}",
                cluster.log_tail("kube-apiserver")
            )
        })?;

        let kcm = Command::new(bin.join("kube-controller-manager"))
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args([
                "--leader-elect=false",
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                "0",
            ])
            .args([
                "--controllers",
                // endpoint, endpointslice: for Services with a selector (Metacontroller mode's);
                // the native controller writes its Services' Endpoints and EndpointSlices itself.
                "garbagecollector,namespace,endpoint,endpointslice,serviceaccount",
            ])
            .arg("--service-account-private-key-file")
            .arg(cluster.dir.path().join("sa.key"))
            .args(["--use-service-account-credentials=false", "--v=1"])
            .stdout(log("kube-controller-manager")?)
            .stderr(log("kube-controller-manager")?)
            .spawn()
            .context("start kube-controller-manager")?;
        cluster.children.push(kcm);
        crate::report(&format!(
            "cluster: etcd, kube-apiserver, kube-controller-manager up in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        Ok(cluster)
    }

    /// A control plane with the chart's CRDs (Function, HTTPTrigger, CronJobTrigger, NATSTrigger)
    /// established and the namespace `test`.
    pub async fn with_functions() -> anyhow::Result<Self> {
        let cluster = Self::start().await?;
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/wasmless/crds");
        for (file, crd) in [
            ("functions.yaml", "crd/functions.wasmless.dev"),
            ("httptriggers.yaml", "crd/httptriggers.wasmless.dev"),
            ("cronjobtriggers.yaml", "crd/cronjobtriggers.wasmless.dev"),
            ("natstriggers.yaml", "crd/natstriggers.wasmless.dev"),
        ] {
            cluster.apply(&std::fs::read_to_string(crds.join(file))?)?;
            // Polled rather than `kubectl wait`, which can fail on a CRD that has no conditions
            // yet.
            crate::wait_until(Duration::from_secs(60), || async {
                cluster
                    .kubectl(&[
                        "get",
                        crd,
                        "-o",
                        r#"jsonpath={.status.conditions[?(@.type=="Established")].status}"#,
                    ])
                    .is_ok_and(|status| status.trim() == "True")
            })
            .await
            .with_context(|| format!("{crd} never became established"))?;
        }
        cluster.kubectl(&["create", "namespace", "test"])?;
        Ok(cluster)
    }

    /// The token file the controllers' artifact servers and the hosts share (the chart's
    /// `<release>-token` Secret), written on first use.
    pub fn token_file(&self) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join("token");
        if !path.exists() {
            std::fs::write(&path, format!("{INTERNAL_TOKEN}\n"))?;
        }
        Ok(path)
    }

    /// The token file the builder and the controllers share.
    pub fn builder_token_file(&self) -> PathBuf {
        self.dir.path().join("builder-token")
    }

    /// The builder's URL, starting it on first use.
    pub fn builder(&self) -> anyhow::Result<String> {
        self.builder_with_timeout(BUILD_TIMEOUT_SECONDS)
    }

    /// The builder's URL, starting it with a build timeout of `seconds` if it has not started
    /// yet (the first call decides: call this before the first controller).
    pub fn builder_with_timeout(&self, seconds: u64) -> anyhow::Result<String> {
        let mut builder = self
            .builder
            .lock()
            .map_err(|_| anyhow::anyhow!("builder lock poisoned"))?;
        if let Some((_, url)) = builder.as_ref() {
            return Ok(url.clone());
        }
        let token = self.builder_token_file();
        std::fs::write(
            &token,
            format!("e2e-builder-token-{}\n", std::process::id()),
        )?;
        let mut command = Command::new(binary("wasmless-builder"));
        command
            .args(["--listen", "127.0.0.1:0", "--token-file"])
            .arg(&token)
            .arg("--state")
            .arg(self.dir.path().join("builder-state"))
            .arg("--scratch")
            .arg(self.dir.path().join("builder-scratch"))
            .args(BUILDER_LIMITS)
            .arg("--build-timeout")
            .arg(seconds.to_string());
        let process = Process::spawn(command, "builder")?;
        let url = format!(
            "http://{}",
            process.address("wasmless-builder: builds on ")?
        );
        *builder = Some((process, url.clone()));
        Ok(url)
    }

    /// Whether the builder's log has `needle`.
    pub fn builder_log_contains(&self, needle: &str) -> bool {
        self.builder
            .lock()
            .ok()
            .and_then(|b| b.as_ref().map(|(p, _)| p.log_contains(needle)))
            .unwrap_or(false)
    }

    /// `wasmless-controller` against this cluster (extra flags such as `--mode`), sending builds
    /// to [`Cluster::builder`]; returns the process and the base URL of its artifact server.
    pub fn controller(&self, store: &Path, extra: &[&str]) -> anyhow::Result<(Process, String)> {
        self.controller_on("127.0.0.1:0", store, extra)
    }

    /// [`Cluster::controller`] with its artifact server on `listen` (a port a restarted
    /// controller takes again).
    pub fn controller_on(
        &self,
        listen: &str,
        store: &Path,
        extra: &[&str],
    ) -> anyhow::Result<(Process, String)> {
        let builder = self.builder()?;
        let mut command = Command::new(binary("wasmless-controller"));
        command
            .args(["--listen", listen, "--store"])
            .arg(store)
            .args(["--builder-url", &builder, "--builder-token-file"])
            .arg(self.builder_token_file())
            .arg("--token-file")
            .arg(self.token_file()?)
            .args(extra)
            .env("KUBECONFIG", &self.kubeconfig);
        let process = Process::spawn(command, "controller")?;
        let addr = process.address("wasmless-controller: artifacts on ")?;
        Ok((process, format!("http://{addr}")))
    }

    /// `wasmless-host` watching this cluster, fetching from `artifacts`, caching in `cache`.
    pub async fn host(&self, artifacts: &str, cache: &Path) -> anyhow::Result<Served> {
        self.host_with(artifacts, cache, "127.0.0.1", &[]).await
    }

    /// `wasmless-host` as [`Cluster::host`], listening on `ip` (free ports): an address the API
    /// server will proxy to, unlike loopback; with `--path-routing`, since its proxies reach
    /// functions by path.
    pub async fn host_on(&self, artifacts: &str, cache: &Path, ip: &str) -> anyhow::Result<Served> {
        self.host_with(artifacts, cache, ip, &["--path-routing"])
            .await
    }

    /// `wasmless-host` as [`Cluster::host_on`], with `extra` flags.
    pub async fn host_with(
        &self,
        artifacts: &str,
        cache: &Path,
        ip: &str,
        extra: &[&str],
    ) -> anyhow::Result<Served> {
        let command = self.host_command(artifacts, cache, ip, extra)?;
        Served::start(command, "wasmless-host").await
    }

    /// [`Cluster::host_with`] without waiting for `/readyz` (on loopback).
    pub fn host_starting(
        &self,
        artifacts: &str,
        cache: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Served> {
        let command = self.host_command(artifacts, cache, "127.0.0.1", extra)?;
        Served::spawn(command, "wasmless-host")
    }

    fn host_command(
        &self,
        artifacts: &str,
        cache: &Path,
        ip: &str,
        extra: &[&str],
    ) -> anyhow::Result<Command> {
        let any = format!("{ip}:0");
        let mut command = Command::new(binary("wasmless-host"));
        command
            .args([
                "--listen",
                &any,
                "--admin",
                &any,
                "--artifacts-url",
                artifacts,
                "--cache",
            ])
            .arg(cache)
            .arg("--token-file")
            .arg(self.token_file()?)
            .args(extra)
            .env("KUBECONFIG", &self.kubeconfig);
        Ok(command)
    }

    /// Plays the kubelet for a host running outside the cluster: a Node, and a Running, Ready
    /// Pod labelled `app.kubernetes.io/name=wasmless-host` in `namespace` at `served`'s IP, whose
    /// container ports `functions` and `admin` are the host's. Functions' Services then
    /// get endpoints, and the API server's service proxy (for Services in `namespace`) and pods
    /// proxy reach the host.
    pub async fn host_pod(
        &self,
        namespace: &str,
        name: &str,
        served: &Served,
    ) -> anyhow::Result<()> {
        let ip = served.functions.ip().to_string();
        self.apply("apiVersion: v1\nkind: Node\nmetadata: {name: e2e-node}\n")?;
        // Pod admission wants the namespace's default ServiceAccount, which kcm makes.
        wait_until(Duration::from_secs(60), || async {
            self.kubectl(&["get", "serviceaccount", "default", "-n", namespace])
                .is_ok()
        })
        .await?;
        // The CLI reads the hosts' token from the Secret the pod's annotation names, as in the
        // chart.
        self.apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: wasmless-token, namespace: {namespace}}}\nstringData: {{token: {INTERNAL_TOKEN}}}\n"
        ))?;
        self.apply(&format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{app.kubernetes.io/name: wasmless-host}}
  annotations: {{wasmless.dev/token-secret: wasmless-token}}
spec:
  nodeName: e2e-node
  automountServiceAccountToken: false
  containers:
  - name: host
    image: wasmless-host
    ports:
    - {{name: functions, containerPort: {functions}}}
    - {{name: admin, containerPort: {admin}}}
"#,
            functions = served.functions.port(),
            admin = served.admin.port()
        ))?;
        self.patch_pod_status(
            namespace,
            name,
            &format!(
                r#"{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"hostIP":"{ip}","conditions":[{{"type":"Ready","status":"True"}}]}}"#
            ),
        )
    }

    /// Sets the Ready condition of a pod [`Cluster::host_pod`] made, as a kubelet would when its
    /// readiness probe starts failing or passes again.
    pub fn pod_ready(&self, namespace: &str, name: &str, ready: bool) -> anyhow::Result<()> {
        let status = if ready { "True" } else { "False" };
        self.patch_pod_status(
            namespace,
            name,
            &format!(r#"{{"conditions":[{{"type":"Ready","status":"{status}"}}]}}"#),
        )
    }

    /// Merges `status` (JSON) into a pod's status, as the kubelet writes it.
    pub fn patch_pod_status(
        &self,
        namespace: &str,
        name: &str,
        status: &str,
    ) -> anyhow::Result<()> {
        self.kubectl(&[
            "patch",
            "pod",
            name,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!(r#"{{"status":{status}}}"#),
        ])?;
        Ok(())
    }

    /// The phase of Function `name` in namespace `test` ("" when unknown).
    pub fn phase(&self, name: &str) -> String {
        phase_at(&self.kubeconfig, name)
    }

    /// Fields of Function `name` in `test`, through a kubectl jsonpath `template`.
    pub fn function_field(&self, name: &str, template: &str) -> anyhow::Result<String> {
        function_field_at(&self.kubeconfig, name, template)
    }

    /// Runs the real `kubectl` against this cluster; its stdout, or an error with its stderr.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        kubectl_at(&self.kubeconfig, args)
    }

    /// `kubectl apply -f -` with `yaml` on stdin.
    pub fn apply(&self, yaml: &str) -> anyhow::Result<String> {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(yaml.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kubectl apply: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// [`Cluster::phase`] for code that holds only the kubeconfig (a thread polling beside a test).
pub fn phase_at(kubeconfig: &Path, name: &str) -> String {
    function_field_at(kubeconfig, name, "{.status.phase}").unwrap_or_default()
}

/// `kubectl get fn NAME -n test -o jsonpath=TEMPLATE`.
pub fn function_field_at(kubeconfig: &Path, name: &str, template: &str) -> anyhow::Result<String> {
    kubectl_at(
        kubeconfig,
        &[
            "get",
            "fn",
            name,
            "-n",
            "test",
            "-o",
            &format!("jsonpath={template}"),
        ],
    )
}

/// [`Cluster::kubectl`] for code that holds only the kubeconfig.
pub fn kubectl_at(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .context("run kubectl")?;
    if !out.status.success() {
        bail!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
