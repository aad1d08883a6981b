//! `wasmless up` end to end: the real binary, real manifests, real HTTP on loopback.

use std::time::{Duration, Instant};

use reqwest::Method;
use wasmless_e2e::{
    Up, WAT_RESPONSE_AT, copy_functions, examples, metric, wait_until, wat_manifest, wat_printing,
    wat_response_len,
};

#[tokio::test]
async fn both_abis_answer() -> anyhow::Result<()> {
    let dir = copy_functions(&[
        "hello-world.yaml",
        "created.yaml",
        "echo.yaml",
        "cgi-env.yaml",
        "hello-http.yaml",
        "hello-http.wasm",
    ])?;
    let up = Up::start(dir.path(), &[]).await?;

    // WAGI: a WAT module writing CGI output.
    let r = up
        .request(Method::GET, "hello-world.test", "/")
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().await?, "hello world");

    // WAGI: Status and extra headers.
    let r = up.request(Method::GET, "created.test", "/").send().await?;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-wasmless"], "yes");
    assert_eq!(r.text().await?, "created");

    // WAGI: body on stdin, binary safe.
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let r = up
        .request(Method::POST, "echo.test", "/")
        .body(body.clone())
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await?.to_vec(), body);

    // WAGI: CGI variables, the manifest's env and Kubeless's FUNC_* in the environment.
    let r = up
        .request(Method::PUT, "cgi-env.test:8080", "/a/b?x=1&y=2")
        .header("x-custom-header", "yes")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await?;
    let env = r.text().await?;
    for line in [
        "REQUEST_METHOD=PUT",
        "SERVER_PROTOCOL=HTTP/1.1",
        "REQUEST_URI=/a/b?x=1&y=2",
        "PATH_INFO=/a/b",
        "QUERY_STRING=x=1&y=2",
        "CONTENT_TYPE=application/json",
        "CONTENT_LENGTH=2",
        "SERVER_NAME=cgi-env.test",
        "SERVER_PORT=8080",
        "HTTP_X_CUSTOM_HEADER=yes",
        "GREETING=hi",
        "FUNC_TIMEOUT=10",
        "FUNC_RUNTIME=wat",
        "REMOTE_ADDR=127.0.0.1",
    ] {
        assert!(
            env.lines().any(|l| l == line),
            "{line} missing from:\n{env}"
        );
    }

    // WASI HTTP: a component built from Rust for wasm32-wasip2.
    let r = up
        .request(Method::POST, "hello-http.test", "/x/y?z=1")
        .body("payload")
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-abi"], "wasi-http");
    assert_eq!(
        r.text().await?,
        "hello from wasi:http: POST /x/y?z=1\ngreeting: hi\npayload"
    );

    // The component's stderr reached its log buffer: recorded when its handler returns, which
    // can be just after the response's head reached the client.
    let logged = wait_until(Duration::from_secs(10), || async {
        let logs = up.admin_get("/functions/test/hello-http/logs").await;
        logs.is_ok_and(|l| l.contains("hello-http: POST /x/y?z=1"))
    })
    .await;
    let logs = up.admin_get("/functions/test/hello-http/logs").await?;
    assert!(logged.is_ok(), "{logs}");

    let list = up.admin_get("/functions").await?;
    assert!(
        list.contains(r#""abi":"wasi-http""#) && list.contains(r#""abi":"wagi""#),
        "{list}"
    );
    Ok(())
}

#[tokio::test]
async fn routes_every_host_form_and_404s_the_rest() -> anyhow::Result<()> {
    let dir = copy_functions(&["hello-world.yaml"])?;
    let up = Up::start(dir.path(), &[]).await?;
    for host in [
        "hello-world.test",
        "hello-world.test:8080",
        "hello-world.test.svc",
        "hello-world.test.svc:8080",
        "hello-world.test.svc.cluster.local",
        "hello-world.test.svc.cluster.local:8080",
        "HELLO-WORLD.Test.SVC.cluster.local:8080",
    ] {
        assert_eq!(
            up.get(host, "/any/path?q=1").await?,
            (200, "hello world".into()),
            "{host}"
        );
    }
    let local = up.functions.to_string();
    assert_eq!(
        up.get(&local, "/fn/test/hello-world/").await?,
        (200, "hello world".into())
    );

    for (host, path, says) in [
        ("nope.test", "/", "no function test/nope"),
        ("hello-world.other", "/", "no function other/hello-world"),
        (local.as_str(), "/", "no function for host"),
        (local.as_str(), "/fn/test/nope", "no function for host"),
    ] {
        let r = up.request(Method::GET, host, path).send().await?;
        assert_eq!(r.status(), 404, "{host}{path}");
        assert_eq!(r.headers()["content-type"], "application/json");
        let body: serde_json::Value = r.json().await?;
        assert!(
            body["error"].as_str().unwrap_or_default().contains(says),
            "{body}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_timeout_answers_408_while_other_functions_keep_answering() -> anyhow::Result<()> {
    let dir = copy_functions(&[
        "hello-world.yaml",
        "limits.yaml",
        "hello-http.yaml",
        "hello-http.wasm",
    ])?;
    let up = Up::start(dir.path(), &[]).await?;

    let started = Instant::now();
    let (spin, served) = tokio::join!(up.get("spin.test", "/"), async {
        let mut served = 0;
        while started.elapsed() < Duration::from_millis(900) {
            assert_eq!(
                up.get("hello-world.test", "/").await?,
                (200, "hello world".into())
            );
            served += 1;
        }
        anyhow::Ok(served)
    });
    let (status, body) = spin?;
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("timeout"), "{body}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(served? > 10, "hello-world kept answering during the loop");

    // A component is stopped the same way (its timeout is 2 s).
    let (status, _) = up.get("hello-http.test", "/spin").await?;
    assert_eq!(status, 408);
    assert_eq!(up.get("hello-world.test", "/").await?.0, 200);

    let metrics = up.admin_get("/metrics").await?;
    assert_eq!(
        metric(&metrics, "wasmless_instances_live"),
        Some(0.0),
        "stopped instances are gone"
    );
    Ok(())
}

#[tokio::test]
async fn memory_cap_traps_with_500_and_a_grow_under_it_succeeds() -> anyhow::Result<()> {
    let dir = copy_functions(&["limits.yaml"])?;
    let up = Up::start(dir.path(), &[]).await?;
    // One page per body byte; the cap is 2Mi = 32 pages and the module starts with 1.
    let grow = |pages: usize| {
        up.request(Method::POST, "grow.test", "/")
            .body("x".repeat(pages))
            .send()
    };

    let r = grow(16).await?;
    assert_eq!(
        (r.status().as_u16(), r.text().await?),
        (200, "grown".to_string())
    );

    let r = grow(64).await?;
    assert_eq!(r.status(), 500);
    let body: serde_json::Value = r.json().await?;
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("memory limit exceeded") && error.contains("2097152"),
        "{body}"
    );

    // Each request has its own instance: the failure left nothing behind.
    let r = grow(31).await?;
    assert_eq!(r.status(), 200);
    Ok(())
}

/// A WAT function that adds one to the last byte of its response (`0` in its data) and prints
/// it: "<name> count=1" from a fresh instance, more if memory carried over.
fn counter_manifest(name: &str) -> String {
    let body = format!("{name} count=0");
    let last = WAT_RESPONSE_AT + wat_response_len(&body) - 1;
    let add_one = format!(
        "(i32.store8 (i32.const {last}) (i32.add (i32.load8_u (i32.const {last})) (i32.const 1)))"
    );
    wat_printing("test", name, &body, &add_one)
}

/// Both ways of initialising memory (`--memory-init-cow true|false`): every request's instance
/// starts from its module's data, though three modules take turns in two pool slots, each
/// instance writing to the memory the next one gets.
#[tokio::test]
async fn fresh_instances_start_from_their_modules_data_mapped_or_copied() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let names = ["c0", "c1", "c2"];
    let docs: Vec<String> = names.iter().map(|n| counter_manifest(n)).collect();
    std::fs::write(dir.path().join("f.yaml"), docs.join("---\n"))?;
    for cow in ["true", "false"] {
        let up = Up::start(
            dir.path(),
            &["--memory-init-cow", cow, "--total-memories", "2"],
        )
        .await?;
        for round in 0..3 {
            for name in names {
                assert_eq!(
                    up.get(&format!("{name}.test"), "/").await?,
                    (200, format!("{name} count=1")),
                    "--memory-init-cow {cow}, round {round}"
                );
            }
        }
    }
    Ok(())
}

/// Past `--max-resident-functions`, the least recently used functions' code is dropped and
/// loaded again from the store at their next request: every function still answers, from a
/// fresh instance of its own module, and no more than the bound stay loaded.
#[tokio::test]
async fn functions_past_the_resident_bound_are_loaded_again_when_called() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let names = ["r0", "r1", "r2", "r3", "r4"];
    let docs: Vec<String> = names.iter().map(|n| counter_manifest(n)).collect();
    std::fs::write(dir.path().join("f.yaml"), docs.join("---\n"))?;
    let up = Up::start(dir.path(), &["--max-resident-functions", "2"]).await?;
    for round in 0..3 {
        for name in names {
            assert_eq!(
                up.get(&format!("{name}.test"), "/").await?,
                (200, format!("{name} count=1")),
                "round {round}"
            );
        }
    }
    let metrics = up.admin_get("/metrics").await?;
    assert_eq!(metric(&metrics, "wasmless_functions_loaded"), Some(5.0));
    assert_eq!(metric(&metrics, "wasmless_functions_resident"), Some(2.0));
    Ok(())
}

#[tokio::test]
async fn bodies_over_the_cap_get_413() -> anyhow::Result<()> {
    let dir = copy_functions(&["echo.yaml"])?;
    let up = Up::start(dir.path(), &["--max-body", "1Ki"]).await?;
    let r = up
        .request(Method::POST, "echo.test", "/")
        .body(vec![b'a'; 1024])
        .send()
        .await?;
    assert_eq!((r.status().as_u16(), r.bytes().await?.len()), (200, 1024));

    let r = up
        .request(Method::POST, "echo.test", "/")
        .body(vec![b'a'; 1025])
        .send()
        .await?;
    assert_eq!(r.status(), 413);

    // Without Content-Length (chunked), the limit holds while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b'a'; 800]), Ok(vec![b'a'; 800])];
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let r = up
        .request(Method::POST, "echo.test", "/")
        .body(body)
        .send()
        .await?;
    assert_eq!(r.status(), 413);
    Ok(())
}

#[tokio::test]
async fn metrics_count_calls_and_failures() -> anyhow::Result<()> {
    let dir = copy_functions(&["hello-world.yaml", "limits.yaml"])?;
    let up = Up::start(dir.path(), &[]).await?;
    for _ in 0..3 {
        up.get("hello-world.test", "/").await?;
    }
    up.request(Method::POST, "grow.test", "/")
        .body("x".repeat(100))
        .send()
        .await?;
    up.request(Method::POST, "grow.test", "/")
        .body("x")
        .send()
        .await?;
    up.get("missing.test", "/").await?;

    let m = up.admin_get("/metrics").await?;
    let series = |name: &str, f: &str, method: &str| {
        metric(
            &m,
            &format!(r#"{name}{{namespace="test",function="{f}",method="{method}"}}"#),
        )
    };
    assert_eq!(
        series("function_calls_total", "hello-world", "GET"),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        series("function_failures_total", "hello-world", "GET"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        series("function_calls_total", "grow", "POST"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        series("function_failures_total", "grow", "POST"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        series("function_duration_seconds_count", "hello-world", "GET"),
        Some(3.0),
        "{m}"
    );
    assert_eq!(metric(&m, "wasmless_functions_loaded"), Some(3.0), "{m}");
    assert_eq!(
        metric(&m, "wasmless_unrouted_requests_total"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(up.admin_get("/healthz").await?, "ok");
    Ok(())
}

#[tokio::test]
async fn a_replace_under_load_fails_no_request() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("swap.yaml");
    std::fs::write(&file, wat_manifest("test", "swap", "v1"))?;
    let up = Up::start(dir.path(), &[]).await?;
    assert_eq!(up.get("swap.test", "/").await?, (200, "v1".into()));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop) = (up.functions, stop.clone());
            tokio::spawn(async move {
                let client = wasmless_e2e::client();
                let (mut ok, mut failed, mut went_back, mut seen_v2) = (0u32, 0u32, 0u32, false);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = client
                        .get(format!("http://{addr}/"))
                        .header("host", "swap.test")
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => match r.text().await.as_deref() {
                            Ok("v1") if seen_v2 => went_back += 1,
                            Ok("v1") => ok += 1,
                            Ok("v2") => {
                                seen_v2 = true;
                                ok += 1
                            }
                            _ => failed += 1,
                        },
                        _ => failed += 1,
                    }
                }
                (ok, failed, went_back, seen_v2)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&file, wat_manifest("test", "swap", "v2"))?;
    wait_until(Duration::from_secs(30), || async {
        matches!(up.get("swap.test", "/").await, Ok((200, b)) if b == "v2")
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut total = 0;
    for c in clients {
        let (ok, failed, went_back, seen_v2) = c.await?;
        assert_eq!(failed, 0, "no request may fail during the swap");
        assert_eq!(went_back, 0, "after the new revision, never the old one");
        assert!(seen_v2);
        total += ok;
    }
    assert!(
        total > 50,
        "the clients were really loading the host ({total} requests)"
    );
    Ok(())
}

#[tokio::test]
async fn reloads_changed_added_and_removed_manifests() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("a.yaml"), wat_manifest("test", "a", "a1"))?;
    let up = Up::start(dir.path(), &[]).await?;
    assert_eq!(up.get("a.test", "/").await?, (200, "a1".into()));

    let until = |host: &'static str, want: (u16, &'static str)| {
        let up = &up;
        async move {
            wait_until(Duration::from_secs(30), || async {
                matches!(up.get(host, "/").await, Ok((s, b)) if s == want.0 && (want.0 == 404 || b == want.1))
            })
            .await
        }
    };
    std::fs::write(dir.path().join("a.yaml"), wat_manifest("test", "a", "a2"))?;
    until("a.test", (200, "a2")).await?;

    // Several documents in a new file, one in a subdirectory.
    std::fs::create_dir(dir.path().join("more"))?;
    let two = format!(
        "{}---\n{}",
        wat_manifest("test", "b", "b1"),
        wat_manifest("other", "c", "c1")
    );
    std::fs::write(dir.path().join("more/two.yml"), two)?;
    until("b.test", (200, "b1")).await?;
    until("c.other", (200, "c1")).await?;

    std::fs::remove_file(dir.path().join("more/two.yml"))?;
    until("b.test", (404, "")).await?;
    until("c.other", (404, "")).await?;
    assert_eq!(up.get("a.test", "/").await?, (200, "a2".into()));
    Ok(())
}

#[tokio::test]
async fn a_changed_url_source_rebuilds() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let source = |body: &str| {
        let text = wat_manifest("test", "u", body);
        let start = text.find("(module").unwrap_or(0);
        text[start..].replace("\n    ", "\n").trim_end().to_string()
    };
    std::fs::write(dir.path().join("u.wat"), source("one"))?;
    std::fs::write(
        dir.path().join("u.yaml"),
        "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nmetadata: {name: u, namespace: test}\nspec: {runtime: wat, function-content-type: url, function: u.wat}\n",
    )?;
    let up = Up::start(dir.path(), &[]).await?;
    assert_eq!(up.get("u.test", "/").await?, (200, "one".into()));
    std::fs::write(dir.path().join("u.wat"), source("two"))?;
    wait_until(Duration::from_secs(30), || async {
        matches!(up.get("u.test", "/").await, Ok((200, b)) if b == "two")
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_broken_manifest_or_build_leaves_the_last_good_version_serving() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("f.yaml");
    std::fs::write(&file, wat_manifest("test", "f", "good"))?;
    let up = Up::start(dir.path(), &[]).await?;
    assert_eq!(up.get("f.test", "/").await?, (200, "good".into()));

    // Not YAML at all.
    std::fs::write(
        &file,
        "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nspec: [unclosed\n",
    )?;
    wait_until(Duration::from_secs(30), || async {
        up.log_contains("invalid manifest")
    })
    .await?;
    assert_eq!(up.get("f.test", "/").await?, (200, "good".into()));

    // Valid YAML, but the WAT does not compile: status says why, the old revision serves.
    std::fs::write(
        &file,
        wat_manifest("test", "f", "new").replace("(memory", "(memory oops"),
    )?;
    wait_until(Duration::from_secs(30), || async {
        matches!(up.phase("test", "f").await, Some((p, _)) if p == "Failed")
    })
    .await?;
    let (_, message) = up.phase("test", "f").await.unwrap_or_default();
    assert!(
        message.contains("expected"),
        "the compiler's message is kept: {message}"
    );
    assert_eq!(up.get("f.test", "/").await?, (200, "good".into()));

    // A bad limit is refused the same way.
    std::fs::write(
        &file,
        wat_manifest("test", "f", "new").replace("runtime: wat", "runtime: wat\n  timeout: soon"),
    )?;
    wait_until(Duration::from_secs(30), || async {
        matches!(up.phase("test", "f").await, Some((_, m)) if m.contains("soon"))
    })
    .await?;
    assert_eq!(up.get("f.test", "/").await?, (200, "good".into()));

    // Fixed: the new version serves.
    std::fs::write(&file, wat_manifest("test", "f", "fixed"))?;
    wait_until(Duration::from_secs(30), || async {
        matches!(up.get("f.test", "/").await, Ok((200, b)) if b == "fixed")
    })
    .await?;
    assert_eq!(
        up.phase("test", "f").await.map(|p| p.0).as_deref(),
        Some("Ready")
    );
    Ok(())
}

#[tokio::test]
async fn invalid_manifests_and_escaping_url_sources_fail_alone() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let dir = root.path().join("functions");
    std::fs::create_dir(&dir)?;
    std::fs::write(root.path().join("secret"), "TOP-SECRET")?;
    std::os::unix::fs::symlink(root.path().join("secret"), dir.join("link.wat"))?;
    std::fs::write(dir.join("good.yaml"), wat_manifest("test", "good", "good"))?;
    let manifest = |name: &str, spec: &str| {
        format!(
            "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nmetadata: {{name: {name}, namespace: test}}\nspec: {{{spec}}}\n"
        )
    };
    let invalid = [
        (
            "bad",
            "runtime: c, handler: ../../x.y, function: x, timeout: -1, memory: lots",
            &[
                "spec.handler: \"../../x.y\"",
                "spec.timeout: -1",
                "spec.memory: \"lots\"",
            ][..],
        ),
        (
            "passwd",
            "runtime: wat, function-content-type: url, function: ../../etc/passwd",
            &["spec.function: \"../../etc/passwd\" must stay inside the manifest's directory"],
        ),
        (
            "secret",
            "runtime: wat, function-content-type: url, function: ../secret",
            &["spec.function: \"../secret\" must stay inside"],
        ),
        (
            "absolute",
            "runtime: wat, function-content-type: url, function: /etc/passwd",
            &["spec.function: \"/etc/passwd\" must be a path relative to the manifest"],
        ),
        (
            "link",
            "runtime: wat, function-content-type: url, function: link.wat",
            &["url \"link.wat\" must name a file inside the manifest's directory"],
        ),
    ];
    for (name, spec, _) in &invalid {
        std::fs::write(dir.join(format!("{name}.yaml")), manifest(name, spec))?;
    }
    let up = Up::start(&dir, &[]).await?;
    assert_eq!(up.get("good.test", "/").await?, (200, "good".into()));
    for (name, _, reasons) in &invalid {
        let (phase, message) = up.phase("test", name).await.unwrap_or_default();
        assert_eq!(phase, "Failed", "{name}: {message}");
        for reason in *reasons {
            assert!(
                message.contains(reason),
                "{name}: {reason} not in {message}"
            );
        }
        assert!(!message.contains("TOP-SECRET") && !message.contains("root:"));
        assert_eq!(up.get(&format!("{name}.test"), "/").await?.0, 404);
    }
    assert!(!up.process.log_contains("TOP-SECRET"));
    assert_eq!(
        up.phase("test", "good").await.map(|p| p.0).as_deref(),
        Some("Ready")
    );

    // The deploy API refuses at the door, as a cluster's API server does.
    let admin = format!("http://{}/functions/test/api", up.admin);
    let refused = wasmless_e2e::client()
        .put(&admin)
        .body(manifest(
            "api",
            "runtime: c, handler: -fplugin=x.y, function: x",
        ))
        .send()
        .await?;
    assert_eq!(refused.status(), 422);
    let body = refused.text().await?;
    assert!(
        body.contains("spec.handler: \\\"-fplugin=x.y\\\""),
        "{body}"
    );
    assert!(
        up.phase("test", "api").await.is_none(),
        "nothing was deployed"
    );

    // Fixed in place: it serves, and the others never stopped.
    std::fs::write(dir.join("bad.yaml"), wat_manifest("test", "bad", "fixed"))?;
    wait_until(Duration::from_secs(30), || async {
        matches!(up.get("bad.test", "/").await, Ok((200, b)) if b == "fixed")
    })
    .await?;
    assert_eq!(up.get("good.test", "/").await?, (200, "good".into()));
    Ok(())
}

/// Tenant builds run in the sandboxed builder: a C source including a file planted outside its
/// reach fails without a trace of the file, and a build that fills memory is stopped by the
/// builder's limit; neither status nor logs carry the secret.
#[tokio::test]
async fn builds_reach_nothing_outside_their_sandbox() -> anyhow::Result<()> {
    let secret = examples::Secret::plant()?;
    let dir = tempfile::tempdir()?;
    let steal = examples::c_function("steal", &secret.include());
    std::fs::write(dir.path().join("steal.yaml"), steal)?;
    let bomb = examples::c_function("bomb", examples::C_MEMORY_BOMB);
    std::fs::write(dir.path().join("bomb.yaml"), bomb)?;
    let up = Up::start(dir.path(), &["--builder-arg=--build-memory=512Mi"]).await?;

    // Ready comes after every first build: both have ended.
    let (phase, message) = up.phase("test", "steal").await.unwrap_or_default();
    assert_eq!(phase, "Failed", "{message}");
    assert!(message.contains("Permission denied"), "{message}");
    let (phase, message) = up.phase("test", "bomb").await.unwrap_or_default();
    assert_eq!(phase, "Failed", "{message}");
    assert!(message.contains("memory"), "{message}");
    assert!(!up.admin_get("/status").await?.contains(&secret.content));
    assert!(!up.log_contains(&secret.content));
    Ok(())
}

/// A build that never ends (Python module code, which the build's check runs) is
/// killed at the builder's wall-clock timeout, and fails with that reason.
#[tokio::test]
async fn a_build_that_never_ends_is_stopped_by_its_timeout() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let manifest = examples::python_build_loop("forever");
    std::fs::write(dir.path().join("forever.yaml"), manifest)?;
    let up = Up::start(dir.path(), &["--builder-arg=--build-timeout=60"]).await?;
    let (phase, message) = up.phase("test", "forever").await.unwrap_or_default();
    assert_eq!(phase, "Failed", "{message}");
    assert!(message.contains("timeout of 60 s"), "{message}");
    Ok(())
}

/// Each function serves as soon as its own build is done: one whose build takes minutes
/// (Python module code, which the build's check runs, sleeping) holds up neither the
/// others' builds nor their answers, and `/readyz` waits for it.
#[tokio::test]
async fn each_function_serves_as_soon_as_its_own_build_is_done() -> anyhow::Result<()> {
    let dir = copy_functions(&["hello-world.yaml"])?;
    // First in file order, so its build starts first.
    let slow = "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nmetadata: {name: a-slow, namespace: test}\nspec:\n  runtime: python\n  handler: f.handler\n  function: |\n    import time\n    time.sleep(600)\n    def handler(event, context):\n        return 'late'\n";
    std::fs::write(dir.path().join("a-slow.yaml"), slow)?;
    let up = Up::starting(dir.path(), &["--max-builds", "2"])?;
    let started = Instant::now();
    wait_until(Duration::from_secs(300), || async {
        matches!(up.get("hello-world.test", "/").await, Ok((200, b)) if b == "hello world")
    })
    .await?;
    let first_200 = started.elapsed();
    let (phase, message) = up.phase("test", "a-slow").await.unwrap_or_default();
    assert_eq!(phase, "Building", "{message}");
    let readyz = wasmless_e2e::client()
        .get(format!("http://{}/readyz", up.admin))
        .send()
        .await?;
    assert_ne!(readyz.status(), 200, "not ready while a first build runs");
    wasmless_e2e::report(&format!(
        "timing: up, hello-world answers {:.1} s after start while a-slow still builds",
        first_200.as_secs_f64()
    ));
    Ok(())
}

/// `up`'s admin API (deploys code, no credential) answers only requests addressed to loopback:
/// a foreign Host (DNS rebinding) or another site's page (Origin) gets 403 and deploys nothing.
#[tokio::test]
async fn the_admin_api_refuses_foreign_hosts_and_origins() -> anyhow::Result<()> {
    let dir = copy_functions(&["hello-world.yaml"])?;
    let up = Up::start(dir.path(), &[]).await?;
    let port = up.admin.port();
    let deploy = wat_manifest("test", "rebound", "deployed by a web page");
    let send = |method: Method, path: &str, host: String, origin: Option<&str>| {
        let mut request = wasmless_e2e::client()
            .request(method, format!("http://{}{path}", up.admin))
            .header("host", host)
            .body(deploy.clone());
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let put = (Method::PUT, "/functions/test/rebound");
    for (host, origin) in [
        (format!("evil.example:{port}"), None),
        (format!("127.0.0.1.nip.io:{port}"), None),
        (format!("127.0.0.1:{port}"), Some("http://evil.example")),
        (format!("localhost:{port}"), Some("null")),
    ] {
        for (method, path) in [
            (Method::GET, "/info"),
            (Method::GET, "/functions"),
            put.clone(),
        ] {
            let r = send(method.clone(), path, host.clone(), origin).await?;
            assert_eq!(
                r.status(),
                403,
                "{method} {path} Host {host} Origin {origin:?}"
            );
        }
    }
    assert_eq!(
        up.get("rebound.test", "/").await?.0,
        404,
        "nothing deployed"
    );

    for (host, origin) in [
        (format!("localhost:{port}"), None),
        (
            format!("[::1]:{port}"),
            Some(format!("http://localhost:{port}")),
        ),
        (
            format!("127.0.0.1:{port}"),
            Some("http://127.0.0.1:3000".to_string()),
        ),
    ] {
        let r = send(Method::GET, "/info", host.clone(), origin.as_deref()).await?;
        assert_eq!(r.status(), 200, "Host {host} Origin {origin:?}");
    }
    let r = send(put.0, put.1, format!("127.0.0.1:{port}"), None).await?;
    assert!(r.status().is_success(), "{}", r.status());
    wait_until(Duration::from_secs(60), || async {
        matches!(up.get("rebound.test", "/").await, Ok((200, b)) if b == "deployed by a web page")
    })
    .await?;
    Ok(())
}
