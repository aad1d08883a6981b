//! The controller as Metacontroller's webhook, on a real API server: a small harness plays
//! Metacontroller's part (watch the parent, POST sync, apply the returned children with
//! ownerReferences, write the returned status to the status subresource), and the function
//! answers over HTTP from the host.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasmless_e2e::cluster::{self, Cluster};
use wasmless_e2e::{Process, binary, client, report, wait_until, wat_manifest};

/// What Metacontroller sends the hook (its CompositeController's `webhook.authorization`).
const HOOK_TOKEN: &str = "e2e-metacontroller-hook-token";

/// One round of Metacontroller's sync loop for `name`; returns the hook's response.
async fn sync_once(cluster: &Cluster, hook: &str, name: &str) -> anyhow::Result<Value> {
    let parent: Value =
        serde_json::from_str(&cluster.kubectl(&["get", "fn", name, "-n", "test", "-o", "json"])?)?;
    let services: Value = serde_json::from_str(&cluster.kubectl(&[
        "get",
        "svc",
        "-n",
        "test",
        "-l",
        &format!("wasmless.dev/function={name}"),
        "-o",
        "json",
    ])?)?;
    // Hook v1: children keyed Kind.version, then by name; every child rule has an entry.
    let mut by_name = serde_json::Map::new();
    for svc in services["items"].as_array().cloned().unwrap_or_default() {
        if let Some(n) = svc["metadata"]["name"].as_str() {
            by_name.insert(n.to_string(), svc.clone());
        }
    }
    let request = json!({
        "controller": {"apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "CompositeController", "metadata": {"name": "wasmless"}},
        "parent": parent,
        "children": {"Service.v1": by_name},
        "related": {},
        "finalizing": false,
    });
    let response: Value = client()
        .post(hook)
        .bearer_auth(HOOK_TOKEN)
        .json(&request)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;

    let owner = json!({
        "apiVersion": parent["apiVersion"], "kind": parent["kind"], "name": parent["metadata"]["name"],
        "uid": parent["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
    });
    for child in response["children"].as_array().cloned().unwrap_or_default() {
        let mut child = child;
        child["metadata"]["ownerReferences"] = json!([owner]);
        cluster.apply(&child.to_string())?;
    }
    let patch = json!({ "status": response["status"] }).to_string();
    cluster.kubectl(&[
        "patch",
        "fn",
        name,
        "-n",
        "test",
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ])?;
    Ok(response)
}

#[tokio::test]
async fn metacontroller_mode_on_a_real_api_server() -> anyhow::Result<()> {
    let cluster = Cluster::with_functions().await?;

    // The hook runs with no API access at all.
    let store = tempfile::tempdir()?;
    let secrets = tempfile::tempdir()?;
    let hook_token = secrets.path().join("hook-token");
    std::fs::write(&hook_token, HOOK_TOKEN)?;
    let mut command = Command::new(binary("wasmless-controller"));
    command
        .args([
            "--mode",
            "metacontroller",
            "--listen",
            "127.0.0.1:0",
            "--store",
        ])
        .arg(store.path())
        // A native controller runs beside it (below): the hook takes the labelled Functions only.
        .arg("--share-with-native")
        // Builds go to the suite's builder, as the native controller's do.
        .args(["--builder-url", &cluster.builder()?, "--builder-token-file"])
        .arg(cluster.builder_token_file())
        .arg("--token-file")
        .arg(cluster.token_file()?)
        .args(["--hook-listen", "127.0.0.1:0", "--hook-token-file"])
        .arg(&hook_token)
        .env("KUBECONFIG", "/nonexistent");
    let hook_process = Process::spawn(command, "hook")?;
    let base = format!(
        "http://{}",
        hook_process.address("wasmless-controller: artifacts on ")?
    );
    let hook = format!(
        "http://{}/metacontroller/sync",
        hook_process.address("wasmless-controller: hooks on ")?
    );
    // The hooks listen apart from the artifacts, and answer nothing without their token.
    let on_artifacts_port = client()
        .post(format!("{base}/metacontroller/sync"))
        .bearer_auth(HOOK_TOKEN)
        .body("{}")
        .send()
        .await?;
    assert_eq!(
        on_artifacts_port.status(),
        401,
        "the artifacts' port has no hooks, and answers nothing without its own token"
    );
    for token in [
        None,
        Some("wrong-token-of-enough-length"),
        Some(cluster::INTERNAL_TOKEN),
    ] {
        let mut request = client().post(&hook).body(r#"{"parent": {}}"#);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        assert_eq!(response.status(), 401, "hook with {token:?}");
        assert!(
            !response.text().await?.contains("status"),
            "nothing answered"
        );
    }

    // A native controller runs beside it and must leave the Function alone.
    let native_store = tempfile::tempdir()?;
    let (native, _) = cluster.controller(native_store.path(), cluster::HOSTS_NOT_PODS)?;
    let cache = tempfile::tempdir()?;
    let host = cluster.host(&base, cache.path()).await?;

    let manifest = wat_manifest("test", "mc-hello", "hello from metacontroller mode").replace(
        "metadata: {name: mc-hello, namespace: test}",
        "metadata: {name: mc-hello, namespace: test, labels: {wasmless.dev/controller: metacontroller}}",
    );
    let started = Instant::now();
    cluster.apply(&manifest)?;
    let mut rounds = 0;
    let mut phases = Vec::new();
    let mut digest;
    loop {
        let response = sync_once(&cluster, &hook, "mc-hello").await?;
        digest = response["status"]["artifact"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        rounds += 1;
        phases.push(
            response["status"]["phase"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        match response["resyncAfterSeconds"].as_f64() {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
            None => break,
        }
        anyhow::ensure!(rounds < 60, "the hook never settled: {phases:?}");
    }
    assert_eq!(
        phases.first().map(String::as_str),
        Some("Building"),
        "{phases:?}"
    );
    assert_eq!(
        phases.last().map(String::as_str),
        Some("Ready"),
        "{phases:?}"
    );
    // Every tenant's code is on the artifact server: only with its token.
    let artifact = format!("{base}/artifacts/{digest}");
    for token in [None, Some("wrong-token-of-enough-length"), Some(HOOK_TOKEN)] {
        let mut request = client().get(&artifact);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        assert_eq!(response.status(), 401, "artifact with {token:?}");
        assert!(!response.bytes().await?.starts_with(b"\0asm"));
    }
    let fetched = client()
        .get(&artifact)
        .bearer_auth(cluster::INTERNAL_TOKEN)
        .send()
        .await?;
    assert_eq!(fetched.status(), 200);
    assert!(fetched.bytes().await?.starts_with(b"\0asm"));
    wait_until(Duration::from_secs(60), || async {
        matches!(host.get("mc-hello.test", "/").await, Ok((200, b)) if b == "hello from metacontroller mode")
    })
    .await?;
    report(&format!(
        "timing: metacontroller mode, apply → first 200 {:.0} ms in {rounds} sync rounds",
        started.elapsed().as_secs_f64() * 1e3
    ));

    let status: Value = serde_json::from_str(&cluster.kubectl(&[
        "get",
        "fn",
        "mc-hello",
        "-n",
        "test",
        "-o",
        "jsonpath={.status}",
    ])?)?;
    assert_eq!(status["phase"], "Ready");
    assert_eq!(status["url"], "http://mc-hello.test:8080");
    let svc: Value = serde_json::from_str(
        &cluster.kubectl(&["get", "svc", "mc-hello", "-n", "test", "-o", "json"])?,
    )?;
    assert_eq!(svc["metadata"]["ownerReferences"][0]["kind"], "Function");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    assert!(
        !native.log_contains("function=test/mc-hello"),
        "the native controller left it alone"
    );

    // The same sync again changes nothing.
    let again = sync_once(&cluster, &hook, "mc-hello").await?;
    assert_eq!(again["status"]["artifact"], status["artifact"]);
    assert!(again.get("resyncAfterSeconds").is_none());

    // Deleting the Function garbage-collects the Service; the host stops serving it.
    cluster.kubectl(&["delete", "fn", "mc-hello", "-n", "test"])?;
    wait_until(Duration::from_secs(60), || async {
        matches!(host.get("mc-hello.test", "/").await, Ok((404, _)))
    })
    .await?;
    wait_until(Duration::from_secs(60), || {
        let gone = cluster
            .kubectl(&["get", "svc", "mc-hello", "-n", "test"])
            .is_err();
        async move { gone }
    })
    .await?;
    drop(hook_process);
    Ok(())
}
