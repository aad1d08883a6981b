//! The `wasmless` command line end to end: every verb as a subprocess, once against a real API
//! server (controller and host as processes, the host reached through the API server's proxies)
//! and once against `wasmless up --local`, checking what it prints and how it exits.

use std::time::{Duration, Instant};

use wasmless_e2e::cli::{Run, Wasmless, run, wat_cgi};
use wasmless_e2e::cluster::Cluster;
use wasmless_e2e::{Up, functions_dir, local_ip, report, wait_until};

/// The source of the first inline `function: |` block of an example manifest.
fn inline_source(manifest: &str) -> String {
    manifest
        .lines()
        .skip_while(|l| l.trim() != "function: |")
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
        .map(|l| l.get(4..).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts success and returns stdout.
fn ok(what: &str, r: Run) -> String {
    assert!(r.ok(), "{what}: exit {}\n{}{}", r.code, r.stdout, r.stderr);
    r.stdout
}

/// Asserts a failure that ends in one `error:` line containing `needle`; returns that line.
fn fails(what: &str, r: &Run, needle: &str) -> String {
    assert!(!r.ok(), "{what} should fail: {}{}", r.stdout, r.stderr);
    let line = r.error().unwrap_or_default().to_string();
    assert!(
        line.contains(needle),
        "{what}: {needle:?} not in\n{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("Backtrace") && !r.stderr.contains("panicked"),
        "{}",
        r.stderr
    );
    line
}

/// Every verb against one target (`wasmless` already carries `-n test` and the target).
async fn every_verb(cli: &Wasmless, label: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let write = |name: &str, text: &str| -> anyhow::Result<String> {
        let path = dir.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    };
    let hello = write(
        "hello.wat",
        &wat_cgi(
            "Content-Type: text/plain\\n\\nhello from cli",
            "hello was called\\n",
        ),
    )?;
    let hello2 = write(
        "hello2.wat",
        &wat_cgi("Content-Type: text/plain\\n\\nhello v2", "v2 was called\\n"),
    )?;
    let broken = write("broken.wat", "(module (memory oops))")?;
    let boom = write(
        "boom.wat",
        &wat_cgi("Status: 503\\nContent-Type: text/plain\\n\\nboom", ""),
    )?;
    let env = write(
        "env.wat",
        &inline_source(&std::fs::read_to_string(
            functions_dir().join("cgi-env.yaml"),
        )?),
    )?;

    // deploy: waits, shows phases (plain lines: stderr is not a terminal), prints the URL.
    let started = Instant::now();
    let r = cli.function(&[
        "deploy",
        "hello",
        "--runtime",
        "wat",
        "--from-file",
        &hello,
        "--env",
        "GREETING=hi",
        "--label",
        "team=a",
        "--timeout",
        "5",
        "--memory",
        "64Mi",
    ]);
    let deployed = started.elapsed();
    assert!(r.stderr.contains("test/hello: ready"), "{}", r.stderr);
    let out = ok("deploy", r);
    assert!(out.contains("function test/hello deployed"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("http://") && l.contains("hello")),
        "{out}"
    );
    report(&format!(
        "cli ({label}): deploy → Ready, as the user waits: {:.0} ms",
        deployed.as_secs_f64() * 1e3
    ));

    let again = cli.function(&["deploy", "hello", "--runtime", "wat", "--from-file", &hello]);
    fails("deploy twice", &again, "already exists");
    fails(
        "unknown runtime",
        &cli.function(&["deploy", "x", "--runtime", "cobol", "--from-file", &hello]),
        "unknown runtime \"cobol\"",
    );

    // ls in every format.
    let table = ok("ls", cli.function(&["ls"]));
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "NAMESPACE", "RUNTIME", "HANDLER", "STATUS", "URL"],
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("hello "))
        .unwrap_or_default();
    assert!(
        row.contains("test") && row.contains("wat") && row.contains("Ready"),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok("ls json", cli.function(&["ls", "-o", "json"])))?;
    let first = json
        .as_array()
        .and_then(|a| a.iter().find(|f| f["metadata"]["name"] == "hello"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(first["spec"]["runtime"], "wat", "{json}");
    assert_eq!(first["spec"]["function-content-type"], "text");
    assert!(
        first["spec"]["checksum"]
            .as_str()
            .is_some_and(|c| c.starts_with("sha256:")),
        "{first}"
    );
    let yaml = ok("ls yaml", cli.function(&["ls", "-o", "yaml"]));
    assert!(yaml.contains("name: hello"), "{yaml}");
    let wide = ok("ls wide", cli.function(&["ls", "-o", "wide"]));
    assert!(wide.contains("MEMORY") && wide.contains("64Mi"), "{wide}");

    let described = ok("describe", cli.function(&["describe", "hello"]));
    for needle in ["Runtime:", "wat", "GREETING=hi", "64Mi", "5 s", "Ready"] {
        assert!(described.contains(needle), "{needle}: {described}");
    }

    // call: GET, POST with JSON, other methods and headers; the answer on stdout.
    assert_eq!(
        ok("call", cli.function(&["call", "hello"])).trim(),
        "hello from cli"
    );
    ok(
        "deploy env",
        cli.function(&["deploy", "env", "--runtime", "wat", "--from-file", &env]),
    );
    let seen = ok(
        "call json",
        cli.function(&["call", "env", "--data", r#"{"a":1}"#]),
    );
    for needle in [
        "REQUEST_METHOD=POST",
        "CONTENT_TYPE=application/json",
        "CONTENT_LENGTH=7",
        "HTTP_EVENT_NAMESPACE=cli.wasmless.dev",
        "HTTP_EVENT_ID=",
        "HTTP_EVENT_TIME=",
    ] {
        assert!(seen.contains(needle), "{needle}: {seen}");
    }
    let seen = ok(
        "call put",
        cli.function(&[
            "call",
            "env",
            "--data",
            "hi",
            "--method",
            "PUT",
            "--header",
            "X-Extra: yes",
        ]),
    );
    for needle in [
        "REQUEST_METHOD=PUT",
        "CONTENT_TYPE=text/plain",
        "HTTP_X_EXTRA=yes",
    ] {
        assert!(seen.contains(needle), "{needle}: {seen}");
    }
    ok(
        "deploy boom",
        cli.function(&["deploy", "boom", "--runtime", "wat", "--from-file", &boom]),
    );
    let r = cli.function(&["call", "boom"]);
    assert_eq!(r.stdout.trim(), "boom");
    // 503 on purpose: the Kubernetes client must hand a function's own 503 back, not retry it.
    fails("call a 503", &r, "503");

    // logs and top.
    let logs = ok("logs", cli.function(&["logs", "hello"]));
    assert!(logs.contains("hello was called"), "{logs}");
    let top = ok("top", cli.function(&["top"]));
    assert!(
        top.contains("TOTAL_CALLS") && top.contains("AVG_DURATION_SECONDS"),
        "{top}"
    );
    let rows: serde_json::Value =
        serde_json::from_str(&ok("top json", cli.function(&["top", "-o", "json"])))?;
    let get = rows
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|r| r["function"] == "hello" && r["method"] == "GET")
        })
        .cloned()
        .unwrap_or_default();
    assert_eq!(get["total_calls"], 1.0, "{rows}");
    assert_eq!(get["namespace"], "test");
    let boom_row = rows
        .as_array()
        .and_then(|a| a.iter().find(|r| r["function"] == "boom"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(boom_row["total_failures"], 1.0, "{rows}");
    let yaml = ok("top yaml", cli.function(&["top", "hello", "-o", "yaml"]));
    assert!(
        yaml.contains("function: hello") && !yaml.contains("boom"),
        "{yaml}"
    );

    // update: a new source serves; a broken one prints the compiler and the last good serves.
    let out = ok(
        "update",
        cli.function(&["update", "hello", "--from-file", &hello2]),
    );
    assert!(out.contains("function test/hello updated"), "{out}");
    assert_eq!(
        ok("call v2", cli.function(&["call", "hello"])).trim(),
        "hello v2"
    );
    let r = cli.function(&["update", "hello", "--from-file", &broken]);
    let line = fails("broken update", &r, "build of test/hello failed");
    assert!(
        r.stderr.contains("expected"),
        "the compiler's message: {}",
        r.stderr
    );
    assert!(line.contains("wasmless function update hello"), "{line}");
    assert_eq!(
        ok("still v2", cli.function(&["call", "hello"])).trim(),
        "hello v2"
    );
    let described = ok("describe failed", cli.function(&["describe", "hello"]));
    assert!(
        described.contains("Failed") && described.contains("expected"),
        "{described}"
    );
    let follow_free = ok("logs after update", cli.function(&["logs", "hello"]));
    assert!(follow_free.contains("v2 was called"), "{follow_free}");

    // --no-wait returns before the build settles; the function then serves.
    let out = ok(
        "no-wait",
        cli.function(&["update", "hello", "--from-file", &hello, "--no-wait"]),
    );
    assert!(out.contains("updated"), "{out}");
    wait_until(Duration::from_secs(120), || async {
        cli.function(&["call", "hello"]).stdout.trim() == "hello from cli"
    })
    .await?;

    // Dry run: the manifest, nothing deployed.
    let dry: serde_json::Value = serde_json::from_str(&ok(
        "dryrun",
        cli.function(&[
            "deploy",
            "dry",
            "--runtime",
            "wat",
            "--from-file",
            &hello,
            "--dryrun",
            "-o",
            "json",
        ]),
    ))?;
    assert_eq!(dry["kind"], "Function");
    assert_eq!(dry["metadata"]["name"], "dry");
    fails(
        "dry is not deployed",
        &cli.function(&["describe", "dry"]),
        "not found",
    );

    // delete, and what "not found" looks like for each verb.
    for name in ["hello", "env", "boom"] {
        let out = ok("delete", cli.function(&["delete", name]));
        assert!(out.contains("deleted"), "{out}");
    }
    // Deployed again with the same source right after its delete: it serves again.
    ok(
        "redeploy",
        cli.function(&["deploy", "env", "--runtime", "wat", "--from-file", &env]),
    );
    let seen = ok("call redeployed", cli.function(&["call", "env"]));
    assert!(seen.contains("REQUEST_METHOD=GET"), "{seen}");
    ok("delete again", cli.function(&["delete", "env"]));
    let table = ok("ls after delete", cli.function(&["ls"]));
    assert!(!table.lines().any(|l| l.starts_with("hello ")), "{table}");
    for verb in ["delete", "describe", "call", "logs"] {
        let line = fails(
            verb,
            &cli.function(&[verb, "hello"]),
            "function hello not found in namespace test",
        );
        assert!(line.contains("wasmless function ls"), "{line}");
    }
    fails(
        "update missing",
        &cli.function(&["update", "hello", "--from-file", &hello]),
        "not found",
    );
    Ok(())
}

#[tokio::test]
async fn every_verb_against_wasmless_up() -> anyhow::Result<()> {
    let version = ok("version", run(&["version"]));
    assert!(version.starts_with("wasmless "), "{version}");
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(shell, run(&["completion", shell]));
        assert!(
            script.contains("wasmless") && script.contains("deploy"),
            "{shell}"
        );
    }

    let dir = tempfile::tempdir()?;
    std::fs::copy(
        functions_dir().join("hello-world.yaml"),
        dir.path().join("hello-world.yaml"),
    )?;
    let up = Up::start(dir.path(), &[]).await?;
    let cli = Wasmless::new([
        format!("--local=http://{}", up.admin),
        "-n".into(),
        "test".into(),
    ]);
    every_verb(&cli, "wasmless up").await?;

    // A file's function is listed with its file, and changed only through the file.
    let wide = ok("ls wide", cli.function(&["ls", "-o", "wide"]));
    assert!(
        wide.contains("hello-world") && wide.contains("hello-world.yaml"),
        "{wide}"
    );
    fails(
        "delete a file's function",
        &cli.function(&["delete", "hello-world"]),
        "edit that file instead",
    );
    assert_eq!(
        ok("call file fn", cli.function(&["call", "hello-world"])).trim(),
        "hello world"
    );

    // Nothing at the admin address: one line saying what to do.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let nobody = Wasmless::new([format!("--local=http://{closed}")]);
    let line = fails(
        "no up",
        &nobody.function(&["ls"]),
        "no wasmless up answering",
    );
    assert!(line.contains("start `wasmless up`"), "{line}");
    Ok(())
}

#[tokio::test]
async fn every_verb_against_a_real_api_server() -> anyhow::Result<()> {
    // No cluster reachable: a kubeconfig naming a closed port.
    let dir = tempfile::tempdir()?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: 'https://{closed}', insecure-skip-tls-verify: true}}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n"
        ),
    )?;
    let nobody = Wasmless::new(["--kubeconfig".into(), kubeconfig.into_os_string()]);
    let line = fails(
        "no cluster",
        &nobody.function(&["ls"]),
        "no cluster reachable",
    );
    assert!(line.contains("--local"), "{line}");
    let r = nobody.function(&["ls", "--context", "missing"]);
    fails("unknown context", &r, "missing");

    let ip = match local_ip() {
        Some(ip) => ip,
        None => {
            report(
                "cli (cluster): skipped: no non-loopback IPv4 address for the API server to proxy to",
            );
            return Ok(());
        }
    };
    let cluster = Cluster::with_functions().await?;
    // The hosts in a namespace of their own, as a chart installs them: the functions in `test`
    // get their endpoints from the controller, and `call` reaches them through the pods proxy.
    cluster.kubectl(&["create", "namespace", "wasmless"])?;
    let store = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    let (controller, artifacts) = cluster.controller(
        store.path(),
        &["--host-port", "functions", "--host-namespace", "wasmless"],
    )?;
    let host = cluster.host_on(&artifacts, cache.path(), &ip).await?;
    cluster
        .host_pod("wasmless", "wasmless-host-0", &host)
        .await?;
    wait_until(Duration::from_secs(60), || {
        let leading = controller.log_contains("leading: reconciling");
        async move { leading }
    })
    .await?;

    let cli = Wasmless::new([
        "--kubeconfig".into(),
        cluster.kubeconfig.clone().into_os_string(),
        "-n".into(),
        "test".into(),
    ]);
    // The proxied call waits for the Service's endpoints, which the controller writes.
    every_verb(&cli, "cluster").await?;
    Ok(())
}
