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
    // --path: the function sees the path and query below its route, and nothing above it.
    let seen = ok(
        "call --path",
        cli.function(&["call", "env", "--path", "/sub/path?x=1"]),
    );
    for needle in [
        "REQUEST_METHOD=GET",
        "PATH_INFO=/sub/path",
        "QUERY_STRING=x=1",
    ] {
        assert!(seen.contains(needle), "{needle}: {seen}");
    }
    fails(
        "call --path ..",
        &cli.function(&["call", "env", "--path", "/../../boom/"]),
        "no . or .. segments",
    );
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
    // Each line after its time (UTC, to the millisecond, fixed width: the text sorts as the
    // times do); --since an RFC 3339 time keeps the lines of that millisecond and later.
    let lines: Vec<&str> = follow_free.lines().collect();
    let time = |line: &str| {
        line.split_once(' ')
            .map(|(t, _)| t.to_string())
            .unwrap_or_default()
    };
    for line in &lines {
        let t = time(line);
        assert!(
            t.len() == 24 && t.ends_with('Z') && t.as_bytes().get(10) == Some(&b'T'),
            "{line}"
        );
    }
    let (first, last) = (time(lines[0]), time(lines[lines.len() - 1]));
    assert!(
        lines[0].ends_with("hello was called") && first < last,
        "the first call came before the update: {follow_free}"
    );
    let since_last = ok(
        "logs --since a time",
        cli.function(&["logs", "hello", "--since", &last]),
    );
    let expected: Vec<&str> = lines.iter().copied().filter(|l| time(l) >= last).collect();
    assert_eq!(since_last.lines().collect::<Vec<_>>(), expected);
    assert!(!since_last.contains("hello was called"), "{since_last}");
    let hour = ok(
        "logs --since 1h",
        cli.function(&["logs", "hello", "--since", "1h"]),
    );
    assert_eq!(hour.lines().count(), lines.len(), "{hour}");
    let future = ok(
        "logs --since the future",
        cli.function(&["logs", "hello", "--since", "2999-01-01T00:00:00Z"]),
    );
    assert_eq!(future, "");
    fails(
        "logs --since nonsense",
        &cli.function(&["logs", "hello", "--since", "yesterday"]),
        "neither a duration",
    );

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

    // A directory: the handler's file and the files beside it, zipped (base64+zip), here C
    // whose handler calls a function of another file through a header beside it.
    let c_dir = dir.path().join("c-multi");
    std::fs::create_dir_all(&c_dir)?;
    std::fs::write(
        c_dir.join("hello.c"),
        "#include <wasmless.h>\n#include \"greet.h\"\nint hello(const struct wasmless_event *event, const struct wasmless_context *context, struct wasmless_reply *reply) {\n  return wasmless_text(reply, \"%s\", greeting());\n}\n",
    )?;
    std::fs::write(c_dir.join("greet.h"), "const char *greeting(void);\n")?;
    std::fs::write(
        c_dir.join("greet.c"),
        "#include \"greet.h\"\nconst char *greeting(void) { return \"hello from greet.c\"; }\n",
    )?;
    let c_dir = c_dir.display().to_string();
    ok(
        "deploy a directory",
        cli.function(&[
            "deploy",
            "multi",
            "--runtime",
            "c",
            "--handler",
            "hello.hello",
            "--from-file",
            &c_dir,
        ]),
    );
    assert_eq!(
        ok("call multi", cli.function(&["call", "multi"])).trim(),
        "hello from greet.c"
    );
    let described = ok("describe multi", cli.function(&["describe", "multi"]));
    assert!(described.contains("base64+zip"), "{described}");
    ok("delete multi", cli.function(&["delete", "multi"]));

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
            "--secrets",
            "db",
            "--dryrun",
            "-o",
            "json",
        ]),
    ))?;
    assert_eq!(dry["kind"], "Function");
    assert_eq!(dry["metadata"]["name"], "dry");
    // --secrets as Kubeless writes it: a volume of the Secret, mounted at /<name>.
    let pod = &dry["spec"]["deployment"]["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "db", "{dry}");
    assert_eq!(
        pod["containers"][0]["volumeMounts"][0],
        serde_json::json!({"name": "db-vol", "mountPath": "/db"})
    );
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

    // A hostile archive applied with kubectl: the CRD admits base64+zip, the controller
    // refuses it from its directory before any build, the reason in the Function's status.
    let (zips, empty) = (tempfile::tempdir()?, tempfile::tempdir()?);
    make_zips(zips.path(), empty.path(), "cluster")?;
    let b64 = std::fs::read_to_string(zips.path().join("dotdot.b64"))?;
    cluster.apply(&zip_manifest("bad-zip", &b64))?;
    wait_until(Duration::from_secs(60), || async {
        cli.function(&["describe", "bad-zip"])
            .stdout
            .contains("Failed")
    })
    .await?;
    let described = ok("describe bad-zip", cli.function(&["describe", "bad-zip"]));
    assert!(
        described.contains("zip archive in function")
            && described.contains("names must be relative paths"),
        "{described}"
    );
    Ok(())
}

/// Makes zips with Python's `zipfile` (another implementation than ours): `fn.zip` of the
/// directory `src`, and hostile ones, each also as `<name>.b64`.
const MAKE_ZIPS: &str = r#"
import base64, os, sys, zipfile
out, src, uniq = sys.argv[1], sys.argv[2], sys.argv[3]

def save(name, write):
    path = os.path.join(out, name + ".zip")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        write(z)
    with open(path, "rb") as f, open(os.path.join(out, name + ".b64"), "w") as b:
        b.write(base64.b64encode(f.read()).decode())

def tree(z):
    for root, _, files in os.walk(src):
        for f in sorted(files):
            full = os.path.join(root, f)
            z.write(full, os.path.relpath(full, src))
save("fn", tree)

def hostile(*entries):
    def write(z):
        z.writestr("hello.py", "def handler(event, context):\n    return 'x'\n")
        for info, data in entries:
            z.writestr(info, data)
    return write
link = zipfile.ZipInfo("escaped-%s.py" % uniq)
link.create_system = 3
link.external_attr = 0o120777 << 16
bomb = zipfile.ZipInfo("zeros.py")
bomb.compress_type = zipfile.ZIP_DEFLATED
save("dotdot", hostile((zipfile.ZipInfo("../escaped-%s.py" % uniq), "x")))
save("absolute", hostile((zipfile.ZipInfo("/tmp/escaped-%s.py" % uniq), "x")))
save("symlink", hostile((link, "/etc/passwd")))
save("bomb", hostile((bomb, b"\0" * (100 << 20))))
"#;

/// Runs [`MAKE_ZIPS`]: `fn.zip` of `src` and the hostile zips, into `out`; `uniq` names the
/// files the hostile ones try to write.
fn make_zips(out: &std::path::Path, src: &std::path::Path, uniq: &str) -> anyhow::Result<()> {
    let made = std::process::Command::new("python3")
        .args(["-c", MAKE_ZIPS])
        .arg(out)
        .arg(src)
        .arg(uniq)
        .output()?;
    anyhow::ensure!(
        made.status.success(),
        "python3 zipfile: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    Ok(())
}

/// A Function carrying a zip (base64) for Python's `hello.handler`.
fn zip_manifest(name: &str, b64: &str) -> String {
    format!(
        "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nmetadata: {{name: {name}, namespace: test}}\nspec:\n  runtime: python\n  handler: hello.handler\n  function-content-type: base64+zip\n  function: {b64}\n"
    )
}

/// Kubeless's `--from-file` of a directory and of a `.zip`: a Python handler importing a module
/// and a package beside it, a Node handler requiring a sibling; a changed helper is a new
/// build; `--path` reaches the handler. Hostile archives (a `..` entry, an absolute path, a
/// symlink, a zip bomb) are refused by the CLI before anything is sent and by `wasmless up`
/// (the controller's pipeline) when a manifest carries them: nothing is written outside, and
/// the other functions keep serving.
#[tokio::test]
async fn archives_against_wasmless_up() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let up = Up::start(dir.path(), &[]).await?;
    let cli = Wasmless::new([
        format!("--local=http://{}", up.admin),
        "-n".into(),
        "test".into(),
    ]);
    let work = tempfile::tempdir()?;
    let src = work.path().join("fn");
    std::fs::create_dir_all(src.join("lib"))?;
    std::fs::write(
        src.join("hello.py"),
        "import helper\nfrom lib import util\n\n\ndef handler(event, context):\n    return helper.greeting() + \" at \" + event[\"extensions\"][\"request\"][\"path\"] + util.suffix()\n",
    )?;
    std::fs::write(
        src.join("helper.py"),
        "def greeting():\n    return \"hello from helper\"\n",
    )?;
    std::fs::write(src.join("lib/__init__.py"), "")?;
    std::fs::write(src.join("lib/util.py"), "def suffix():\n    return \"!\"\n")?;
    let uniq = format!(
        "{}-{}",
        std::process::id(),
        work.path().display().to_string().len()
    );
    make_zips(work.path(), &src, &uniq)?;
    let path = |name: &str| work.path().join(name).display().to_string();
    let src_arg = src.display().to_string();
    let python = |name: &str, from: &str| {
        cli.function(&[
            "deploy",
            name,
            "--runtime",
            "python3.12",
            "--handler",
            "hello.handler",
            "--from-file",
            from,
        ])
    };

    // A directory, zipped by the CLI.
    let started = Instant::now();
    ok("deploy a directory", python("pydir", &src_arg));
    report(&format!(
        "cli (wasmless up): a Python directory deployed (build and load) in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    assert_eq!(
        ok(
            "call --path",
            cli.function(&["call", "pydir", "--path", "/sub/path?x=1"])
        )
        .trim(),
        "hello from helper at /sub/path!"
    );
    // A .zip made elsewhere.
    ok("deploy a zip", python("pyzip", &path("fn.zip")));
    assert_eq!(
        ok("call zip", cli.function(&["call", "pyzip"])).trim(),
        "hello from helper at /!"
    );
    // The build key covers every file: a changed helper builds anew.
    std::fs::write(
        src.join("helper.py"),
        "def greeting():\n    return \"hi from helper v2\"\n",
    )?;
    ok(
        "update the directory",
        cli.function(&["update", "pydir", "--from-file", &src_arg]),
    );
    assert_eq!(
        ok("call v2", cli.function(&["call", "pydir"])).trim(),
        "hi from helper v2 at /!"
    );

    // Node: a handler requiring a module beside it.
    let js = work.path().join("js");
    std::fs::create_dir_all(&js)?;
    std::fs::write(
        js.join("hello.js"),
        "const helper = require('./helper');\nmodule.exports = { handler: (event, context) => helper.greet() };\n",
    )?;
    std::fs::write(
        js.join("helper.js"),
        "module.exports = { greet: () => 'hello from a node helper' };\n",
    )?;
    ok(
        "deploy a node directory",
        cli.function(&[
            "deploy",
            "jsdir",
            "--runtime",
            "nodejs20",
            "--handler",
            "hello.handler",
            "--from-file",
            &js.display().to_string(),
        ]),
    );
    assert_eq!(
        ok("call node", cli.function(&["call", "jsdir"])).trim(),
        "hello from a node helper"
    );

    // Rust builds one file: an archive of more is refused, saying so.
    let rust = work.path().join("rs");
    std::fs::create_dir_all(&rust)?;
    std::fs::write(rust.join("hello.rs"), "")?;
    std::fs::write(rust.join("util.rs"), "")?;
    fails(
        "rust archive",
        &cli.function(&[
            "deploy",
            "rsdir",
            "--runtime",
            "rust",
            "--handler",
            "hello.handler",
            "--from-file",
            &rust.display().to_string(),
        ]),
        "rust builds the handler's file alone",
    );
    // wasmless up has no Secrets: --secrets is refused before anything is sent.
    fails(
        "--secrets in wasmless up",
        &cli.function(&[
            "deploy",
            "secret",
            "--runtime",
            "python",
            "--handler",
            "hello.handler",
            "--from-file",
            &src_arg,
            "--secrets",
            "db",
        ]),
        "wasmless up has none",
    );

    let escaped = [
        work.path().join(format!("escaped-{uniq}.py")),
        dir.path().join(format!("escaped-{uniq}.py")),
        std::env::temp_dir().join(format!("escaped-{uniq}.py")),
        std::path::PathBuf::from(format!("/tmp/escaped-{uniq}.py")),
    ];
    for (name, needle) in [
        ("dotdot", "names must be relative paths"),
        ("absolute", "names must be relative paths"),
        ("symlink", "is a symlink"),
        ("bomb", "zip bomb"),
    ] {
        // The CLI: one line, nothing sent.
        let r = python(&format!("bad-{name}"), &path(&format!("{name}.zip")));
        let line = fails(name, &r, needle);
        assert!(line.contains("nothing was sent"), "{line}");
        fails(
            "not deployed",
            &cli.function(&["describe", &format!("bad-{name}")]),
            "not found",
        );
        // A manifest carrying it: Failed with the reason, never built.
        let b64 = std::fs::read_to_string(work.path().join(format!("{name}.b64")))?;
        std::fs::write(
            dir.path().join(format!("bad-{name}.yaml")),
            zip_manifest(&format!("bad-{name}"), &b64),
        )?;
        wait_until(Duration::from_secs(60), || async {
            up.phase("test", &format!("bad-{name}"))
                .await
                .is_some_and(|(phase, _)| phase == "Failed")
        })
        .await?;
        let (_, message) = up
            .phase("test", &format!("bad-{name}"))
            .await
            .unwrap_or_default();
        assert!(message.contains(needle), "{name}: {message}");
        // Refused from the archive's directory, before any build (the builder says "the
        // archive:").
        assert!(
            message.contains("zip archive in function"),
            "{name}: {message}"
        );
        for path in &escaped {
            assert!(!path.exists(), "{name}: {} was written", path.display());
        }
    }
    // The host is unmoved: the good functions still answer.
    assert_eq!(
        ok("still serving", cli.function(&["call", "pydir"])).trim(),
        "hi from helper v2 at /!"
    );
    Ok(())
}
