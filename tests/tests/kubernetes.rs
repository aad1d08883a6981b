//! wasmless on a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager),
//! driven with the real kubectl; the controller and the host run as processes of their own and
//! functions answer over real HTTP on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::Digest;

use wasmless_e2e::cli::Wasmless;
use wasmless_e2e::cluster::{self, Cluster};
use wasmless_e2e::{
    Process, Served, client, files_under, functions_dir, local_ip, metric, report, wait_until,
    wat_manifest,
};

/// Polls the host until `host` answers 200 with `body`.
async fn until_body(served: &Served, host: &str, body: &str) -> anyhow::Result<()> {
    wait_until(Duration::from_secs(60), || async {
        matches!(served.get(host, "/").await, Ok((200, b)) if b == body)
    })
    .await
}

#[tokio::test]
async fn functions_on_a_real_api_server() -> anyhow::Result<()> {
    let cluster = Cluster::with_functions().await?;

    let store = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    let (mut controller, artifacts) = cluster.controller(store.path(), cluster::HOSTS_NOT_PODS)?;
    let mut host = cluster.host(&artifacts, cache.path()).await?;

    // apply → Ready → first 200, timed once the controller leads.
    wait_until(Duration::from_secs(60), || {
        let leading = controller.log_contains("leading: reconciling");
        async move { leading }
    })
    .await?;
    let hello = std::fs::read_to_string(functions_dir().join("hello-world.yaml"))?;
    // A user's kubectl has its discovery cache warm; the first call here fills it (~2 s).
    cluster.kubectl(&["get", "fn", "-A"])?;
    let started = Instant::now();
    cluster.apply(&hello)?;
    let applied = started.elapsed();
    // Ready is seen through kubectl (each poll is a process: ±0.1 s); the 200 through HTTP.
    let ready_poll = {
        let kubeconfig = cluster.kubeconfig.clone();
        std::thread::spawn(move || {
            while started.elapsed() < Duration::from_secs(60) {
                if cluster::phase_at(&kubeconfig, "hello-world") == "Ready" {
                    return Some(started.elapsed());
                }
            }
            None
        })
    };
    wait_until(Duration::from_secs(60), || async {
        matches!(host.get("hello-world.test:8080", "/").await, Ok((200, b)) if b == "hello world")
    })
    .await?;
    let first_200 = started.elapsed();
    let ready = ready_poll.join().ok().flatten().unwrap_or_default();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    report(&format!(
        "timing: kubectl apply returned {:.0} ms; apply → Ready {:.0} ms (kubectl polling); Ready → first 200 {:.0} ms; apply → first 200 {:.0} ms ({:.0} ms after apply returned)",
        ms(applied),
        ms(ready),
        ms(first_200.saturating_sub(ready)),
        ms(first_200),
        ms(first_200 - applied)
    ));
    assert_eq!(cluster.phase("hello-world"), "Ready");

    // Status, Service, columns, explain.
    let status: serde_json::Value = serde_json::from_str(&cluster.kubectl(&[
        "get",
        "fn",
        "hello-world",
        "-n",
        "test",
        "-o",
        "jsonpath={.status}",
    ])?)?;
    assert_eq!(status["url"], "http://hello-world.test:8080");
    assert_eq!(status["artifact"]["abi"], "wagi");
    assert!(
        status["artifact"]["digest"]
            .as_str()
            .unwrap_or_default()
            .starts_with("sha256:")
    );
    assert_eq!(status["observedGeneration"], 1);
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Built" && c["status"] == "True"),
        "{status}"
    );
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True"),
        "{status}"
    );
    let svc: serde_json::Value = serde_json::from_str(&cluster.kubectl(&[
        "get",
        "svc",
        "hello-world",
        "-n",
        "test",
        "-o",
        "json",
    ])?)?;
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["name"], "http-function-port");
    assert_eq!(svc["metadata"]["ownerReferences"][0]["kind"], "Function");
    assert!(
        svc["spec"]["selector"].is_null(),
        "the controller keeps its endpoints: {svc}"
    );
    let table = cluster.kubectl(&["get", "fn", "-A"])?;
    let header = table.lines().next().unwrap_or_default();
    for column in ["NAMESPACE", "NAME", "RUNTIME", "STATUS", "URL", "AGE"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(
        table.contains("http://hello-world.test:8080") && table.contains("Ready"),
        "{table}"
    );
    let explain = cluster.kubectl(&["explain", "function.spec.function"])?;
    assert!(explain.contains("The function's source"), "{explain}");
    let events = cluster.kubectl(&[
        "get",
        "events",
        "-n",
        "test",
        "--field-selector",
        "involvedObject.name=hello-world",
    ])?;
    assert!(events.contains("Built"), "{events}");

    // Update the source while a client loops: no request fails, the new body arrives.
    let stop = Arc::new(AtomicBool::new(false));
    let looping = {
        let (addr, stop) = (host.functions, stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(Ordering::Relaxed) {
                match client()
                    .get(format!("http://{addr}/"))
                    .header("host", "hello-world.test")
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        })
    };
    let v2 = wat_manifest("test", "hello-world", "hello v2");
    let t = Instant::now();
    cluster.apply(&v2)?;
    report(&format!(
        "timing: second kubectl apply {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    ));
    until_body(&host, "hello-world.test", "hello v2").await?;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = looping.await?;
    assert_eq!(
        failed, 0,
        "no request fails during the swap ({ok} succeeded)"
    );
    assert!(ok > 10);

    // A broken update: the old body keeps serving and status says why.
    cluster.apply(&v2.replace("(memory", "(memory oops"))?;
    wait_until(Duration::from_secs(60), || {
        let failed = cluster.phase("hello-world") == "Failed";
        async move { failed }
    })
    .await?;
    // Phase and message from one read: the status must not go back to building the same
    // generation after it failed.
    let failed = cluster.function_field(
        "hello-world",
        r#"{.status.phase} {.status.conditions[?(@.type=="Built")].message}"#,
    )?;
    assert!(
        failed.starts_with("Failed ") && failed.contains("expected"),
        "the compiler's message is in status: {failed}"
    );
    assert_eq!(
        host.get("hello-world.test", "/").await?,
        (200, "hello v2".into())
    );

    // Leader election: a second replica waits while the first leads, and takes over as soon as
    // the first shuts down gracefully (SIGTERM releases the Lease).
    let (mut standby, _) = cluster.controller(store.path(), cluster::HOSTS_NOT_PODS)?;
    wait_until(Duration::from_secs(30), || {
        let waiting = standby.log_contains("waiting to lead");
        async move { waiting }
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !standby.log_contains("leading: reconciling"),
        "two replicas never reconcile at once"
    );
    let terminated = Instant::now();
    let exit = controller.terminate()?;
    assert!(exit.success(), "graceful shutdown exits 0: {exit}");
    wait_until(Duration::from_secs(60), || {
        let leading = standby.log_contains("leading: reconciling");
        async move { leading }
    })
    .await?;
    report(&format!(
        "timing: standby leads {:.1} s after SIGTERM",
        terminated.elapsed().as_secs_f64()
    ));

    // kill -9 the leader and the host; the host comes back without the controller, from its
    // disk cache.
    standby.kill();
    host.process.kill();
    let host = cluster.host("http://127.0.0.1:9", cache.path()).await?;
    until_body(&host, "hello-world.test", "hello v2").await?;
    let (controller3, artifacts) = cluster.controller(store.path(), cluster::HOSTS_NOT_PODS)?;
    // A new function builds; the settled ones are not built again.
    cluster.apply(&wat_manifest("test", "second", "second"))?;
    wait_until(Duration::from_secs(60), || {
        let ready = cluster.phase("second") == "Ready";
        async move { ready }
    })
    .await?;
    let built = |p: &Process| p.log_count("built function=test/hello-world");
    assert_eq!(built(&controller), 2, "v1 and v2, once each");
    assert_eq!(
        built(&standby) + built(&controller3),
        0,
        "nothing is built twice"
    );
    drop(host);
    let cache2 = tempfile::tempdir()?;
    let host = cluster.host(&artifacts, cache2.path()).await?;
    until_body(&host, "second.test", "second").await?;
    until_body(&host, "hello-world.test", "hello v2").await?;

    // Fixed: the new version serves.
    cluster.apply(&wat_manifest("test", "hello-world", "hello v3"))?;
    until_body(&host, "hello-world.test", "hello v3").await?;

    // Delete: the Service is garbage-collected and the host answers 404.
    cluster.kubectl(&["delete", "fn", "hello-world", "-n", "test"])?;
    wait_until(Duration::from_secs(60), || async {
        matches!(host.get("hello-world.test", "/").await, Ok((404, _)))
    })
    .await?;
    wait_until(Duration::from_secs(60), || {
        let gone = cluster
            .kubectl(&["get", "svc", "hello-world", "-n", "test"])
            .is_err();
        async move { gone }
    })
    .await?;
    assert_eq!(host.get("second.test", "/").await?, (200, "second".into()));
    Ok(())
}

#[tokio::test]
async fn a_kubeless_manifest_applies_after_changing_only_its_api_version() -> anyhow::Result<()> {
    let cluster = Cluster::with_functions().await?;
    let store = tempfile::tempdir()?;
    let (_controller, _) = cluster.controller(store.path(), cluster::HOSTS_NOT_PODS)?;

    // Kubeless's own shape: string timeout, checksum, deployment/service/HPA knobs.
    let source = r#"(module (func (export "_start")))"#;
    let checksum = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(source.as_bytes()))
    );
    let manifest = format!(
        r#"apiVersion: wasmless.dev/v1alpha1
kind: Function
metadata:
  name: ported
  namespace: default
  labels: {{created-by: kubeless, function: ported}}
spec:
  runtime: wat
  timeout: "180"
  handler: handler.main
  deps: ""
  checksum: {checksum}
  function-content-type: text
  function: '{source}'
  deployment:
    spec:
      template:
        spec:
          containers:
          - name: ported
            resources: {{limits: {{memory: 128Mi}}}}
  service:
    ports: [{{name: http-function-port, port: 8080, protocol: TCP, targetPort: 8080}}]
    selector: {{created-by: kubeless}}
    type: ClusterIP
  horizontalPodAutoscaler: {{}}
"#
    );
    cluster.apply(&manifest)?;
    wait_until(Duration::from_secs(60), || {
        let ready = cluster
            .kubectl(&["get", "fn", "ported", "-o", "jsonpath={.status.phase}"])
            .unwrap_or_default()
            == "Ready";
        async move { ready }
    })
    .await?;
    // A wrong checksum fails the build with a clear message.
    cluster.apply(&manifest.replace(&checksum, &format!("sha256:{}", "0".repeat(64))))?;
    wait_until(Duration::from_secs(60), || {
        let failed = cluster
            .kubectl(&[
                "get",
                "fn",
                "ported",
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Built")].message}"#,
            ])
            .unwrap_or_default()
            .contains("checksum mismatch");
        async move { failed }
    })
    .await?;
    Ok(())
}

/// The function's endpoints as kubectl shows them, `ip@namespace/pod:port` sorted and joined by
/// spaces: those of its Endpoints, and the ready ones of its EndpointSlices.
fn endpoints_of(cluster: &Cluster, name: &str) -> (String, String) {
    let get = |args: &[&str]| -> serde_json::Value {
        cluster
            .kubectl(args)
            .ok()
            .and_then(|o| serde_json::from_str(&o).ok())
            .unwrap_or_default()
    };
    let items = |v: &serde_json::Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
    let port = |subset: &serde_json::Value| {
        items(subset, "ports")
            .iter()
            .find(|p| p["name"] == "http-function-port")
            .map(|p| p["port"].to_string())
            .unwrap_or_default()
    };
    let at = |ip: &serde_json::Value, target: &serde_json::Value, port: &str| {
        format!(
            "{}@{}/{}:{port}",
            ip.as_str().unwrap_or_default(),
            target["namespace"].as_str().unwrap_or_default(),
            target["name"].as_str().unwrap_or_default()
        )
    };
    let endpoints = get(&["get", "endpoints", name, "-n", "test", "-o", "json"]);
    let mut from_endpoints: Vec<String> = items(&endpoints, "subsets")
        .iter()
        .flat_map(|subset| {
            let port = port(subset);
            items(subset, "addresses")
                .iter()
                .map(|a| at(&a["ip"], &a["targetRef"], &port))
                .collect::<Vec<_>>()
        })
        .collect();
    let slices = get(&[
        "get",
        "endpointslices",
        "-n",
        "test",
        "-l",
        &format!(
            "kubernetes.io/service-name={name},endpointslice.kubernetes.io/managed-by=wasmless.dev"
        ),
        "-o",
        "json",
    ]);
    let mut from_slices: Vec<String> = items(&slices, "items")
        .iter()
        .flat_map(|slice| {
            let port = port(slice);
            items(slice, "endpoints")
                .iter()
                .filter(|e| e["conditions"]["ready"] == true)
                .flat_map(|e| {
                    items(e, "addresses")
                        .iter()
                        .map(|ip| at(ip, &e["targetRef"], &port))
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    from_endpoints.sort();
    from_slices.sort();
    (from_endpoints.join(" "), from_slices.join(" "))
}

/// The names of every EndpointSlice of the function's Service, whoever made them.
fn slice_names(cluster: &Cluster, name: &str) -> anyhow::Result<String> {
    Ok(cluster
        .kubectl(&[
            "get",
            "endpointslices",
            "-n",
            "test",
            "-l",
            &format!("kubernetes.io/service-name={name}"),
            "-o",
            "name",
        ])?
        .trim()
        .to_string())
}

/// Waits until both the Endpoints and the EndpointSlices read `want`; returns how long it took.
async fn until_endpoints(cluster: &Cluster, name: &str, want: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    wait_until(Duration::from_secs(30), || {
        let (endpoints, slices) = endpoints_of(cluster, name);
        async move { endpoints == want && slices == want }
    })
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}: wanted {want:?}, have {:?}",
            endpoints_of(cluster, name)
        )
    })?;
    Ok(started.elapsed())
}

/// The Ready condition of a Function the one ready host pod serves.
const SERVED_BY_ONE: &str = "True Serving 1/1 ready hosts serve";

/// Waits until Function `name` in `test` has `phase` and a Ready condition whose
/// "status reason message" starts with `ready`.
async fn until_ready_condition(
    cluster: &Cluster,
    name: &str,
    phase: &str,
    ready: &str,
) -> anyhow::Result<()> {
    let read = || {
        cluster
            .function_field(
                name,
                r#"{.status.phase}|{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].reason} {.status.conditions[?(@.type=="Ready")].message}"#,
            )
            .unwrap_or_default()
    };
    wait_until(Duration::from_secs(60), || {
        let now = read();
        let ok = now
            .split_once('|')
            .is_some_and(|(p, r)| p == phase && r.starts_with(ready));
        async move { ok }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: wanted {phase}|{ready}…, have {}", read()))
}

#[tokio::test]
async fn functions_get_endpoints_from_hosts_in_another_namespace() -> anyhow::Result<()> {
    let Some(ip) = local_ip() else {
        report("endpoints: skipped: no non-loopback IPv4 address for the API server to proxy to");
        return Ok(());
    };
    let cluster = Cluster::with_functions().await?;
    cluster.kubectl(&["create", "namespace", "wasmless"])?;
    let store = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    // Hosts in any namespace (`*`; the default is the controller's own), on the container port
    // named `functions`.
    let (_controller, artifacts) = cluster.controller(
        store.path(),
        &["--host-port", "functions", "--host-namespace", "*"],
    )?;
    let host = cluster.host_on(&artifacts, cache.path(), &ip).await?;
    cluster
        .host_pod("wasmless", "wasmless-host-0", &host)
        .await?;
    let port = host.functions.port();

    cluster.apply(&wat_manifest("test", "across", "hello across namespaces"))?;
    // Ready once the host pod's host serves the artifact (the controller asks its admin port).
    until_ready_condition(&cluster, "across", "Ready", SERVED_BY_ONE).await?;
    let events = cluster.kubectl(&[
        "get",
        "events",
        "-n",
        "test",
        "--field-selector",
        "involvedObject.name=across",
    ])?;
    assert!(events.contains("Built"), "{events}");

    // The function's Service in `test` has the host pod in `wasmless` as its endpoint, in the
    // Endpoints and in the EndpointSlice, with the pod as targetRef and the resolved port.
    let one = format!("{ip}@wasmless/wasmless-host-0:{port}");
    until_endpoints(&cluster, "across", &one).await?;
    let slice: serde_json::Value = serde_json::from_str(&cluster.kubectl(&[
        "get",
        "endpointslice",
        &format!("across-ipv4-{port}"),
        "-n",
        "test",
        "-o",
        "json",
    ])?)?;
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "across"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Function");
    let endpoints: serde_json::Value = serde_json::from_str(&cluster.kubectl(&[
        "get",
        "endpoints",
        "across",
        "-n",
        "test",
        "-o",
        "json",
    ])?)?;
    assert_eq!(
        endpoints["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"], "true",
        "{endpoints}"
    );
    assert_eq!(
        endpoints["metadata"]["ownerReferences"][0]["kind"],
        "Function"
    );

    // Through the API server: the service proxy proxies only to pods of the Service's own
    // namespace (kube-apiserver's isValidAddress), so it refuses; the pods proxy and the CLI
    // (which falls back to it) reach the function.
    let proxy = "/api/v1/namespaces/test/services/across:http-function-port/proxy/fn/test/across/";
    let refused = cluster.kubectl(&["get", "--raw", proxy]);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("no endpoints available")),
        "{refused:?}"
    );
    let body = cluster.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/wasmless/pods/wasmless-host-0:{port}/proxy/fn/test/across/"),
    ])?;
    assert_eq!(body, "hello across namespaces");
    let cli = Wasmless::new([
        "--kubeconfig".into(),
        cluster.kubeconfig.clone().into_os_string(),
        "-n".into(),
        "test".into(),
    ]);
    let called = cli.function(&["call", "across"]);
    assert!(called.ok(), "{}{}", called.stdout, called.stderr);
    assert_eq!(called.stdout.trim(), "hello across namespaces");

    // A host in the function's own namespace joins the endpoints, and the service proxy, which
    // reads the Endpoints we wrote, reaches it.
    cluster.host_pod("test", "wasmless-host-1", &host).await?;
    let two = format!("{ip}@test/wasmless-host-1:{port} {one}");
    until_endpoints(&cluster, "across", &two).await?;
    assert_eq!(
        cluster.kubectl(&["get", "--raw", proxy])?,
        "hello across namespaces"
    );
    cluster.kubectl(&[
        "delete",
        "pod",
        "wasmless-host-1",
        "-n",
        "test",
        "--wait=false",
    ])?;
    until_endpoints(&cluster, "across", &one).await?;

    // Not ready → no endpoints, and status says nothing serves it; ready again → back. Deleted
    // → none; a new pod → back.
    cluster.pod_ready("wasmless", "wasmless-host-0", false)?;
    let unready = until_endpoints(&cluster, "across", "").await?;
    assert_eq!(
        slice_names(&cluster, "across")?,
        "",
        "no ready host, no slices"
    );
    until_ready_condition(&cluster, "across", "Loading", "False NoHosts").await?;
    cluster.pod_ready("wasmless", "wasmless-host-0", true)?;
    let ready = until_endpoints(&cluster, "across", &one).await?;
    until_ready_condition(&cluster, "across", "Ready", SERVED_BY_ONE).await?;
    cluster.kubectl(&[
        "delete",
        "pod",
        "wasmless-host-0",
        "-n",
        "wasmless",
        "--wait=false",
    ])?;
    let deleted = until_endpoints(&cluster, "across", "").await?;
    cluster
        .host_pod("wasmless", "wasmless-host-2", &host)
        .await?;
    let readded = until_endpoints(
        &cluster,
        "across",
        &format!("{ip}@wasmless/wasmless-host-2:{port}"),
    )
    .await?;
    let called = cli.function(&["call", "across"]);
    assert_eq!(
        called.stdout.trim(),
        "hello across namespaces",
        "{}",
        called.stderr
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    report(&format!(
        "timing: endpoints follow the host pod (kubectl polling): not ready {:.0} ms, ready {:.0} ms, deleted {:.0} ms, new pod {:.0} ms",
        ms(unready),
        ms(ready),
        ms(deleted),
        ms(readded)
    ));

    // Deleting the Function garbage-collects its Endpoints and EndpointSlices.
    cluster.kubectl(&["delete", "fn", "across", "-n", "test"])?;
    wait_until(Duration::from_secs(60), || {
        let gone = cluster
            .kubectl(&["get", "endpoints", "across", "-n", "test"])
            .is_err()
            && slice_names(&cluster, "across").is_ok_and(|o| o.is_empty());
        async move { gone }
    })
    .await?;
    Ok(())
}

/// A Function manifest in namespace `test` with `spec` (YAML flow mapping entries).
fn function_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nmetadata: {{name: {name:?}, namespace: test}}\nspec: {{{spec}}}\n"
    )
}

/// `phase|reason|message` of the Built condition of Function `name` in `test`.
fn built_condition(cluster: &Cluster, name: &str) -> String {
    cluster
        .function_field(
            name,
            r#"{.status.phase}|{.status.conditions[?(@.type=="Built")].reason}|{.status.conditions[?(@.type=="Built")].message}"#,
        )
        .unwrap_or_default()
}

/// What `kubectl apply --dry-run=server` says of `yaml`: `Ok` when admitted.
fn admitted(cluster: &Cluster, yaml: &str) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("f.yaml");
    std::fs::write(&file, yaml)?;
    let path = file.display().to_string();
    cluster.kubectl(&["apply", "--dry-run=server", "-f", &path])
}

#[tokio::test]
async fn invalid_functions_fail_alone_before_and_after_restarts() -> anyhow::Result<()> {
    let cluster = Cluster::with_functions().await?;
    let good = wat_manifest("test", "good", "still good");
    let mut deep = serde_json::json!("x");
    for _ in 0..200 {
        deep = serde_json::json!({ "a": deep });
    }

    // Objects stored before the schema had its rules: the rules come off, they are applied,
    // the rules go back on. They are in the first list the controller and the host read.
    let schema = "/spec/versions/0/schema/openAPIV3Schema";
    let rules: Vec<serde_json::Value> = [
        format!("{schema}/x-kubernetes-validations"),
        format!("{schema}/properties/spec/x-kubernetes-validations"),
        format!("{schema}/properties/spec/properties/handler/pattern"),
        format!("{schema}/properties/spec/properties/timeout/x-kubernetes-validations"),
    ]
    .into_iter()
    .map(|path| serde_json::json!({"op": "remove", "path": path}))
    .collect();
    let crd = "crd/functions.wasmless.dev";
    cluster.kubectl(&[
        "patch",
        crd,
        "--type=json",
        "-p",
        &serde_json::Value::from(rules).to_string(),
    ])?;
    let stale = [
        function_yaml(
            "stale-timeout",
            "runtime: wat, function: '(module)', timeout: -1",
        ),
        function_yaml("a.b", "runtime: wat, function: '(module)'"),
        function_yaml(
            "stale-handler",
            "runtime: python3.8, handler: ../../x.y, function: 'def y(e, c): pass'",
        ),
        function_yaml(
            "stale-url",
            "runtime: wasm, function-content-type: url, function: /etc/passwd",
        ),
        serde_json::json!({
            "apiVersion": "wasmless.dev/v1alpha1", "kind": "Function",
            "metadata": {"name": "deep", "namespace": "test"},
            "spec": {"runtime": "wat", "function": "(module)", "deployment": deep}
        })
        .to_string(),
    ];
    // The API server takes a moment to serve the relaxed schema.
    wait_until(Duration::from_secs(30), || {
        let all = stale.iter().all(|m| cluster.apply(m).is_ok());
        async move { all }
    })
    .await?;
    let chart = functions_dir().join("../charts/wasmless/crds/functions.yaml");
    cluster.apply(&std::fs::read_to_string(chart)?)?;
    let refused_timeout = function_yaml("neg", "runtime: wat, function: '(module)', timeout: -1");
    wait_until(Duration::from_secs(30), || {
        let back = admitted(&cluster, &refused_timeout).is_err();
        async move { back }
    })
    .await?;

    let store = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    let (controller, artifacts) = cluster.controller(store.path(), cluster::HOSTS_NOT_PODS)?;
    // Ready only once its first list of Functions, the stale ones included, has been read.
    let host = cluster.host(&artifacts, cache.path()).await?;

    // Refused at admission now, each naming its field.
    for (field, manifest) in [
        (
            "spec.handler",
            function_yaml("h", "runtime: c, handler: ../../x.y, function: x"),
        ),
        (
            "spec.handler",
            function_yaml("h", "runtime: c, handler: -fplugin=x.y, function: x"),
        ),
        (
            "spec.function",
            function_yaml(
                "u",
                "runtime: wasm, function-content-type: url, function: /etc/passwd",
            ),
        ),
        (
            "metadata.name",
            function_yaml("a.c", "runtime: wat, function: x"),
        ),
        (
            "metadata.name",
            function_yaml(&"a".repeat(64), "runtime: wat, function: x"),
        ),
        ("spec.timeout", refused_timeout.clone()),
        (
            "spec.timeout",
            function_yaml("t", "runtime: wat, function: x, timeout: '99999999999'"),
        ),
        (
            "spec.memory",
            function_yaml("m", "runtime: wat, function: x, memory: 100Gi"),
        ),
        (
            "spec.memory",
            function_yaml("m", "runtime: wat, function: x, memory: lots"),
        ),
        (
            "spec.checksum",
            function_yaml("c", "runtime: wat, function: x, checksum: 'md5:1'"),
        ),
    ] {
        let refused = cluster.apply(&manifest);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains(field)),
            "{field}: {refused:?}"
        );
    }

    // Admitted, refused by the controller: what the schema cannot say.
    let admitted_bad = [
        (
            "no-handler",
            "spec.handler",
            "runtime: python, function: 'def f(e, c): pass'",
        ),
        (
            "https-url",
            "spec.function",
            "runtime: wasm, function-content-type: url, function: 'https://example.invalid/f.wasm'",
        ),
        (
            "pip-options",
            "spec.deps",
            "runtime: python, handler: h.f, function: x, deps: '-r /etc/passwd'",
        ),
        ("cobol", "spec.runtime", "runtime: cobol, function: x"),
    ];
    for (name, _, spec) in admitted_bad {
        cluster.apply(&function_yaml(name, spec))?;
    }
    cluster.apply(&good)?;
    until_body(&host, "good.test", "still good").await?;
    assert_eq!(cluster.phase("good"), "Ready");

    let bad = [
        (
            "stale-timeout",
            "spec.timeout: -1 must be whole seconds from 1 to 3600",
        ),
        ("a.b", "metadata.name: \"a.b\" must be a DNS-1035 label"),
        (
            "stale-handler",
            "spec.handler: \"../../x.y\" must be file.function",
        ),
        (
            "stale-url",
            "spec.function: \"/etc/passwd\" is not an http(s) URL",
        ),
        ("deep", "spec.deployment: nested deeper than 32 levels"),
    ]
    .into_iter()
    .chain(admitted_bad.iter().map(|(name, field, _)| (*name, *field)));
    for (name, why) in bad {
        wait_until(Duration::from_secs(60), || {
            let done = built_condition(&cluster, name).starts_with("Failed|InvalidSpec|");
            async move { done }
        })
        .await
        .map_err(|e| anyhow::anyhow!("{name}: {e}: {}", built_condition(&cluster, name)))?;
        let condition = built_condition(&cluster, name);
        assert!(condition.contains(why), "{name}: {condition}");
        assert!(
            !condition.contains("root:"),
            "nothing of /etc/passwd: {condition}"
        );
    }
    let events = cluster.kubectl(&[
        "get",
        "events",
        "-n",
        "test",
        "--field-selector",
        "involvedObject.name=stale-handler",
    ])?;
    assert!(events.contains("InvalidSpec"), "{events}");
    assert!(
        cluster
            .kubectl(&["get", "svc", "a.b", "-n", "test"])
            .is_err(),
        "no Service for a name no Service can have"
    );
    assert!(
        controller.log_count("built function=test/") == 1,
        "only the good one built"
    );

    // A served function whose spec turns invalid: refused, and the hosts keep the last good
    // revision rather than load the new spec.
    cluster.apply(&good.replace("runtime: wat", "runtime: wat\n  deps: x"))?;
    wait_until(Duration::from_secs(60), || {
        let failed = built_condition(&cluster, "good").starts_with("Failed|InvalidSpec|spec.deps");
        let logged = host.log_contains("invalid spec, not loaded");
        async move { failed && logged }
    })
    .await?;
    assert_eq!(
        host.get("good.test", "/").await?,
        (200, "still good".into())
    );
    // Fixed again: the same build, found in the store.
    cluster.apply(&good)?;
    wait_until(Duration::from_secs(60), || {
        let ready = built_condition(&cluster, "good").starts_with("Ready|Cached|");
        async move { ready }
    })
    .await?;

    // Restarts: both read every Function again, the invalid ones included.
    drop(host);
    drop(controller);
    let (_controller, artifacts) = cluster.controller(store.path(), cluster::HOSTS_NOT_PODS)?;
    let host = cluster.host(&artifacts, cache.path()).await?;
    until_body(&host, "good.test", "still good").await?;
    cluster.apply(&wat_manifest("test", "after", "after the restart"))?;
    until_body(&host, "after.test", "after the restart").await?;
    assert_eq!(cluster.phase("after"), "Ready");
    Ok(())
}

/// A Function named like a Service that is not its own never takes it over: the Service keeps
/// its spec and has no owner, the Function says why it is not served, and deleting the Function
/// leaves the Service. Once that Service is gone the Function gets its own. Another manager's
/// EndpointSlice for the Function's Service is left alone.
#[tokio::test]
async fn a_service_of_the_same_name_is_never_adopted() -> anyhow::Result<()> {
    let cluster = Cluster::with_functions().await?;
    let store = tempfile::tempdir()?;
    let (_controller, _artifacts) = cluster.controller(store.path(), cluster::HOSTS_NOT_PODS)?;
    cluster.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: taken, namespace: test}\n\
         spec: {selector: {app: theirs}, ports: [{port: 80, targetPort: 8000}]}\n",
    )?;
    let service = |field: &str| {
        cluster.kubectl(&[
            "get",
            "service",
            "taken",
            "-n",
            "test",
            "-o",
            &format!("jsonpath={field}"),
        ])
    };

    cluster.apply(&wat_manifest("test", "taken", "not theirs"))?;
    wait_until(Duration::from_secs(60), || {
        let failed = built_condition(&cluster, "taken").starts_with("Failed|ServiceConflict|");
        async move { failed }
    })
    .await?;
    let condition = built_condition(&cluster, "taken");
    assert!(
        condition.contains("Service test/taken exists and is not this Function's"),
        "{condition}"
    );
    assert_eq!(service("{.spec.selector.app}")?, "theirs");
    assert_eq!(service("{.spec.ports[0].port}")?, "80");
    assert_eq!(service("{.metadata.ownerReferences}")?, "");
    let events = cluster.kubectl(&[
        "get",
        "events",
        "-n",
        "test",
        "--field-selector",
        "involvedObject.name=taken,reason=ServiceConflict",
        "-o",
        "name",
    ])?;
    assert!(!events.is_empty(), "a ServiceConflict event");

    // Deleting the Function leaves their Service.
    cluster.kubectl(&["delete", "fn", "taken", "-n", "test", "--wait=true"])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(service("{.spec.selector.app}")?, "theirs");

    // Applied again it conflicts again; once their Service is gone (looked at every 30 s) it
    // gets its own, and a slice of another manager for it stays.
    cluster.apply(&wat_manifest("test", "taken", "ours now"))?;
    wait_until(Duration::from_secs(60), || {
        let failed = built_condition(&cluster, "taken").starts_with("Failed|ServiceConflict|");
        async move { failed }
    })
    .await?;
    cluster.apply(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: IPv4\n\
         metadata: {name: taken-theirs, namespace: test, labels: \
         {kubernetes.io/service-name: taken, endpointslice.kubernetes.io/managed-by: someone-else}}\n\
         endpoints: []\nports: []\n",
    )?;
    cluster.kubectl(&["delete", "service", "taken", "-n", "test"])?;
    wait_until(Duration::from_secs(90), || {
        let ready = cluster.phase("taken") == "Ready";
        async move { ready }
    })
    .await?;
    assert_eq!(service("{.metadata.ownerReferences[0].kind}")?, "Function");
    assert_eq!(service("{.spec.ports[0].port}")?, "8080");
    cluster.kubectl(&["get", "endpointslice", "taken-theirs", "-n", "test"])?;
    Ok(())
}

/// Builds run in the sandboxed builder, never in the controller: a C source including a file
/// planted beside the controller fails without a trace of it, a build that fills memory is
/// stopped by the builder's memory limit and one that never ends by its timeout; the status, the
/// Events and both processes' logs carry nothing of the secret.
#[tokio::test]
async fn tenant_builds_reach_nothing_of_the_controller() -> anyhow::Result<()> {
    use wasmless_e2e::examples::{C_MEMORY_BOMB, Secret, c_function, python_build_loop};
    let cluster = Cluster::with_functions().await?;
    // A short timeout, so the looping build ends soon; C builds take seconds.
    cluster.builder_with_timeout(60)?;
    let store = tempfile::tempdir()?;
    let secret = Secret::plant()?;
    let (controller, _) = cluster.controller(store.path(), cluster::HOSTS_NOT_PODS)?;
    cluster.apply(&c_function("steal", &secret.include()))?;
    cluster.apply(&c_function("bomb", C_MEMORY_BOMB))?;
    cluster.apply(&python_build_loop("forever"))?;
    for name in ["steal", "bomb", "forever"] {
        wait_until(Duration::from_secs(600), || async {
            cluster.phase(name) == "Failed"
        })
        .await?;
    }
    let steal = built_condition(&cluster, "steal");
    assert!(steal.contains("Permission denied"), "{steal}");
    let bomb = built_condition(&cluster, "bomb");
    assert!(bomb.contains("memory"), "{bomb}");
    let forever = built_condition(&cluster, "forever");
    assert!(forever.contains("timeout of 60 s"), "{forever}");
    let everything = cluster.kubectl(&["get", "functions,events", "-n", "test", "-o", "yaml"])?;
    assert!(!everything.contains(&secret.content));
    assert!(!controller.log_contains(&secret.content));
    assert!(!cluster.builder_log_contains(&secret.content));
    Ok(())
}

/// How many builds ran at once at most, from the controller's log: each build logs
/// `build started` once it holds a slot and `build ended` before it gives it back.
fn most_builds_at_once(log: &str) -> usize {
    let (mut now, mut most) = (0usize, 0usize);
    for line in log.lines() {
        if line.contains("build started") {
            now += 1;
            most = most.max(now);
        } else if line.contains("build ended") {
            now = now.saturating_sub(1);
        }
    }
    most
}

/// 50 Functions applied at once (40 sources: ten pairs share one) build at most
/// `--max-builds` at a time, each source once, and all become Ready.
#[tokio::test]
async fn fifty_functions_build_a_few_at_a_time_each_source_once() -> anyhow::Result<()> {
    const MAX_BUILDS: usize = 2;
    let cluster = Cluster::with_functions().await?;
    let store = tempfile::tempdir()?;
    let max = MAX_BUILDS.to_string();
    let (controller, _) = cluster.controller(
        store.path(),
        &["--ready-when", "built", "--max-builds", &max],
    )?;
    let manifests: Vec<String> = (0..50)
        .map(|i| wat_manifest("test", &format!("many-{i:02}"), &format!("body {}", i % 40)))
        .collect();
    let started = Instant::now();
    cluster.apply(&manifests.join("---\n"))?;
    let ready = || {
        cluster
            .kubectl(&[
                "get",
                "fn",
                "-n",
                "test",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ])
            .unwrap_or_default()
            .split_whitespace()
            .filter(|p| *p == "Ready")
            .count()
    };
    wait_until(Duration::from_secs(600), || {
        let all = ready() == 50;
        async move { all }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: {} of 50 Ready", ready()))?;
    let elapsed = started.elapsed();

    let log = controller.log();
    let most = most_builds_at_once(&log);
    assert!(
        (1..=MAX_BUILDS).contains(&most),
        "{most} builds at once, at most {MAX_BUILDS} allowed"
    );
    let built = log
        .lines()
        .filter(|l| l.contains("built function=test/many-"))
        .count();
    assert_eq!(built, 40, "each source built once");
    let digests = cluster.kubectl(&[
        "get",
        "fn",
        "-n",
        "test",
        "-o",
        "jsonpath={.items[*].status.artifact.digest}",
    ])?;
    let distinct: std::collections::BTreeSet<&str> = digests.split_whitespace().collect();
    assert_eq!(distinct.len(), 40, "{digests}");
    report(&format!(
        "builds: 50 Functions (40 sources) Ready {:.1} s after apply, --max-builds {MAX_BUILDS}: at most {most} at once, {built} builds",
        elapsed.as_secs_f64()
    ));
    Ok(())
}

/// Python module code, which the build's check runs: a build that sleeps for ten
/// minutes (the suite's builder stops it at its timeout), using no CPU meanwhile.
fn sleeping_build(name: &str) -> String {
    format!(
        "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nmetadata: {{name: {name}, namespace: test}}\nspec:\n  runtime: python\n  handler: f.handler\n  function: |\n    import time\n    time.sleep(600)\n    def handler(event, context):\n        return 'late'\n"
    )
}

/// The host pods' labels, as the chart sets them.
const HOST_LABELS: &str = "{app.kubernetes.io/name: wasmless-host}";

/// A pod that looks like a host to the endpoints (with `labels`, a YAML flow mapping; Running,
/// Ready, at `ip`, its port `functions` 8080) with nothing behind it.
async fn pod_without_host(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    ip: &str,
    labels: &str,
) -> anyhow::Result<()> {
    cluster.apply("apiVersion: v1\nkind: Node\nmetadata: {name: e2e-node}\n")?;
    // Pod admission wants the namespace's default ServiceAccount, which kcm makes.
    wait_until(Duration::from_secs(60), || async {
        cluster
            .kubectl(&["get", "serviceaccount", "default", "-n", namespace])
            .is_ok()
    })
    .await?;
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}\nspec:\n  nodeName: e2e-node\n  automountServiceAccountToken: false\n  containers: [{{name: host, image: wasmless-host, ports: [{{name: functions, containerPort: 8080}}]}}]\n"
    ))?;
    cluster.patch_pod_status(
        namespace,
        name,
        &format!(
            r#"{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"hostIP":"{ip}","conditions":[{{"type":"Ready","status":"True"}}]}}"#
        ),
    )?;
    Ok(())
}

/// Reconciles never wait for a build: while one Function builds for minutes and another waits
/// for the only build slot, both Services' endpoints follow a host pod that joins, turns
/// unready and ready again.
#[tokio::test]
async fn functions_that_build_for_minutes_still_follow_the_host_pods() -> anyhow::Result<()> {
    let cluster = Cluster::with_functions().await?;
    cluster.kubectl(&["create", "namespace", "wasmless"])?;
    let store = tempfile::tempdir()?;
    let (_controller, _) = cluster.controller(
        store.path(),
        &[
            "--ready-when",
            "built",
            "--max-builds",
            "1",
            "--host-namespace",
            "wasmless",
        ],
    )?;
    cluster.apply(&sleeping_build("slow"))?;
    wait_until(Duration::from_secs(60), || async {
        cluster.phase("slow") == "Building"
    })
    .await?;
    cluster.apply(&wat_manifest("test", "queued", "queued"))?;
    let building = |name: &str| {
        cluster
            .function_field(
                name,
                r#"{.status.phase}: {.status.conditions[?(@.type=="Built")].message}"#,
            )
            .unwrap_or_default()
    };
    // It waits for the slot, and says so.
    wait_until(Duration::from_secs(60), || {
        let now = building("queued");
        async move { now.starts_with("Building: ") && now.contains("waiting for a build slot") }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: {}", building("queued")))?;

    let ip = "192.0.2.10";
    pod_without_host(&cluster, "wasmless", "host-0", ip, HOST_LABELS).await?;
    let one = format!("{ip}@wasmless/host-0:8080");
    let joined = until_endpoints(&cluster, "slow", &one).await?;
    until_endpoints(&cluster, "queued", &one).await?;
    cluster.pod_ready("wasmless", "host-0", false)?;
    let unready = until_endpoints(&cluster, "slow", "").await?;
    until_endpoints(&cluster, "queued", "").await?;
    cluster.pod_ready("wasmless", "host-0", true)?;
    let ready = until_endpoints(&cluster, "slow", &one).await?;
    until_endpoints(&cluster, "queued", &one).await?;
    // The builds are where they were: the endpoints did not wait for them.
    assert!(
        building("slow").starts_with("Building: "),
        "{}",
        building("slow")
    );
    assert!(
        building("queued").contains("waiting for a build slot"),
        "{}",
        building("queued")
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    report(&format!(
        "timing: endpoints of Functions still building follow the host pod (kubectl polling): joined {:.0} ms, unready {:.0} ms, ready {:.0} ms",
        ms(joined),
        ms(unready),
        ms(ready)
    ));
    Ok(())
}

/// Only ready pods with the host labels in the host namespace (the controller's own by default)
/// are endpoints: a pod without the labels, or one in another namespace with them, both with
/// the hosts' port, never receives a function's traffic.
#[tokio::test]
async fn unlabelled_and_foreign_namespace_pods_never_become_endpoints() -> anyhow::Result<()> {
    let cluster = Cluster::with_functions().await?;
    cluster.kubectl(&["create", "namespace", "foreign"])?;
    let store = tempfile::tempdir()?;
    // No --host-namespace: the kubeconfig's namespace, `default`.
    let (_controller, _) = cluster.controller(
        store.path(),
        &["--host-port", "functions", "--ready-when", "built"],
    )?;
    cluster.apply(&wat_manifest("test", "target", "target ok"))?;
    wait_until(Duration::from_secs(120), || async {
        cluster.phase("target") == "Ready"
    })
    .await?;

    // The impostors first, then a real host pod: once it is an endpoint, the controller has
    // seen the impostors too.
    pod_without_host(&cluster, "foreign", "impostor", "192.0.2.20", HOST_LABELS).await?;
    pod_without_host(
        &cluster,
        "default",
        "unlabelled",
        "192.0.2.21",
        "{app: other}",
    )
    .await?;
    pod_without_host(&cluster, "default", "host-0", "192.0.2.10", HOST_LABELS).await?;
    let one = "192.0.2.10@default/host-0:8080";
    until_endpoints(&cluster, "target", one).await?;

    // The impostors change (unready, ready again), a second host joins, a second Function is
    // made: still only the real hosts.
    for ready in [false, true] {
        cluster.pod_ready("foreign", "impostor", ready)?;
        cluster.pod_ready("default", "unlabelled", ready)?;
    }
    pod_without_host(&cluster, "default", "host-1", "192.0.2.11", HOST_LABELS).await?;
    let two = format!("{one} 192.0.2.11@default/host-1:8080");
    until_endpoints(&cluster, "target", &two).await?;
    cluster.apply(&wat_manifest("test", "second", "second ok"))?;
    until_endpoints(&cluster, "second", &two).await?;
    Ok(())
}

/// A host in a cluster serves its admin data (`/functions`, `/status`, logs) only with the
/// token (as a bearer token or the `wasmless-token` header), health and metrics to anyone, and
/// routes `/fn/<namespace>/<name>/` only with `--path-routing`.
#[tokio::test]
async fn a_cluster_host_guards_its_admin_data_and_routes_paths_only_when_told() -> anyhow::Result<()>
{
    let cluster = Cluster::with_functions().await?;
    let (store, cache, routed_cache) = (
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    );
    let (_controller, artifacts) = cluster.controller(store.path(), cluster::HOSTS_NOT_PODS)?;
    cluster.apply(&wat_manifest("test", "guarded", "guarded ok"))?;
    let host = cluster.host(&artifacts, cache.path()).await?;
    until_body(&host, "guarded.test", "guarded ok").await?;

    for open in ["/healthz", "/readyz", "/metrics"] {
        let (status, _) = host.admin_get_with(open, None).await?;
        assert_eq!(status, 200, "{open} is for anyone");
    }
    for data in ["/functions", "/status", "/functions/test/guarded/logs"] {
        for (token, want) in [
            (None, 401),
            (Some("not-the-token-of-this-cluster"), 401),
            (Some(cluster::INTERNAL_TOKEN), 200),
        ] {
            let (status, body) = host.admin_get_with(data, token).await?;
            assert_eq!(status, want, "{data} with {token:?}: {body}");
            if want == 401 {
                assert!(!body.contains("guarded"), "{data}: {body}");
            }
        }
    }
    let status = client()
        .get(format!("http://{}/status", host.admin))
        .header("wasmless-token", cluster::INTERNAL_TOKEN)
        .send()
        .await?;
    assert_eq!(status.status(), 200);
    assert!(status.text().await?.contains("guarded"));

    // By Host it answers; by path only on a host started with --path-routing.
    let (status, body) = host.get("127.0.0.1", "/fn/test/guarded/").await?;
    assert_eq!(status, 404, "{body}");
    let routed = cluster
        .host_with(
            &artifacts,
            routed_cache.path(),
            "127.0.0.1",
            &["--path-routing"],
        )
        .await?;
    wait_until(Duration::from_secs(60), || async {
        matches!(routed.get("127.0.0.1", "/fn/test/guarded/").await, Ok((200, b)) if b == "guarded ok")
    })
    .await?;
    Ok(())
}

/// `--max-resident-functions` on a cluster host: a function whose code was dropped is loaded
/// again from the host's cache at its next request, checked against its digest each time: a
/// cached file changed behind the host's back is refused (500, never run) while the others
/// keep serving.
#[tokio::test]
async fn dropped_code_is_loaded_again_from_the_checked_cache() -> anyhow::Result<()> {
    let cluster = Cluster::with_functions().await?;
    let (store, cache) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (_controller, artifacts) = cluster.controller(store.path(), &["--ready-when", "built"])?;
    for name in ["a", "b"] {
        cluster.apply(&wat_manifest("test", name, &format!("{name} ok")))?;
    }
    let host = cluster
        .host_with(
            &artifacts,
            cache.path(),
            "127.0.0.1",
            &["--max-resident-functions", "1"],
        )
        .await?;
    wait_until(Duration::from_secs(120), || async {
        matches!(host.get("a.test", "/").await, Ok((200, _)))
            && matches!(host.get("b.test", "/").await, Ok((200, _)))
    })
    .await?;
    // Each request drops the other's code: every one is a load from the cache.
    for _ in 0..3 {
        assert_eq!(host.get("a.test", "/").await?, (200, "a ok".to_string()));
        assert_eq!(host.get("b.test", "/").await?, (200, "b ok".to_string()));
    }
    let metrics = host.admin_get("/metrics").await?;
    assert_eq!(metric(&metrics, "wasmless_functions_loaded"), Some(2.0));
    assert_eq!(metric(&metrics, "wasmless_functions_resident"), Some(1.0));

    // `a`'s precompiled file changes in the cache while its code is dropped (b was used last).
    let digest = cluster.function_field("a", "{.status.artifact.digest}")?;
    let name = digest.replace(':', "-");
    let precompiled: Vec<_> = files_under(cache.path())
        .into_iter()
        .map(|(path, _)| path)
        .filter(|p| p.ends_with(&name) && !p.parent().is_some_and(|d| d.ends_with("wasm")))
        .collect();
    assert_eq!(precompiled.len(), 1, "{precompiled:?}");
    std::fs::write(&precompiled[0], b"not what the controller precompiled")?;
    let (status, body) = host.get("a.test", "/").await?;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("recorded when it was built"), "{body}");
    assert_eq!(host.get("b.test", "/").await?, (200, "b ok".to_string()));

    // A status naming anything but a digest is refused by the API server itself (the CRD's
    // pattern), so no host ever reads one as a path.
    let poisoned = cluster
        .kubectl(&[
            "patch",
            "fn",
            "b",
            "-n",
            "test",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"artifact":{"digest":"sha256:../../../etc/passwd"}}}"#,
        ])
        .expect_err("the API server refuses a status whose digest is not one");
    assert!(
        format!("{poisoned:#}").contains("should match"),
        "{poisoned:#}"
    );
    assert_eq!(host.get("b.test", "/").await?, (200, "b ok".to_string()));
    Ok(())
}

/// `--store-max-bytes`: past it the artifacts no Function references go, least recently used
/// first, and those a Function references stay and serve. Files used in the last 10 minutes are
/// kept too, so the test ages every file first, as if last used an hour ago.
#[tokio::test]
async fn the_store_evicts_only_what_no_function_references() -> anyhow::Result<()> {
    let cluster = Cluster::with_functions().await?;
    let (store, cache) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (controller, artifacts) = cluster.controller(
        store.path(),
        &["--ready-when", "built", "--store-max-bytes", "1"],
    )?;
    for name in ["kept", "dropped"] {
        cluster.apply(&wat_manifest("test", name, &format!("{name} ok")))?;
    }
    wait_until(Duration::from_secs(120), || async {
        cluster.phase("kept") == "Ready" && cluster.phase("dropped") == "Ready"
    })
    .await?;
    let digest = |name| cluster.function_field(name, "{.status.artifact.digest}");
    let (kept, dropped) = (digest("kept")?, digest("dropped")?);
    assert_ne!(kept, dropped);
    cluster.kubectl(&["delete", "fn", "dropped", "-n", "test"])?;
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for (path, _) in files_under(store.path()) {
        std::fs::File::options()
            .write(true)
            .open(&path)?
            .set_modified(an_hour_ago)?;
    }

    // Files of a digest: its wasm and its precompiled forms.
    let files_of = |digest: &str| {
        let name = digest.replace(':', "-");
        files_under(store.path())
            .into_iter()
            .filter(|(p, _)| p.file_name().is_some_and(|n| n.to_str() == Some(&name)))
            .count()
    };
    assert_eq!(files_of(&dropped), 2, "wasm and precompiled");
    wait_until(Duration::from_secs(120), || {
        let gone = files_of(&dropped) == 0;
        async move { gone }
    })
    .await?;
    assert_eq!(
        files_of(&kept),
        2,
        "a referenced artifact stays over the bound"
    );
    // (Logged once the walk ends, which can be just after the files went.)
    wait_until(Duration::from_secs(30), || {
        let logged = controller.log_contains("evicted unused artifacts from the store");
        async move { logged }
    })
    .await?;
    // What stays serves: a new host fetches it.
    let host = cluster.host(&artifacts, cache.path()).await?;
    until_body(&host, "kept.test", "kept ok").await?;
    Ok(())
}

/// A leader that loses its Lease (paused past the Lease's expiry, as a process starved of CPU
/// can be) stops reconciling as soon as it runs again: the standby leads, a Function applied
/// then is built by the standby alone, and SIGTERM still ends the old leader gracefully.
#[tokio::test]
async fn a_leader_that_loses_its_lease_stops_reconciling() -> anyhow::Result<()> {
    let cluster = Cluster::with_functions().await?;
    let store = tempfile::tempdir()?;
    let (mut first, _) = cluster.controller(store.path(), cluster::HOSTS_NOT_PODS)?;
    wait_until(Duration::from_secs(60), || {
        let leading = first.log_contains("leading: reconciling");
        async move { leading }
    })
    .await?;
    let (second, _) = cluster.controller(store.path(), cluster::HOSTS_NOT_PODS)?;
    wait_until(Duration::from_secs(60), || {
        let waiting = second.log_contains("waiting to lead");
        async move { waiting }
    })
    .await?;

    first.signal("STOP")?;
    let paused = Instant::now();
    wait_until(Duration::from_secs(90), || {
        let leading = second.log_contains("leading: reconciling");
        async move { leading }
    })
    .await?;
    let taken_over = paused.elapsed();
    first.signal("CONT")?;
    wait_until(Duration::from_secs(60), || {
        let lost = first.log_contains("lost the lease: stopped reconciling");
        async move { lost }
    })
    .await?;

    cluster.apply(&wat_manifest("test", "after-loss", "after the loss"))?;
    wait_until(Duration::from_secs(60), || async {
        cluster.phase("after-loss") == "Ready"
    })
    .await?;
    assert!(second.log_contains("built function=test/after-loss"));
    assert!(
        !first.log_contains("function=test/after-loss"),
        "the old leader reconciles nothing once it has lost the Lease"
    );
    let exit = first.terminate()?;
    assert!(exit.success(), "graceful shutdown exits 0: {exit}");
    report(&format!(
        "timing: the standby leads {:.1} s after the leader is paused",
        taken_over.as_secs_f64()
    ));
    Ok(())
}

/// A WAT function that prints its environment, then `FILE=` and the first 4 KiB of `password`
/// in its first preopened directory (a mount), if it can open it.
const PRINTS_ENV_AND_FILE: &str = r#"(module
      (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_get" (func $environ (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "path_open"
        (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 2)
      (data (i32.const 64) "Content-Type: text/plain\n\n")
      (data (i32.const 100) "FILE=")
      (data (i32.const 120) "password")
      (func $write_all (param $ptr i32) (param $len i32)
        (block $done
          (loop $more
            (br_if $done (i32.eqz (local.get $len)))
            (i32.store (i32.const 0) (local.get $ptr))
            (i32.store (i32.const 4) (local.get $len))
            (br_if $done (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
            (local.set $ptr (i32.add (local.get $ptr) (i32.load (i32.const 8))))
            (local.set $len (i32.sub (local.get $len) (i32.load (i32.const 8))))
            (br $more))))
      (func (export "_start")
        (local $i i32) (local $len i32)
        (call $write_all (i32.const 64) (i32.const 26))
        (drop (call $sizes (i32.const 16) (i32.const 20)))
        (drop (call $environ (i32.const 1024) (i32.const 65536)))
        (local.set $len (i32.load (i32.const 20)))
        (block $end
          (loop $each
            (br_if $end (i32.ge_u (local.get $i) (local.get $len)))
            (if (i32.eqz (i32.load8_u (i32.add (i32.const 65536) (local.get $i))))
              (then (i32.store8 (i32.add (i32.const 65536) (local.get $i)) (i32.const 10))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $each)))
        (call $write_all (i32.const 65536) (local.get $len))
        (call $write_all (i32.const 100) (i32.const 5))
        ;; fd 3 is the first preopen; rights: fd_read only (the mount is read-only)
        (if (i32.eqz (call $path_open (i32.const 3) (i32.const 0) (i32.const 120) (i32.const 8)
              (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))
          (then
            (i32.store (i32.const 0) (i32.const 4096))
            (i32.store (i32.const 4) (i32.const 4096))
            (drop (call $fd_read (i32.load (i32.const 200)) (i32.const 0) (i32.const 1) (i32.const 204)))
            (call $write_all (i32.const 4096) (i32.load (i32.const 204)))))))"#;

/// A Kubeless manifest as `kubeless function deploy --env GREETING=container --secrets db
/// --memory 64Mi --cpu 100m` writes it (plus an env `valueFrom` of the Secret in the container),
/// with only its apiVersion changed and `spec.env` overriding one variable.
fn kubeless_reader() -> String {
    let source = PRINTS_ENV_AND_FILE.replace('\n', "\n    ");
    format!(
        r#"apiVersion: wasmless.dev/v1alpha1
kind: Function
metadata:
  name: reader
  namespace: test
  labels: {{created-by: kubeless, function: reader}}
spec:
  runtime: wat
  handler: reader.main
  deps: ""
  timeout: "180"
  function-content-type: text
  env:
  - {{name: OVERRIDDEN, value: by-spec}}
  function: |
    {source}
  deployment:
    metadata: {{creationTimestamp: null}}
    spec:
      replicas: 2
      strategy: {{}}
      template:
        metadata: {{creationTimestamp: null}}
        spec:
          containers:
          - name: ""
            image: kubeless/python:3.7
            env:
            - {{name: GREETING, value: container}}
            - {{name: OVERRIDDEN, value: by-container}}
            - name: PASSWORD
              valueFrom: {{secretKeyRef: {{name: db, key: password}}}}
            resources:
              limits: {{cpu: 100m, memory: 64Mi}}
              requests: {{cpu: 100m, memory: 64Mi}}
            volumeMounts:
            - {{name: db-vol, mountPath: /db}}
          volumes:
          - name: db-vol
            secret: {{secretName: db}}
    status: {{}}
  service:
    ports: [{{name: http-function-port, port: 8080, protocol: TCP, targetPort: 8080}}]
    selector: {{created-by: kubeless, function: reader}}
    type: ClusterIP
"#
    )
}

/// What `host` answers for Host `name` (empty when it does not).
async fn body_of(host: &Served, name: &str) -> String {
    host.get(name, "/")
        .await
        .map(|(_, b)| b)
        .unwrap_or_default()
}

fn secret_yaml(namespace: &str, name: &str, key: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\nstringData: {{{key}: {value}}}\n"
    )
}

#[tokio::test]
async fn secrets_reach_functions_by_env_and_file_and_never_leak() -> anyhow::Result<()> {
    let Some(ip) = local_ip() else {
        report("secrets: skipped: no non-loopback IPv4 address for a host pod");
        return Ok(());
    };
    const FIRST: &str = "first-s3cret-7f3a9c";
    const SECOND: &str = "second-s3cret-91bc2e";
    const FOREIGN: &str = "foreign-s3cret-5e1d08";
    const SETTING: &str = "configured-mode-44aa";
    let cluster = Cluster::with_functions().await?;
    cluster.kubectl(&["create", "namespace", "wasmless"])?;
    let (store, cache) = (tempfile::tempdir()?, tempfile::tempdir()?);
    // Ready asks the host pods, so a host's refusal reaches the Function's status.
    let (controller, artifacts) =
        cluster.controller(store.path(), &["--host-namespace", "wasmless"])?;
    let host = cluster.host_on(&artifacts, cache.path(), &ip).await?;
    cluster
        .host_pod("wasmless", "wasmless-host-0", &host)
        .await?;
    cluster.apply(&secret_yaml("test", "db", "password", FIRST))?;
    cluster.apply(&secret_yaml("default", "elsewhere", "password", FOREIGN))?;
    cluster.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: test}}\ndata: {{mode: {SETTING}}}\n"
    ))?;

    // The Kubeless manifest: env (with valueFrom) and the secret volume of its container kept,
    // spec.env winning, the memory limit the cap, and what cannot be honoured listed.
    cluster.apply(&kubeless_reader())?;
    wait_until(Duration::from_secs(90), || async {
        body_of(&host, "reader.test")
            .await
            .contains(&format!("FILE={FIRST}"))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: {}", cluster.log_tail("kube-apiserver")))?;
    let first = body_of(&host, "reader.test").await;
    for line in [
        &format!("PASSWORD={FIRST}"),
        "GREETING=container",
        "OVERRIDDEN=by-spec",
        "FUNC_MEMORY_LIMIT=67108864",
        "FUNC_TIMEOUT=180",
    ] {
        assert!(first.lines().any(|l| l == line), "{line} in {first}");
    }
    assert!(!first.contains("by-container"), "{first}");
    until_ready_condition(&cluster, "reader", "Ready", SERVED_BY_ONE).await?;
    let ignored = cluster.function_field(
        "reader",
        r#"{.status.conditions[?(@.type=="FieldsHonoured")].message}"#,
    )?;
    for field in [
        "spec.deployment.spec.replicas",
        "containers[0].image",
        "containers[0].resources.limits.cpu",
        "containers[0].resources.requests",
        "spec.service",
    ] {
        assert!(ignored.contains(field), "{field} in {ignored}");
    }

    // The Secret changes: the next requests see the new value, in env and file, no rebuild.
    cluster.apply(&secret_yaml("test", "db", "password", SECOND))?;
    wait_until(Duration::from_secs(60), || async {
        let now = body_of(&host, "reader.test").await;
        now.contains(&format!("FILE={SECOND}")) && now.contains(&format!("PASSWORD={SECOND}"))
    })
    .await?;
    assert!(!body_of(&host, "reader.test").await.contains(FIRST));
    assert_eq!(
        controller.log_count("built generation"),
        1,
        "a changed Secret is no rebuild"
    );

    // spec.env's own valueFrom, from a Secret and a ConfigMap.
    cluster.apply(&function_yaml(
        "plain",
        &format!(
            "runtime: wat, function: {source:?}, env: [{{name: MODE, valueFrom: {{configMapKeyRef: {{name: settings, key: mode}}}}}}, {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: db, key: password}}}}}}, {{name: MAYBE, valueFrom: {{secretKeyRef: {{name: db, key: absent, optional: true}}}}}}]",
            source = PRINTS_ENV_AND_FILE
        ),
    ))?;
    wait_until(Duration::from_secs(60), || async {
        let b = body_of(&host, "plain.test").await;
        b.contains(&format!("MODE={SETTING}\n")) && b.contains(&format!("PASSWORD={SECOND}\n"))
    })
    .await?;

    // A missing required key, and a Secret of another namespace: the Function's status says so.
    let reads = |name: &str, secret: &str, key: &str| {
        function_yaml(
            name,
            &format!(
                "runtime: wat, function: {source:?}, env: [{{name: P, valueFrom: {{secretKeyRef: {{name: {secret}, key: {key}}}}}}}]",
                source = PRINTS_ENV_AND_FILE
            ),
        )
    };
    cluster.apply(&reads("missing", "db", "nope"))?;
    until_ready_condition(
        &cluster,
        "missing",
        "Loading",
        r#"False HostRefused host wasmless-host-0: env P: Secret "db" has no key "nope""#,
    )
    .await?;
    // Only the Function's own namespace is ever read: `elsewhere` is in `default`.
    cluster.apply(&reads("stranger", "elsewhere", "password"))?;
    until_ready_condition(
        &cluster,
        "stranger",
        "Loading",
        r#"False HostRefused host wasmless-host-0: env P: Secret "elsewhere" does not exist in namespace "test""#,
    )
    .await?;
    // Nothing can name another namespace: a field for it does not exist, and a path is refused.
    let with_namespace = reads("sneaky", "elsewhere", "password")
        .replace("key: password}", "key: password, namespace: default}");
    let refused = admitted(&cluster, &with_namespace).unwrap_err().to_string();
    assert!(refused.contains("unknown field"), "{refused}");
    cluster.apply(&reads("pathy", "default/elsewhere", "password"))?;
    wait_until(Duration::from_secs(60), || async {
        let built = built_condition(&cluster, "pathy");
        built.starts_with("Failed|InvalidSpec|") && built.contains("own namespace")
    })
    .await?;
    for (name, host_name) in [("missing", "missing.test"), ("stranger", "stranger.test")] {
        let (status, body) = host.get(host_name, "/").await?;
        assert_eq!(status, 404, "{name}: {body}");
    }

    // No value anywhere but in the function's answers: status, events, logs, artifacts.
    let statuses = cluster.kubectl(&["get", "fn", "-A", "-o", "yaml"])?;
    let events = cluster.kubectl(&["get", "events", "-A", "-o", "yaml"])?;
    assert!(statuses.contains("HostRefused") && events.contains("Built"));
    let mut stored = Vec::new();
    for dir in [store.path(), cache.path()] {
        for (path, _) in files_under(dir) {
            stored.push((path.display().to_string(), std::fs::read(&path)?));
        }
    }
    assert!(!stored.is_empty());
    for value in [FIRST, SECOND, FOREIGN, SETTING] {
        assert!(!statuses.contains(value), "{value} in status");
        assert!(!events.contains(value), "{value} in events");
        assert!(
            !controller.log_contains(value),
            "{value} in the controller's log"
        );
        assert!(!host.log_contains(value), "{value} in the host's log");
        for (path, bytes) in &stored {
            let found = bytes.windows(value.len()).any(|w| w == value.as_bytes());
            assert!(!found, "{value} in {path}");
        }
    }
    Ok(())
}
