//! Triggers on a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager),
//! driven with the real kubectl and the `wasmless trigger` verbs; controllers and a host run as
//! processes of their own and functions answer over real HTTP on loopback.
//!
//! - HTTPTrigger: its hostname and path answer through the host with its function's body, its
//!   Ingress is accepted by the API server with the expected rule, it only ever reaches its own
//!   namespace's function, and two triggers claiming a route: the older holds it.
//! - CronJobTrigger: a seconds-granular schedule with two controller replicas (the leader
//!   stopped halfway): every tick invoked once (Kubeless's event headers, one `event-id` per
//!   tick), never twice, and `status.lastScheduleTime` names the last.
//! - NATSTrigger, on a real NATS server: each message reaches every function its selector
//!   matches, with Kubeless's event headers, and a request gets their answers; failures are
//!   counted; another namespace's function is never reached; a deleted trigger reads nothing.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use wasmless_e2e::cli::{Run, run};
use wasmless_e2e::cluster::{self, Cluster};
use wasmless_e2e::{Process, Served, Up, binary, report, wait_until, wat_manifest};

/// `flags` and then `more`.
fn with<'a>(flags: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    flags.iter().chain(more).copied().collect()
}

/// `wasmless trigger <args>` against `cluster`, in namespace `namespace`.
fn trigger(cluster: &Cluster, namespace: &str, args: &[&str]) -> Run {
    let mut all: Vec<String> = vec!["trigger".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    all.extend([
        "--kubeconfig".into(),
        cluster.kubeconfig.display().to_string(),
        "-n".into(),
        namespace.into(),
    ]);
    run(&all)
}

/// A field of a trigger, through a kubectl jsonpath.
fn field(cluster: &Cluster, kind: &str, namespace: &str, name: &str, template: &str) -> String {
    cluster
        .kubectl(&[
            "get",
            kind,
            name,
            "-n",
            namespace,
            "-o",
            &format!("jsonpath={template}"),
        ])
        .unwrap_or_default()
}

fn ready_reason(cluster: &Cluster, kind: &str, namespace: &str, name: &str) -> String {
    field(
        cluster,
        kind,
        namespace,
        name,
        r#"{.status.conditions[?(@.type=="Ready")].reason}"#,
    )
}

async fn until_reason(
    cluster: &Cluster,
    kind: &str,
    namespace: &str,
    name: &str,
    reason: &str,
) -> anyhow::Result<()> {
    wait_until(Duration::from_secs(60), || {
        let now = ready_reason(cluster, kind, namespace, name);
        async move { now == reason }
    })
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{kind} {namespace}/{name} never {reason} ({e}): {}",
            field(cluster, kind, namespace, name, "{.status}")
        )
    })
}

async fn until_answer(served: &Served, host: &str, path: &str, body: &str) -> anyhow::Result<()> {
    wait_until(Duration::from_secs(60), || async {
        matches!(served.get(host, path).await, Ok((200, b)) if b == body)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{host}{path} never answered {body:?}: {e}"))
}

#[tokio::test]
async fn an_http_trigger_routes_its_hostname_to_its_own_namespaces_function() -> anyhow::Result<()>
{
    let cluster = Cluster::with_functions().await?;
    cluster.kubectl(&["create", "namespace", "other"])?;
    let store = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    let flags = with(
        cluster::HOSTS_NOT_PODS,
        &["--ingress-class", "wasmless-e2e"],
    );
    let (_controller, artifacts) = cluster.controller(store.path(), &flags)?;
    let host = cluster.host(&artifacts, cache.path()).await?;
    cluster.apply(&wat_manifest("test", "hello", "hello from test"))?;
    wait_until(Duration::from_secs(60), || async {
        cluster.phase("hello") == "Ready"
    })
    .await?;

    // Created with Kubeless's verb and flags; Kubeless wrote the path without its `/`.
    let created = trigger(
        &cluster,
        "test",
        &[
            "http",
            "create",
            "web",
            "--function-name",
            "hello",
            "--hostname",
            "hello.example.com",
            "--path",
            "api",
        ],
    );
    assert!(created.ok(), "{created:?}");
    until_answer(
        &host,
        "hello.example.com",
        "/api/items?x=1",
        "hello from test",
    )
    .await?;
    until_answer(&host, "Hello.Example.com:8080", "/api", "hello from test").await?;
    for path in ["/apix", "/", "/other/api"] {
        let (status, _) = host.get("hello.example.com", path).await?;
        assert_eq!(status, 404, "{path} is not under /api");
    }
    until_reason(&cluster, "httptrigger", "test", "web", "Routed").await?;
    assert_eq!(
        field(&cluster, "httptrigger", "test", "web", "{.status.url}"),
        "http://hello.example.com/api"
    );

    // The Ingress, accepted by the API server, owned by the trigger.
    let ingress: serde_json::Value = serde_json::from_str(
        &cluster.kubectl(&["get", "ingress", "web", "-n", "test", "-o", "json"])?,
    )?;
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(rule["host"], "hello.example.com");
    let path = &rule["http"]["paths"][0];
    assert_eq!(path["path"], "/api");
    assert_eq!(path["pathType"], "Prefix");
    assert_eq!(path["backend"]["service"]["name"], "hello");
    assert_eq!(path["backend"]["service"]["port"]["number"], 8080);
    assert_eq!(ingress["spec"]["ingressClassName"], "wasmless-e2e");
    assert_eq!(
        ingress["metadata"]["ownerReferences"][0]["kind"],
        "HTTPTrigger"
    );
    assert_eq!(ingress["metadata"]["ownerReferences"][0]["name"], "web");

    // Another namespace's trigger naming `hello` reaches `other`'s hello, never test's.
    let steal = trigger(
        &cluster,
        "other",
        &[
            "http",
            "create",
            "steal",
            "--function-name",
            "hello",
            "--hostname",
            "steal.example.com",
        ],
    );
    assert!(steal.ok(), "{steal:?}");
    until_reason(
        &cluster,
        "httptrigger",
        "other",
        "steal",
        "FunctionNotFound",
    )
    .await?;
    let (status, body) = host.get("steal.example.com", "/").await?;
    assert_eq!(status, 404, "{body}");
    cluster.apply(&wat_manifest("other", "hello", "hello from other"))?;
    until_answer(&host, "steal.example.com", "/", "hello from other").await?;
    until_reason(&cluster, "httptrigger", "other", "steal", "Routed").await?;

    // A Service name as a hostname is refused: it would take another namespace's traffic.
    let refused = trigger(
        &cluster,
        "other",
        &[
            "http",
            "create",
            "svc",
            "--function-name",
            "hello",
            "--hostname",
            "hello.test",
        ],
    );
    assert!(!refused.ok());
    assert!(
        refused.error().unwrap_or_default().contains("Service name"),
        "{refused:?}"
    );
    cluster.apply(
        "apiVersion: wasmless.dev/v1alpha1\nkind: HTTPTrigger\nmetadata: {name: svc, namespace: other}\nspec: {function-name: hello, host-name: hello.test}\n",
    )?;
    until_reason(&cluster, "httptrigger", "other", "svc", "InvalidSpec").await?;
    until_answer(&host, "hello.test", "/", "hello from test").await?;

    // Two triggers claim one route: the older holds it; the younger says so and has no Ingress.
    // creationTimestamp counts whole seconds and a tie goes to the first namespace (`other`
    // before `test`): created within web's second, late would be the holder.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cluster.apply(
        "apiVersion: wasmless.dev/v1alpha1\nkind: HTTPTrigger\nmetadata: {name: late, namespace: other}\nspec: {function-name: hello, host-name: hello.example.com, path: /api}\n",
    )?;
    until_reason(&cluster, "httptrigger", "other", "late", "Conflict").await?;
    let message = field(
        &cluster,
        "httptrigger",
        "other",
        "late",
        r#"{.status.conditions[?(@.type=="Ready")].message}"#,
    );
    assert!(message.contains("test/web"), "{message}");
    assert!(
        cluster
            .kubectl(&["get", "ingress", "late", "-n", "other"])
            .is_err()
    );
    until_answer(&host, "hello.example.com", "/api", "hello from test").await?;

    // `list` shows both namespaces' triggers; `update` moves the path; `delete` hands the route
    // over.
    let listed = trigger(&cluster, "test", &["http", "list", "-A"]);
    assert!(listed.ok(), "{listed:?}");
    for needle in [
        "web",
        "steal",
        "late",
        "Conflict",
        "http://hello.example.com/api",
    ] {
        assert!(
            listed.stdout.contains(needle),
            "{needle}: {}",
            listed.stdout
        );
    }
    let updated = trigger(
        &cluster,
        "test",
        &["http", "update", "web", "--path", "/v2"],
    );
    assert!(updated.ok(), "{updated:?}");
    until_answer(&host, "hello.example.com", "/v2/x", "hello from test").await?;
    until_reason(&cluster, "httptrigger", "other", "late", "Routed").await?;
    until_answer(&host, "hello.example.com", "/api", "hello from other").await?;
    let deleted = trigger(&cluster, "test", &["http", "delete", "web"]);
    assert!(deleted.ok(), "{deleted:?}");
    wait_until(Duration::from_secs(60), || async {
        matches!(host.get("hello.example.com", "/v2").await, Ok((404, _)))
    })
    .await?;
    // Garbage-collected with its trigger.
    wait_until(Duration::from_secs(60), || async {
        cluster
            .kubectl(&["get", "ingress", "web", "-n", "test"])
            .is_err()
    })
    .await?;
    report(
        "triggers: an HTTPTrigger's hostname and path routed by the host, its Ingress accepted; another namespace's, a Service name and a conflicting route refused",
    );
    Ok(())
}

/// A WAGI function that answers `ticked` and writes its environment (the request's CGI
/// variables, `HTTP_EVENT_ID` among them) to stderr: the host's log buffer of the function.
fn env_to_stderr(name: &str) -> String {
    format!(
        r#"apiVersion: wasmless.dev/v1alpha1
kind: Function
metadata: {{name: {name}, namespace: test}}
spec:
  runtime: wat
  function: |
    (module
      (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_get" (func $environ (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 2)
      (data (i32.const 64) "Content-Type: text/plain\n\nticked\n")
      (func $write_all (param $fd i32) (param $ptr i32) (param $len i32)
        (block $done
          (loop $more
            (br_if $done (i32.eqz (local.get $len)))
            (i32.store (i32.const 0) (local.get $ptr))
            (i32.store (i32.const 4) (local.get $len))
            (br_if $done (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
            (local.set $ptr (i32.add (local.get $ptr) (i32.load (i32.const 8))))
            (local.set $len (i32.sub (local.get $len) (i32.load (i32.const 8))))
            (br $more))))
      (func (export "_start")
        (local $i i32) (local $len i32)
        (call $write_all (i32.const 1) (i32.const 64) (i32.const 33))
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
        (call $write_all (i32.const 2) (i32.const 65536) (local.get $len))))
"#
    )
}

/// `wasmless-host` on the function port `port`, as [`Cluster::host`] starts one.
async fn host_on_port(
    cluster: &Cluster,
    artifacts: &str,
    cache: &Path,
    port: u16,
) -> anyhow::Result<Served> {
    let mut command = Command::new(binary("wasmless-host"));
    command
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin",
            "127.0.0.1:0",
        ])
        .args(["--artifacts-url", artifacts, "--cache"])
        .arg(cache)
        .arg("--token-file")
        .arg(cluster.token_file()?)
        .env("KUBECONFIG", &cluster.kubeconfig);
    Served::start(command, "wasmless-host").await
}

/// The values of `VAR=` lines in the log buffer of function `test/<name>` on `host`.
async fn logged(host: &Served, name: &str, var: &str) -> anyhow::Result<Vec<String>> {
    let (status, body) = host
        .admin_get_with(
            &format!("/functions/test/{name}/logs"),
            Some(cluster::INTERNAL_TOKEN),
        )
        .await?;
    if status == 404 {
        return Ok(Vec::new());
    }
    let lines: Vec<serde_json::Value> = serde_json::from_str(&body)?;
    let prefix = format!("{var}=");
    Ok(lines
        .iter()
        .filter_map(|l| {
            l["line"]
                .as_str()?
                .strip_prefix(&prefix)
                .map(str::to_string)
        })
        .collect())
}

#[tokio::test]
async fn a_cron_trigger_fires_each_tick_once_across_two_controllers() -> anyhow::Result<()> {
    let cluster = Cluster::with_functions().await?;
    let store = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    // Invocations go to the host's function port, with Host: <name>.<namespace>.
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let functions_url = format!("http://127.0.0.1:{port}");
    let flags = with(
        cluster::HOSTS_NOT_PODS,
        &["--functions-url", &functions_url],
    );
    let (first, artifacts) = cluster.controller(store.path(), &flags)?;
    let (second, _) = cluster.controller(store.path(), &flags)?;
    let mut controllers = vec![first, second];
    let host = host_on_port(&cluster, &artifacts, cache.path(), port).await?;
    cluster.apply(&env_to_stderr("tick"))?;
    wait_until(Duration::from_secs(60), || async {
        cluster.phase("tick") == "Ready"
    })
    .await?;

    // Every 2 s (a seconds field first); Kubeless's `--function` flag.
    let created = trigger(
        &cluster,
        "test",
        &[
            "cronjob",
            "create",
            "every2",
            "--function",
            "tick",
            "--schedule",
            "*/2 * * * * *",
        ],
    );
    assert!(created.ok(), "{created:?}");
    let ids = || logged(&host, "tick", "HTTP_EVENT_ID");
    wait_until(Duration::from_secs(120), || async {
        ids().await.is_ok_and(|ids| ids.len() >= 3)
    })
    .await?;
    let fired = |p: &Process| p.log_count("cron tick fired");
    let leader = if fired(&controllers[0]) > 0 { 0 } else { 1 };
    assert_eq!(
        fired(&controllers[1 - leader]),
        0,
        "only the leader fires while both run"
    );

    // The leader stops (releasing its Lease): the other takes over the schedule.
    let mut stopped = controllers.remove(leader);
    stopped.terminate()?;
    let by_first = fired(&stopped);
    let before = ids().await?.len();
    wait_until(Duration::from_secs(120), || async {
        ids().await.is_ok_and(|ids| ids.len() >= before + 3)
    })
    .await?;
    let standby = &controllers[0];
    assert!(
        fired(standby) > 0,
        "the standby fired after the leader stopped"
    );

    // Suspended: once its status says so, nothing more is invoked.
    let suspended = trigger(
        &cluster,
        "test",
        &["cronjob", "update", "every2", "--suspend"],
    );
    assert!(suspended.ok(), "{suspended:?}");
    until_reason(&cluster, "cronjobtrigger", "test", "every2", "Suspended").await?;

    let ids = ids().await?;
    let times = logged(&host, "tick", "HTTP_EVENT_TIME").await?;
    let namespaces = logged(&host, "tick", "HTTP_EVENT_NAMESPACE").await?;
    let types = logged(&host, "tick", "HTTP_EVENT_TYPE").await?;
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "a tick invoked twice: {ids:?}");
    let ticks: BTreeSet<&String> = times.iter().collect();
    assert_eq!(
        ticks.len(),
        times.len(),
        "a tick time seen twice: {times:?}"
    );
    let by_second = fired(standby);
    assert_eq!(
        by_first + by_second,
        ids.len(),
        "every firing the controllers logged reached the function once"
    );
    assert!(
        namespaces.iter().all(|n| n == "cronjobtrigger.kubeless.io"),
        "{namespaces:?}"
    );
    assert!(types.iter().all(|t| t == "application/json"), "{types:?}");
    // Ticks of the schedule: whole even seconds.
    for time in &times {
        // RFC 3339, whole seconds: 2026-01-01T00:00:04Z.
        let second: u32 = time.get(17..19).and_then(|s| s.parse().ok()).unwrap_or(1);
        assert_eq!(second % 2, 0, "{time} is not a tick of */2");
    }
    let last = times.iter().max().cloned().unwrap_or_default();
    assert_eq!(
        field(
            &cluster,
            "cronjobtrigger",
            "test",
            "every2",
            "{.status.lastScheduleTime}"
        ),
        last
    );
    assert_eq!(
        field(
            &cluster,
            "cronjobtrigger",
            "test",
            "every2",
            "{.status.lastResult.statusCode}"
        ),
        "200"
    );
    let listed = trigger(&cluster, "test", &["cronjob", "list"]);
    assert!(listed.ok() && listed.stdout.contains(&last), "{listed:?}");

    // A schedule that does not parse, and a function that does not exist, say so.
    cluster.apply(
        "apiVersion: wasmless.dev/v1alpha1\nkind: CronJobTrigger\nmetadata: {name: bad, namespace: test}\nspec: {function-name: tick, schedule: every minute}\n",
    )?;
    until_reason(&cluster, "cronjobtrigger", "test", "bad", "InvalidSpec").await?;
    cluster.apply(
        "apiVersion: wasmless.dev/v1alpha1\nkind: CronJobTrigger\nmetadata: {name: nobody, namespace: test}\nspec: {function-name: nobody, schedule: '@every 1s'}\n",
    )?;
    until_reason(
        &cluster,
        "cronjobtrigger",
        "test",
        "nobody",
        "FunctionNotFound",
    )
    .await?;
    let deleted = trigger(&cluster, "test", &["cronjob", "delete", "every2"]);
    assert!(deleted.ok(), "{deleted:?}");
    report(&format!(
        "triggers: */2 * * * * * with two controllers: {} ticks invoked once each ({by_first} by the first leader, {} by the second), none twice",
        ids.len(),
        by_second
    ));
    Ok(())
}

/// `wasmless up` reads triggers from its directory: an HTTPTrigger's hostname answers on its
/// function listener, a CronJobTrigger invokes with Kubeless's headers, and both stop with
/// their file.
#[tokio::test]
async fn wasmless_up_serves_the_triggers_of_its_directory() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("tick.yaml"), env_to_stderr("tick"))?;
    let triggers = dir.path().join("triggers.yaml");
    std::fs::write(
        &triggers,
        "apiVersion: wasmless.dev/v1alpha1\nkind: HTTPTrigger\nmetadata: {name: web, namespace: test}\nspec: {function-name: tick, host-name: tick.example.com, path: /t}\n---\napiVersion: wasmless.dev/v1alpha1\nkind: CronJobTrigger\nmetadata: {name: every, namespace: test}\nspec: {function-name: tick, schedule: '@every 1s'}\n",
    )?;
    let up = Up::start(dir.path(), &[]).await?;
    until_answer(&up, "tick.example.com", "/t/x", "ticked\n").await?;
    let (status, _) = up.get("tick.example.com", "/other").await?;
    assert_eq!(status, 404);
    wait_until(Duration::from_secs(60), || async {
        logged(&up, "tick", "HTTP_EVENT_NAMESPACE")
            .await
            .is_ok_and(|n| n.len() >= 2)
    })
    .await?;
    let namespaces = logged(&up, "tick", "HTTP_EVENT_NAMESPACE").await?;
    assert!(
        namespaces.iter().all(|n| n == "cronjobtrigger.kubeless.io"),
        "{namespaces:?}"
    );
    let ids = logged(&up, "tick", "HTTP_EVENT_ID").await?;
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "{ids:?}");

    std::fs::remove_file(&triggers)?;
    wait_until(Duration::from_secs(60), || async {
        matches!(up.get("tick.example.com", "/t").await, Ok((404, _)))
    })
    .await?;
    // The cron task is gone too: no firing logged after the next tick or two.
    let fired = up.process.log_count("cron tick fired");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(up.process.log_count("cron tick fired"), fired);
    Ok(())
}

/// `test/<name>`'s labels set to `labels` (key=value ...), with the real kubectl.
fn label(cluster: &Cluster, name: &str, labels: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["label", "function", name, "-n", "test", "--overwrite"];
    args.extend(labels);
    cluster.kubectl(&args)?;
    Ok(())
}

/// `wasmless trigger nats create <name> --trigger-topic <topic> --function-selector
/// <selector>` in `test`; returns once it is subscribed for exactly `functions` (as JSON).
async fn nats_trigger(
    cluster: &Cluster,
    name: &str,
    topic: &str,
    selector: &str,
    functions: &str,
) -> anyhow::Result<()> {
    let created = trigger(
        cluster,
        "test",
        &[
            "nats",
            "create",
            name,
            "--trigger-topic",
            topic,
            "--function-selector",
            selector,
        ],
    );
    assert!(created.ok(), "{created:?}");
    until_reason(cluster, "natstrigger", "test", name, "Subscribed").await?;
    wait_until(Duration::from_secs(30), || async {
        field(cluster, "natstrigger", "test", name, "{.status.functions}") == functions
    })
    .await
}

/// Whether NATS says nothing is subscribed to `subject` (a request's "no responders").
async fn no_responders(nats: &async_nats::Client, subject: &str) -> bool {
    let asked = nats.request(subject.to_string(), "{}".into()).await;
    matches!(asked, Err(e) if e.kind() == async_nats::client::RequestErrorKind::NoResponders)
}

/// Publishes `message` on `subject` with a reply inbox and collects the answers for `wait`:
/// (the `Function` header, the `Status` header, the body).
async fn answers(
    nats: &async_nats::Client,
    subject: &str,
    message: &str,
    wait: Duration,
) -> anyhow::Result<Vec<(String, String, String)>> {
    use futures::StreamExt;
    let inbox = nats.new_inbox();
    let mut replies = nats.subscribe(inbox.clone()).await?;
    nats.publish_with_reply(
        subject.to_string(),
        inbox,
        message.to_string().into_bytes().into(),
    )
    .await?;
    nats.flush().await?;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await {
        if reply.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            continue;
        }
        let header = |name: &str| {
            reply
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.to_string())
                .unwrap_or_default()
        };
        got.push((
            header("Function"),
            header("Status"),
            String::from_utf8_lossy(&reply.payload).into_owned(),
        ));
    }
    got.sort();
    Ok(got)
}

#[tokio::test]
async fn a_nats_trigger_delivers_each_message_to_its_functions_and_answers_requests()
-> anyhow::Result<()> {
    let server = wasmless_e2e::nats::NatsServer::start().await?;
    let cluster = Cluster::with_functions().await?;
    let store = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let functions_url = format!("http://127.0.0.1:{port}");
    let flags = with(
        cluster::HOSTS_NOT_PODS,
        &["--functions-url", &functions_url, "--nats-url", &server.url],
    );
    let (_controller, artifacts) = cluster.controller(store.path(), &flags)?;
    let host = host_on_port(&cluster, &artifacts, cache.path(), port).await?;
    cluster.kubectl(&["create", "namespace", "other"])?;

    // Two functions with the selector's labels (Kubeless's way), one without.
    let echo = std::fs::read_to_string(wasmless_e2e::functions_dir().join("echo.yaml"))?;
    cluster.apply(&echo)?;
    cluster.apply(&wat_manifest("test", "second", "from second"))?;
    cluster.apply(&wat_manifest("test", "unlabelled", "not me"))?;
    cluster.apply(&env_to_stderr("audit"))?;
    cluster.apply(
        "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nmetadata: {name: broken, namespace: test}\nspec:\n  runtime: wat\n  function: '(module (memory (export \"memory\") 1) (func (export \"_start\") unreachable))'\n",
    )?;
    for name in ["echo", "second", "unlabelled", "audit", "broken"] {
        wait_until(Duration::from_secs(60), || async {
            cluster.phase(name) == "Ready"
        })
        .await?;
    }
    label(&cluster, "echo", &["topic=orders"])?;
    label(&cluster, "second", &["topic=orders"])?;
    label(&cluster, "audit", &["role=audit"])?;
    label(&cluster, "broken", &["role=audit"])?;

    // What could read another subject is refused before anything is sent.
    let wildcard = trigger(
        &cluster,
        "test",
        &[
            "nats",
            "create",
            "all",
            "--trigger-topic",
            "orders.>",
            "--function",
            "echo",
        ],
    );
    assert!(
        !wildcard.ok() && wildcard.stderr.contains("spec.topic"),
        "{wildcard:?}"
    );
    // ... and by the API server, which knows the CRD's rules: a reply inbox, both targets.
    for (spec, says) in [
        ("{topic: orders.*, function-name: echo}", "spec.topic"),
        ("{topic: _INBOX.abc, function-name: echo}", "_INBOX"),
        (
            "{topic: t, function-name: echo, functionSelector: {}}",
            "not both",
        ),
    ] {
        let refused = cluster.apply(&format!(
            "apiVersion: wasmless.dev/v1alpha1\nkind: NATSTrigger\nmetadata: {{name: refused, namespace: test}}\nspec: {spec}\n"
        ));
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| format!("{e:#}").contains(says)),
            "{spec}: {refused:?}"
        );
    }

    nats_trigger(
        &cluster,
        "orders",
        "orders.new",
        "topic=orders",
        r#"["echo","second"]"#,
    )
    .await?;

    // A request reaches both functions: each answers on the reply subject.
    let nats = async_nats::connect(server.url.as_str()).await?;
    let got = answers(
        &nats,
        "orders.new",
        r#"{"order": 7}"#,
        Duration::from_secs(10),
    )
    .await?;
    assert_eq!(
        got,
        vec![
            ("echo".into(), "200".into(), r#"{"order": 7}"#.into()),
            ("second".into(), "200".into(), "from second".into()),
        ]
    );

    // Kubeless's event headers; a body that is not JSON goes as a form, as Kubeless sent it;
    // a trap is a failure, counted.
    nats_trigger(
        &cluster,
        "audit",
        "audit",
        "role=audit",
        r#"["audit","broken"]"#,
    )
    .await?;
    nats.publish("audit", "plain words".into()).await?;
    nats.flush().await?;
    wait_until(Duration::from_secs(30), || async {
        logged(&host, "audit", "HTTP_EVENT_NAMESPACE")
            .await
            .is_ok_and(|n| !n.is_empty())
    })
    .await?;
    assert_eq!(
        logged(&host, "audit", "HTTP_EVENT_NAMESPACE").await?,
        ["natstriggers.kubeless.io"]
    );
    assert_eq!(
        logged(&host, "audit", "HTTP_EVENT_TYPE").await?,
        ["application/x-www-form-urlencoded"]
    );
    assert_eq!(logged(&host, "audit", "CONTENT_LENGTH").await?, ["11"]);
    // JSON goes as JSON.
    nats.publish("audit", r#"{"a": 1}"#.into()).await?;
    nats.flush().await?;
    wait_until(Duration::from_secs(30), || async {
        logged(&host, "audit", "HTTP_EVENT_TYPE")
            .await
            .is_ok_and(|t| t.len() == 2)
    })
    .await?;
    assert_eq!(
        logged(&host, "audit", "HTTP_EVENT_TYPE").await?,
        ["application/x-www-form-urlencoded", "application/json"]
    );
    wait_until(Duration::from_secs(30), || async {
        field(&cluster, "natstrigger", "test", "audit", "{.status.failed}") == "2"
            && field(
                &cluster,
                "natstrigger",
                "test",
                "audit",
                "{.status.delivered}",
            ) == "2"
    })
    .await?;
    let listed = trigger(&cluster, "test", &["nats", "list"]);
    assert!(
        listed.ok()
            && listed.stdout.contains("orders.new")
            && listed.stdout.contains("audit,broken"),
        "{listed:?}"
    );

    // A failure, then the trigger moved to another function (same subject): the next message
    // goes there, and the last result says so, the failure's error gone.
    let flaky = trigger(
        &cluster,
        "test",
        &[
            "nats",
            "create",
            "flaky",
            "--trigger-topic",
            "flaky",
            "--function",
            "broken",
        ],
    );
    assert!(flaky.ok(), "{flaky:?}");
    until_reason(&cluster, "natstrigger", "test", "flaky", "Subscribed").await?;
    let result = || {
        field(
            &cluster,
            "natstrigger",
            "test",
            "flaky",
            "{.status.lastResult.function} {.status.lastResult.statusCode} {.status.lastResult.error}",
        )
    };
    let got = answers(&nats, "flaky", "1", Duration::from_secs(5)).await?;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].0.as_str(), got[0].1.as_str()), ("broken", "500"));
    wait_until(Duration::from_secs(30), || async {
        result().starts_with("broken 500 ")
    })
    .await?;
    let moved = trigger(
        &cluster,
        "test",
        &["nats", "update", "flaky", "--function", "echo"],
    );
    assert!(moved.ok(), "{moved:?}");
    wait_until(Duration::from_secs(30), || async {
        field(
            &cluster,
            "natstrigger",
            "test",
            "flaky",
            "{.status.functions}",
        ) == r#"["echo"]"#
    })
    .await?;
    let got = answers(&nats, "flaky", "2", Duration::from_secs(5)).await?;
    assert_eq!(got, vec![("echo".into(), "200".into(), "2".into())]);
    wait_until(Duration::from_secs(30), || async {
        result() == "echo 200 "
    })
    .await?;

    // Another namespace's trigger naming `echo` finds no such function there.
    let other = trigger(
        &cluster,
        "other",
        &[
            "nats",
            "create",
            "steal",
            "--trigger-topic",
            "orders.new",
            "--function",
            "echo",
        ],
    );
    assert!(other.ok(), "{other:?}");
    until_reason(
        &cluster,
        "natstrigger",
        "other",
        "steal",
        "FunctionNotFound",
    )
    .await?;

    // Deleted: nothing reads the subject any more (NATS says there are no responders).
    let deleted = trigger(&cluster, "test", &["nats", "delete", "orders"]);
    assert!(deleted.ok(), "{deleted:?}");
    wait_until(Duration::from_secs(30), || {
        no_responders(&nats, "orders.new")
    })
    .await?;
    report(
        "triggers: a NATSTrigger delivered a request to both selected functions and returned both answers; a trap counted as failed",
    );
    Ok(())
}

/// `wasmless up --nats-url`: a NATSTrigger in the directory delivers to the Functions its
/// selector matches there (labels from their manifests), and stops with its file.
#[tokio::test]
async fn wasmless_up_delivers_nats_messages_to_its_directorys_functions() -> anyhow::Result<()> {
    let server = wasmless_e2e::nats::NatsServer::start().await?;
    let dir = tempfile::tempdir()?;
    let echo = std::fs::read_to_string(wasmless_e2e::functions_dir().join("echo.yaml"))?;
    let labelled = echo.replace(
        "  namespace: test\n",
        "  namespace: test\n  labels: {topic: orders}\n",
    );
    assert_ne!(
        labelled, echo,
        "echo.yaml's metadata changed: label it another way"
    );
    std::fs::write(dir.path().join("echo.yaml"), labelled)?;
    std::fs::write(
        dir.path().join("unlabelled.yaml"),
        wat_manifest("test", "unlabelled", "not me"),
    )?;
    let trigger = dir.path().join("orders.yaml");
    std::fs::write(
        &trigger,
        "apiVersion: wasmless.dev/v1alpha1\nkind: NATSTrigger\nmetadata: {name: orders, namespace: test}\nspec: {topic: orders.new, functionSelector: {matchLabels: {topic: orders}}}\n",
    )?;
    let up = Up::start(dir.path(), &["--nats-url", &server.url]).await?;
    wait_until(Duration::from_secs(60), || async {
        up.process.log_contains("subscribed")
    })
    .await?;
    let nats = async_nats::connect(server.url.as_str()).await?;
    let got = answers(&nats, "orders.new", "hello up", Duration::from_secs(5)).await?;
    assert_eq!(got, vec![("echo".into(), "200".into(), "hello up".into())]);

    std::fs::remove_file(&trigger)?;
    wait_until(Duration::from_secs(60), || {
        no_responders(&nats, "orders.new")
    })
    .await?;
    Ok(())
}
