//! wasmless installed on a real node (kubelet, containerd, kube-proxy, CoreDNS: see
//! `tests/realnode/`), the way a user installs it: images from `scripts/images.sh` imported into
//! containerd, `helm install` of `charts/wasmless`, `kubectl apply` of a Function, and a client
//! pod calling `http://<name>.<namespace>:8080` through cluster DNS and kube-proxy.
//!
//! One test: the node's bridge, device and iptables chain are host-wide, so it cannot run twice
//! at once, and starting it costs ~15 s.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use wasmless_e2e::realnode::{BUSYBOX, RealNode};
use wasmless_e2e::{functions_dir, report};

/// The release's namespace and name, and so the names of what the chart makes.
const NS: &str = "wasmless-system";
const RELEASE: &str = "wasmless";
const HOSTS: &str = "deployment/wasmless-host";
const HELLO_URL: &str = "http://hello-world.test:8080/";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `scripts/images.sh` with the debug binaries `scripts/test.sh` built (a release build would add
/// ~10 minutes to CI); returns (image, archive) pairs.
fn build_images() -> anyhow::Result<Vec<(String, PathBuf)>> {
    let out = Command::new("bash")
        .arg(repo().join("scripts/images.sh"))
        .args(["--profile", "debug", "--skip-build", "--builder"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("run scripts/images.sh")?;
    if !out.status.success() {
        bail!("scripts/images.sh failed ({})", out.status);
    }
    let images: Vec<(String, PathBuf)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(image, archive)| (image.to_string(), PathBuf::from(archive)))
        .collect();
    if images.len() < 3 {
        bail!(
            "scripts/images.sh printed {images:?}, expected an image and archive per line for the host, controller and builder"
        );
    }
    Ok(images)
}

#[test]
fn wasmless_installed_with_helm_on_a_real_node() -> anyhow::Result<()> {
    let images = build_images()?;
    let node = RealNode::start()?;
    let result = scenario(&node, &images);
    if result.is_err() {
        node.dump(NS);
    }
    result
}

fn scenario(node: &RealNode, images: &[(String, PathBuf)]) -> anyhow::Result<()> {
    let chart = repo().join("charts/wasmless");
    let chart = chart.to_str().context("chart path")?;

    let lint = node.helm(&["lint", "--strict", chart])?;
    assert!(lint.contains("0 chart(s) failed"), "helm lint: {lint}");

    let mut archives: Vec<&PathBuf> = images.iter().map(|(_, archive)| archive).collect();
    archives.dedup(); // one archive holds both tags of an image
    for archive in archives {
        node.import_image(archive)?;
    }
    let tag = image_tag(images)?;

    // The artifact store: a PersistentVolume on the node's disk (no provisioner here), which
    // the chart's claim binds through its storage class.
    let store = node_dir(node, "store")?;
    node.apply(&format!(
        r#"apiVersion: v1
kind: PersistentVolume
metadata: {{name: wasmless-store}}
spec:
  capacity: {{storage: 10Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: wasmless-test
  persistentVolumeReclaimPolicy: Retain
  hostPath: {{path: {store}, type: Directory}}
"#,
        store = store.display()
    ))?;

    let started = Instant::now();
    node.helm(&[
        "install",
        RELEASE,
        chart,
        "--namespace",
        NS,
        "--create-namespace",
        "--set",
        &format!("image.tag={tag}"),
        "--set",
        "image.pullPolicy=Never",
        "--set",
        "store.storageClassName=wasmless-test",
        "--wait",
        "--timeout",
        "5m",
    ])?;
    node.kubectl(&[
        "wait",
        "-n",
        NS,
        "--for=condition=Ready",
        "pods",
        "--all",
        "--timeout=120s",
    ])?;
    let pods = node.kubectl(&["get", "pods", "-n", NS, "-o", "name"])?;
    assert_eq!(
        pods.lines().count(),
        5,
        "2 controllers, 2 hosts and a builder: {pods}"
    );
    report(&format!(
        "timing: helm install → every pod Ready {:.1} s",
        started.elapsed().as_secs_f64()
    ));

    node.client_pod("client")?;
    node.kubectl(&["create", "namespace", "test"])?;
    hello_world_by_dns(node)?;
    triggers_from_the_controller_pod(node)?;
    rolling_restart_loses_nothing(node)?;
    force_deleted_host(node)?;
    rbac_is_least_privilege(node)?;
    source_runtimes_by_dns(node)?;
    seed_example(node)?;
    Ok(())
}

/// The tag the chart should run: the archives' `<version>-<commit>` one.
fn image_tag(images: &[(String, PathBuf)]) -> anyhow::Result<String> {
    images
        .iter()
        .filter_map(|(image, _)| image.rsplit_once(':').map(|(_, tag)| tag))
        .find(|tag| tag.contains('-'))
        .or_else(|| images[0].0.rsplit_once(':').map(|(_, tag)| tag))
        .map(str::to_string)
        .context("no image tag")
}

/// A directory for a hostPath volume, writable by the images' user (65532); down.sh removes it.
fn node_dir(node: &RealNode, name: &str) -> anyhow::Result<PathBuf> {
    let dir = node.path(name);
    std::fs::create_dir_all(&dir)?;
    let status = Command::new("chown")
        .arg("65532:65532")
        .arg(&dir)
        .status()?;
    if !status.success() {
        bail!("chown {}", dir.display());
    }
    Ok(dir)
}

/// Seconds since boot: the same clock on the node and in its pods (`/proc/uptime`, 10 ms steps),
/// so a pod can timestamp what it saw against what the test did.
fn uptime(text: &str) -> anyhow::Result<f64> {
    text.split_whitespace()
        .next()
        .context("empty /proc/uptime")?
        .parse()
        .context("/proc/uptime")
}

/// Applies `manifest` and times, on the pods' clock, its first 200 with `body` from the client
/// pod at `url`: through CoreDNS (`<name>.<namespace>` via the pod's search path) and kube-proxy
/// (the per-function Service's endpoints, written by the controller). Reports it as `what`.
fn apply_to_first_200(
    node: &RealNode,
    what: &str,
    manifest: &str,
    url: &str,
    body: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    let started = uptime(&std::fs::read_to_string("/proc/uptime")?)?;
    node.apply(manifest)?;
    let applied = uptime(&std::fs::read_to_string("/proc/uptime")?)? - started;
    // The client starts asking when apply returns, every 50 ms; each answer that is not the body
    // is a miss (no Service yet: NXDOMAIN; no endpoints yet: refused). It prints when it started
    // and when it got the body.
    let tries = limit.as_millis() / 50;
    let out = node.sh(
        "client",
        &format!(
            "cat /proc/uptime; n=0; until [ \"$(timeout 5 wget -qO- {url} 2>/dev/null)\" = '{body}' ]; do \
             n=$((n+1)); [ $n -lt {tries} ] || exit 1; usleep 50000; done; cat /proc/uptime; echo misses=$n"
        ),
    )?;
    let lines: Vec<&str> = out.lines().collect();
    let (asked, answered) = match lines.as_slice() {
        [asked, answered, _] => (uptime(asked)? - started, uptime(answered)? - started),
        _ => bail!("unexpected output of the client: {out:?}"),
    };
    report(&format!(
        "timing: {what} through cluster DNS: kubectl apply returned {:.0} ms, the client in its pod started asking at {:.0} ms (kubectl exec), first 200 at {:.0} ms ({})",
        applied * 1e3,
        asked * 1e3,
        answered * 1e3,
        lines[2]
    ));
    Ok(())
}

/// apply → the first 200 of the WAT hello-world from a pod, then its status and long name.
fn hello_world_by_dns(node: &RealNode) -> anyhow::Result<()> {
    let hello = std::fs::read_to_string(functions_dir().join("hello-world.yaml"))?;
    apply_to_first_200(
        node,
        "WAT hello-world",
        &hello,
        HELLO_URL,
        "hello world",
        Duration::from_secs(60),
    )?;
    let body = node.sh("client", &format!("wget -qO- {HELLO_URL}"))?;
    assert_eq!(body, "hello world");
    // Ready in status means both host pods serve the artifact: the controller asked them.
    let ready = node.poll(
        "hello-world Ready on both hosts",
        Duration::from_secs(30),
        || {
            in_test(
                node,
                "fn",
                "hello-world",
                r#"jsonpath={.status.phase} {.status.conditions[?(@.type=="Ready")].message}"#,
            )
            .ok()
            .filter(|s| s.starts_with("Ready 2/2 ready hosts serve sha256:"))
        },
    )?;
    report(&format!("status: {ready}"));
    // The long Service names resolve too.
    let body = node.sh(
        "client",
        "wget -qO- http://hello-world.test.svc.cluster.local:8080/",
    )?;
    assert_eq!(body, "hello world");
    Ok(())
}

/// The chart's controller, in its pod, invokes a CronJobTrigger's function by its Service's
/// DNS name (the default without `controller.functionsUrl`) and writes the result, and says in
/// a NATSTrigger's status that the chart names no NATS server (its RBAC lets it write there).
fn triggers_from_the_controller_pod(node: &RealNode) -> anyhow::Result<()> {
    node.apply(
        "apiVersion: wasmless.dev/v1alpha1\nkind: CronJobTrigger\nmetadata: {name: every2, namespace: test}\nspec: {function-name: hello-world, schedule: '@every 2s'}\n---\napiVersion: wasmless.dev/v1alpha1\nkind: NATSTrigger\nmetadata: {name: orders, namespace: test}\nspec: {topic: orders, function-name: hello-world}\n",
    )?;
    let answered = node.poll(
        "a cron tick answered through hello-world's Service",
        Duration::from_secs(90),
        || {
            in_test(
                node,
                "cronjobtrigger",
                "every2",
                "jsonpath={.status.lastResult.statusCode} {.status.lastSuccessfulTime}",
            )
            .ok()
            .filter(|s| s.starts_with("200 20"))
        },
    )?;
    let nats = node.poll("the NATSTrigger's status", Duration::from_secs(60), || {
        in_test(
            node,
            "natstrigger",
            "orders",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].reason}"#,
        )
        .ok()
        .filter(|r| !r.is_empty())
    })?;
    assert_eq!(nats, "NATSUnavailable");
    node.kubectl(&[
        "delete",
        "cronjobtrigger/every2",
        "natstrigger/orders",
        "-n",
        "test",
    ])?;
    report(&format!(
        "triggers: a cron tick invoked hello-world by its Service's DNS name from the controller pod ({answered}); a NATSTrigger without a NATS server says {nats}"
    ));
    Ok(())
}

/// A client loop in the `client` pod until /tmp/stop exists: prints `ok=N fail=M`, and keeps
/// each failure's time and wget's words in /tmp/failures.
fn start_loop(node: &RealNode) -> anyhow::Result<std::process::Child> {
    node.sh("client", "rm -f /tmp/stop /tmp/failures")?;
    node.sh_background(
        "client",
        &format!(
            "ok=0; fail=0; while [ ! -e /tmp/stop ]; do \
             out=$(timeout 5 wget -qO- {HELLO_URL} 2>&1); \
             if [ \"$out\" = 'hello world' ]; then ok=$((ok+1)); \
             else fail=$((fail+1)); echo \"$(date +%T) $out\" >>/tmp/failures; fi; \
             done; echo ok=$ok fail=$fail"
        ),
    )
}

/// Stops the loop; returns (ok, failed), and reports the first failures' reasons.
fn stop_loop(node: &RealNode, child: std::process::Child) -> anyhow::Result<(u64, u64)> {
    node.sh("client", "touch /tmp/stop")?;
    let out = child.wait_with_output()?;
    let failures = node.sh("client", "head -n 20 /tmp/failures 2>/dev/null || true")?;
    if !failures.trim().is_empty() {
        report(&format!("the loop's first failures:\n{failures}"));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let count = |key: &str| -> anyhow::Result<u64> {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .with_context(|| format!("no {key} in the loop's output {text:?}"))?
            .parse()
            .context("count")
    };
    Ok((count("ok=")?, count("fail=")?))
}

/// The running host pods that are not being deleted, as "name ip".
fn host_pods(node: &RealNode) -> anyhow::Result<Vec<String>> {
    Ok(node
        .kubectl(&[
            "get",
            "pods",
            "-n",
            NS,
            "-l",
            "app.kubernetes.io/name=wasmless-host",
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.podIP} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ])?
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.len() == 2).then(|| fields.join(" "))
        })
        .collect())
}

/// The ready addresses in hello-world's EndpointSlices, sorted.
fn endpoint_ips(node: &RealNode) -> anyhow::Result<Vec<String>> {
    let out = node.kubectl(&[
        "get",
        "endpointslices",
        "-n",
        "test",
        "-l",
        "kubernetes.io/service-name=hello-world",
        "-o",
        "jsonpath={range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{\"\\n\"}{end}",
    ])?;
    let mut ips: Vec<String> = out.lines().map(str::to_string).collect();
    ips.sort();
    Ok(ips)
}

/// `kubectl rollout restart` of the hosts while a pod loops on a function: nothing fails
/// (maxUnavailable 0, readiness on /readyz, the preStop drain, endpoints without terminating pods).
fn rolling_restart_loses_nothing(node: &RealNode) -> anyhow::Result<()> {
    let before = host_pods(node)?;
    let looping = start_loop(node)?;
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    node.kubectl(&["rollout", "restart", "-n", NS, HOSTS])?;
    node.kubectl(&["rollout", "status", "-n", NS, HOSTS, "--timeout=300s"])?;
    let rolled = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let (ok, failed) = stop_loop(node, looping)?;
    report(&format!(
        "rollout restart of the hosts: {:.1} s, {ok} requests answered, {failed} failed",
        rolled.as_secs_f64()
    ));
    let after = host_pods(node)?;
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "every host pod was replaced: {before:?} → {after:?}"
    );
    assert!(ok > 0, "the loop ran");
    assert_eq!(failed, 0, "a rolling update loses no request");
    Ok(())
}

/// `kubectl delete pod --force` of one host under the same loop: failures are counted (a killed
/// pod loses what it was serving), and the endpoints drop it and take in its replacement.
fn force_deleted_host(node: &RealNode) -> anyhow::Result<()> {
    let hosts = host_pods(node)?;
    let (victim, victim_ip) = hosts
        .first()
        .and_then(|l| l.split_once(' '))
        .context("a running host pod")?;
    let looping = start_loop(node)?;
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    node.kubectl(&[
        "delete",
        "pod",
        "-n",
        NS,
        victim,
        "--force",
        "--grace-period=0",
    ])?;
    let dropped = node.poll(
        "the endpoints to drop the deleted pod",
        Duration::from_secs(30),
        || {
            endpoint_ips(node)
                .ok()
                .filter(|ips| !ips.iter().any(|ip| ip == victim_ip))
                .map(|_| started.elapsed())
        },
    )?;
    let refilled = node.poll(
        "a replacement host in the endpoints",
        Duration::from_secs(120),
        || {
            endpoint_ips(node)
                .ok()
                .filter(|ips| ips.len() == 2)
                .map(|_| started.elapsed())
        },
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let (ok, failed) = stop_loop(node, looping)?;
    report(&format!(
        "force delete of host {victim}: endpoints dropped it after {:.2} s, two ready again after {:.1} s; {ok} requests answered, {failed} failed",
        dropped.as_secs_f64(),
        refilled.as_secs_f64()
    ));
    let body = node.sh("client", &format!("wget -qO- {HELLO_URL}"))?;
    assert_eq!(body, "hello world");
    Ok(())
}

/// The chart's ServiceAccounts can do what the binaries need and nothing else asked here.
fn rbac_is_least_privilege(node: &RealNode) -> anyhow::Result<()> {
    let can = |sa: &str, args: &[&str]| -> anyhow::Result<bool> {
        let who = format!("system:serviceaccount:{NS}:{sa}");
        let mut full = vec!["auth", "can-i", "--as", &who];
        full.extend_from_slice(args);
        // can-i exits 1 for "no": read its answer, not its status.
        let out = node
            .command("kubectl")
            .args(&full)
            .output()
            .context("kubectl auth can-i")?;
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "yes")
    };
    let controller = "wasmless-controller";
    let host = "wasmless-host";
    let builder = "wasmless-builder";
    for (sa, args, expected) in [
        (
            controller,
            &["patch", "functions.wasmless.dev/status", "-n", "test"][..],
            true,
        ),
        (
            controller,
            &["create", "endpointslices.discovery.k8s.io", "-n", "test"],
            true,
        ),
        (controller, &["watch", "pods", "-n", NS], true),
        (
            controller,
            &[
                "patch",
                "natstriggers.wasmless.dev",
                "--subresource",
                "status",
                "-n",
                "test",
            ],
            true,
        ),
        (
            controller,
            &["patch", "natstriggers.wasmless.dev", "-n", "test"],
            false,
        ),
        (controller, &["get", "secrets", "-A"][..], false),
        (controller, &["get", "secrets", "-n", NS], false),
        (controller, &["delete", "pods", "-n", NS], false),
        (controller, &["watch", "pods", "-n", "test"], false),
        (
            controller,
            &["create", "deployments.apps", "-n", "test"],
            false,
        ),
        (
            controller,
            &["delete", "functions.wasmless.dev", "-n", "test"],
            false,
        ),
        (controller, &["*", "*"], false),
        (host, &["watch", "functions.wasmless.dev", "-A"], true),
        (
            host,
            &["patch", "functions.wasmless.dev", "-n", "test"],
            false,
        ),
        (host, &["get", "secrets", "-A"], false),
        (host, &["list", "pods", "-n", NS], false),
        (host, &["delete", "pods", "-n", NS], false),
        // The builder runs tenants' compilers: no API access at all.
        (builder, &["get", "secrets", "-n", NS], false),
        (builder, &["list", "functions.wasmless.dev", "-A"], false),
        (builder, &["get", "pods", "-n", NS], false),
    ] {
        assert_eq!(
            can(sa, args)?,
            expected,
            "kubectl auth can-i --as {sa} {}",
            args.join(" ")
        );
    }
    // ... and not even a token to try with: none is mounted into its pod.
    let mounts = node.kubectl(&[
        "get",
        "pods",
        "-n",
        NS,
        "-l",
        "app.kubernetes.io/name=wasmless-builder",
        "-o",
        "jsonpath={.items[*].spec.automountServiceAccountToken} {.items[*].spec.volumes[*].name}",
    ])?;
    assert!(
        mounts.starts_with("false ") && !mounts.contains("kube-api-access"),
        "the builder pod mounts no service-account token: {mounts}"
    );
    report(
        "rbac: controller, host and builder ServiceAccounts checked with kubectl auth can-i (20 checks); no token in the builder pod",
    );
    Ok(())
}

/// `kubectl get KIND NAME -n test -o OUTPUT`.
fn in_test(node: &RealNode, kind: &str, name: &str, output: &str) -> anyhow::Result<String> {
    node.kubectl(&["get", kind, name, "-n", "test", "-o", output])
}

/// The document of `functions/<dir>/functions.yaml` that defines `name`.
fn example(dir: &str, name: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(functions_dir().join(dir).join("functions.yaml"))?;
    text.split("\n---\n")
        .find(|doc| doc.contains(&format!("\n  name: {name}\n")))
        .map(str::to_string)
        .with_context(|| format!("no {name} in functions/{dir}"))
}

/// Polls Function `name` in `test` until its status is about the current generation and its
/// phase is final (`Ready` or `Failed`); returns the phase and the Built condition's message.
fn settled(node: &RealNode, name: &str, limit: Duration) -> anyhow::Result<(String, String)> {
    node.poll(&format!("{name} built and served"), limit, || {
        let out = in_test(node, "fn", name, r#"jsonpath={.metadata.generation}|{.status.observedGeneration}|{.status.phase}|{.status.conditions[?(@.type=="Built")].message}"#)
            .ok()?;
        let fields: Vec<&str> = out.splitn(4, '|').collect();
        match fields.as_slice() {
            [generation, observed, phase, message]
                if generation == observed && matches!(*phase, "Ready" | "Failed") =>
            {
                Some((phase.to_string(), message.to_string()))
            }
            _ => None,
        }
    })
}

/// One hello function per source runtime, built in the cluster (by the builder Deployment, on
/// the image with the toolchains), answers by its DNS name from a pod. Python first and alone, timed from apply to its first 200.
fn source_runtimes_by_dns(node: &RealNode) -> anyhow::Result<()> {
    apply_to_first_200(
        node,
        "Python py-hello (built in the cluster)",
        &example("python", "py-hello")?,
        "http://py-hello.test:8080/",
        "hello world",
        Duration::from_secs(600),
    )?;
    let runtimes = [("c", "c-hello"), ("go", "go-hello"), ("nodejs", "js-hello")];
    let started = Instant::now();
    for (dir, name) in runtimes {
        node.apply(&example(dir, name)?)?;
    }
    for (dir, name) in runtimes {
        let (phase, message) = settled(node, name, Duration::from_secs(600))?;
        let took = started.elapsed();
        assert_eq!(phase, "Ready", "{dir}: {message}");
        let body = node.sh("client", &format!("wget -qO- http://{name}.test:8080/"))?;
        assert_eq!(body, "hello world", "{dir}");
        report(&format!(
            "{dir}: {name} built in the cluster and answering by DNS {:.1} s after apply",
            took.as_secs_f64()
        ));
    }
    Ok(())
}

/// The seed scenario (`examples/metacontroller-hello-world`): the HelloWorld CRD, its logic as
/// the Python Function `hello-world` in `test`, and a pod playing Metacontroller's part: it POSTs
/// the sync request to `http://hello-world.test:8080`, the children it gets back are applied
/// (owned by the parent, as Metacontroller does), the child Pod says hello, and the next sync
/// reports it in the parent's status.
fn seed_example(node: &RealNode) -> anyhow::Result<()> {
    let dir = repo().join("examples/metacontroller-hello-world");
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    node.kubectl(&["apply", "-f", &file("crd.yaml")])?;
    node.kubectl(&[
        "wait",
        "--for=condition=established",
        "--timeout=60s",
        "crd/helloworlds.example.com",
    ])?;
    node.kubectl(&["apply", "-f", &file("hello.yaml")])?;
    // The child Pod runs Docker Hub's busybox: the node's own busybox under that name.
    node.tag_image(BUSYBOX, "docker.io/library/busybox:1.36")?;

    let started = Instant::now();
    node.kubectl(&["apply", "-f", &file("function.yaml")])?;
    let (phase, message) = settled(node, "hello-world", Duration::from_secs(600))?;
    assert_eq!(phase, "Ready", "{message}");
    report(&format!(
        "timing: the Python hello-world (replacing the WAT one): apply → Ready (served by both hosts) {:.1} s",
        started.elapsed().as_secs_f64()
    ));

    let sync = |children: serde_json::Value| -> anyhow::Result<serde_json::Value> {
        let parent: serde_json::Value =
            serde_json::from_str(&in_test(node, "helloworld", "your-name", "json")?)?;
        let request = serde_json::json!({
            "controller": {"apiVersion": "metacontroller.k8s.io/v1alpha1",
                           "kind": "CompositeController", "metadata": {"name": "hello-controller"}},
            "parent": parent,
            "children": {"Pod.v1": children},
            "related": {},
            "finalizing": false
        });
        let answer = node.sh_with_input(
            "client",
            &format!(
                "cat >/tmp/sync.json && wget -qO- --header 'Content-Type: application/json' \
                 --post-file /tmp/sync.json {HELLO_URL}"
            ),
            &request.to_string(),
        )?;
        serde_json::from_str(&answer).with_context(|| format!("the hook answered {answer:?}"))
    };
    let first = sync(serde_json::json!({}))?;
    let children = first["children"].as_array().cloned().unwrap_or_default();
    assert_eq!(children.len(), 1, "{first}");
    let uid = in_test(node, "helloworld", "your-name", "jsonpath={.metadata.uid}")?;
    let mut child = children[0].clone();
    child["metadata"]["namespace"] = "test".into();
    child["metadata"]["ownerReferences"] = serde_json::json!([{
        "apiVersion": "example.com/v1", "kind": "HelloWorld", "name": "your-name", "uid": uid,
        "controller": true, "blockOwnerDeletion": true
    }]);
    node.apply(&child.to_string())?;
    node.poll(
        "the child Pod to say hello",
        Duration::from_secs(120),
        || {
            in_test(node, "pod", "your-name", "jsonpath={.status.phase}")
                .ok()
                .filter(|phase| phase == "Succeeded")
        },
    )?;
    let greeting = node.kubectl(&["logs", "your-name", "-n", "test"])?;
    assert_eq!(greeting.trim(), "Hello, Your Name");

    let observed: serde_json::Value =
        serde_json::from_str(&in_test(node, "pod", "your-name", "json")?)?;
    let second = sync(serde_json::json!({ "your-name": observed }))?;
    assert_eq!(
        second["status"],
        serde_json::json!({"replicas": 1, "succeeded": 1})
    );
    node.kubectl(&[
        "patch",
        "helloworld",
        "your-name",
        "-n",
        "test",
        "--subresource=status",
        "--type=merge",
        "-p",
        &serde_json::json!({ "status": second["status"] }).to_string(),
    ])?;
    report(&format!(
        "seed example: a pod POSTed the sync request to {HELLO_URL}, the child Pod logged {:?}, the parent's status is {}",
        greeting.trim(),
        second["status"]
    ));
    Ok(())
}
