//! Source runtimes through `wasmless up` and on a real API server: every example of each runtime
//! built from source by its real toolchain, then called over HTTP with exact bodies, content types
//! and status codes.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use wasmless_e2e::cluster::{self, Cluster};
use wasmless_e2e::report;

use wasmless_e2e::examples::{self, spaced};
use wasmless_e2e::{Up, functions_dir, wait_until};

/// Builds are CPU-bound and the machine has 2 cores: one suite builds at a time.
static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The artifact store the examples' tests share, through `wasmless up` and on the API server:
/// each example is built by its toolchain once per run (by whichever test gets there first) and
/// served and checked by both (builds are content-addressed: the same source, handler, deps and
/// builder version are the same build). Emptied when the suite starts, so every run builds.
static EXAMPLES_STORE: LazyLock<Result<PathBuf, String>> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("runtimes-examples-store");
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.to_string()),
        _ => {}
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
});

fn examples_store() -> anyhow::Result<&'static Path> {
    EXAMPLES_STORE
        .as_deref()
        .map_err(|e| anyhow::anyhow!("the examples' artifact store: {e}"))
}

#[tokio::test]
async fn go_examples() -> anyhow::Result<()> {
    let _one_at_a_time = BUILDING.lock().await;
    let up = Up::start_with_store(&functions_dir().join("go"), examples_store()?, &[]).await?;
    examples::go(&up).await
}

/// Serves `functions/<dir>/` with `wasmless up` and checks its examples.
async fn kubeless_examples(
    dir: &str,
    prefix: &str,
    runtime: &str,
    json_of: fn(&str) -> String,
) -> anyhow::Result<()> {
    let _one_at_a_time = BUILDING.lock().await;
    let up = Up::start_with_store(&functions_dir().join(dir), examples_store()?, &[]).await?;
    examples::kubeless(&up, prefix, runtime, json_of).await
}

#[tokio::test]
async fn nodejs_examples() -> anyhow::Result<()> {
    let _one_at_a_time = BUILDING.lock().await;
    let up = Up::start_with_store(&functions_dir().join("nodejs"), examples_store()?, &[]).await?;
    examples::kubeless(&up, "js", "nodejs20", str::to_string).await?;
    examples::express_response(&up).await
}

#[tokio::test]
async fn python_examples() -> anyhow::Result<()> {
    kubeless_examples("python", "py", "python3.12", spaced).await
}

#[tokio::test]
async fn rust_examples() -> anyhow::Result<()> {
    kubeless_examples("rust", "rs", "rust", str::to_string).await
}

#[tokio::test]
async fn c_examples() -> anyhow::Result<()> {
    kubeless_examples("c", "c", "c", spaced).await
}

#[tokio::test]
async fn ruby_examples() -> anyhow::Result<()> {
    kubeless_examples("ruby", "rb", "ruby3.4", str::to_string).await
}

#[tokio::test]
async fn java_examples() -> anyhow::Result<()> {
    let _one_at_a_time = BUILDING.lock().await;
    let up = Up::start_with_store(&functions_dir().join("java"), examples_store()?, &[]).await?;
    examples::java(&up).await
}

/// The seed example: a Python function as the logic of a Metacontroller CompositeController
/// (`examples/metacontroller-hello-world`; `wasmless up` skips the other kinds there).
#[tokio::test]
async fn metacontroller_hello_world_example() -> anyhow::Result<()> {
    let _one_at_a_time = BUILDING.lock().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/metacontroller-hello-world");
    let up = Up::start(&dir, &[]).await?;
    examples::hello_world_controller(&up).await
}

/// Every example of every runtime, applied with kubectl to a real API server, built by the
/// controller (or found built in the store the examples share), served by a host; then a broken
/// C revision fails with clang's message while the previous one serves.
#[tokio::test]
async fn every_example_on_the_api_server() -> anyhow::Result<()> {
    let _one_at_a_time = BUILDING.lock().await;
    let cluster = Cluster::with_functions().await?;
    let cache = tempfile::tempdir()?;
    let (_controller, artifacts) =
        cluster.controller(examples_store()?, cluster::HOSTS_NOT_PODS)?;
    let host = cluster.host(&artifacts, cache.path()).await?;

    let runtimes = ["c", "rust", "go", "nodejs", "python", "ruby", "java"];
    for runtime in runtimes {
        let started = Instant::now();
        let yaml = std::fs::read_to_string(functions_dir().join(runtime).join("functions.yaml"))?;
        cluster.apply(&yaml)?;
        wait_until(Duration::from_secs(900), || async {
            let phases = cluster
                .kubectl(&[
                    "get",
                    "fn",
                    "-n",
                    "test",
                    "-o",
                    "jsonpath={.items[*].status.phase}",
                ])
                .unwrap_or_default();
            let failed = phases.split(' ').any(|p| p == "Failed");
            failed
                || phases.split(' ').filter(|p| *p == "Ready").count()
                    == yaml.matches("kind: Function").count() + ready_before(runtime, &runtimes)
        })
        .await?;
        let failed = cluster.kubectl(&["get", "fn", "-n", "test", "-o", "jsonpath={range .items[?(@.status.phase==\"Failed\")]}{.metadata.name}: {.status.conditions}{\"\\n\"}{end}"])?;
        assert!(failed.is_empty(), "failed builds: {failed}");
        report(&format!(
            "kubernetes: {runtime}: {} examples applied → all Ready in {:.1} s (built here or by an up test before)",
            yaml.matches("kind: Function").count(),
            started.elapsed().as_secs_f64()
        ));
    }
    examples::kubeless(&host, "c", "c", spaced).await?;
    examples::kubeless(&host, "rs", "rust", str::to_string).await?;
    examples::go(&host).await?;
    examples::kubeless(&host, "js", "nodejs20", str::to_string).await?;
    examples::express_response(&host).await?;
    examples::kubeless(&host, "py", "python3.12", spaced).await?;
    examples::kubeless(&host, "rb", "ruby3.4", str::to_string).await?;
    examples::java(&host).await?;

    // A syntax error: Failed with the compiler's message; the Ready revision keeps answering.
    let hello = std::fs::read_to_string(functions_dir().join("c/functions.yaml"))?;
    let first = hello.split("\n---\n").next().unwrap_or_default();
    cluster.apply(&first.replace("\"hello world\");", "\"hello world\")"))?;
    wait_until(Duration::from_secs(120), || async {
        cluster.phase("c-hello") == "Failed"
    })
    .await?;
    let message = cluster.kubectl(&[
        "get",
        "fn",
        "c-hello",
        "-n",
        "test",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Built\")].message}",
    ])?;
    assert!(
        message.contains("handler.c:") && message.contains("error: expected ';'"),
        "clang's message in status: {message}"
    );
    let (status, _, body) =
        examples::call(&host, "c-hello", reqwest::Method::GET, "/", "", &[]).await?;
    assert_eq!((status, body.as_str()), (200, "hello world"));
    Ok(())
}

/// Functions of the runtimes applied before `runtime` (all Ready by then).
fn ready_before(runtime: &str, order: &[&str]) -> usize {
    order
        .iter()
        .take_while(|r| **r != runtime)
        .map(|r| {
            std::fs::read_to_string(functions_dir().join(r).join("functions.yaml"))
                .map_or(0, |yaml| yaml.matches("kind: Function").count())
        })
        .sum()
}

/// A broken revision of a function that served: the phase turns Failed with the compiler's own
/// message, pointing at the user's file, and the previous revision keeps answering.
async fn syntax_error(
    runtime: &str,
    handler: &str,
    code: fn(&str) -> String,
    good: &str,
    bad: &str,
    expect: &[&str],
) -> anyhow::Result<()> {
    let _one_at_a_time = BUILDING.lock().await;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("f.yaml");
    let manifest = |body: &str| {
        let source: String = code(body).lines().map(|l| format!("    {l}\n")).collect();
        format!(
            "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nmetadata: {{name: f, namespace: test}}\nspec:\n  runtime: {runtime}\n  handler: {handler}\n  function: |\n{source}"
        )
    };
    std::fs::write(&file, manifest(good))?;
    let up = Up::start(dir.path(), &[]).await?;
    assert_eq!(up.get("f.test", "/").await?, (200, "v1".into()));

    std::fs::write(&file, manifest(bad))?;
    wait_until(Duration::from_secs(180), || async {
        matches!(up.phase("test", "f").await, Some((p, _)) if p == "Failed")
    })
    .await?;
    let (_, message) = up.phase("test", "f").await.unwrap_or_default();
    for part in expect {
        assert!(message.contains(part), "{runtime}: {part:?} in: {message}");
    }
    assert_eq!(up.get("f.test", "/").await?, (200, "v1".into()));
    Ok(())
}

#[tokio::test]
async fn a_go_syntax_error_fails_with_the_compilers_message_and_the_old_revision_serves()
-> anyhow::Result<()> {
    syntax_error(
        "go",
        "handler.F",
        |body| format!("package kubeless\nimport \"github.com/kubeless/kubeless/pkg/functions\"\nfunc F(event functions.Event, context functions.Context) (string, error) {{\n  {body}\n}}"),
        r#"return "v1", nil"#,
        r#"return "v2" nil"#,
        &["syntax error", "handler.go:"],
    )
    .await
}

#[tokio::test]
async fn a_rust_syntax_error_fails_with_the_compilers_message() -> anyhow::Result<()> {
    syntax_error(
        "rust",
        "handler.f",
        |body| format!("pub fn f(_: wasmless::Event, _: wasmless::Context) -> Result<&'static str, String> {{\n  {body}\n}}"),
        r#"Ok("v1")"#,
        r#"Ok("v2"))"#,
        &["error", "handler.rs:"],
    )
    .await
}

#[tokio::test]
async fn a_c_syntax_error_fails_with_the_compilers_message() -> anyhow::Result<()> {
    syntax_error(
        "c",
        "handler.f",
        |body| format!("#include <wasmless.h>\nint f(const struct wasmless_event *e, const struct wasmless_context *c, struct wasmless_reply *r) {{\n  {body}\n}}"),
        r#"return wasmless_text(r, "v1");"#,
        r#"return wasmless_text(r, "v2")"#,
        &["error: expected ';'", "handler.c:"],
    )
    .await
}

#[tokio::test]
async fn a_ruby_syntax_error_fails_with_the_interpreters_message() -> anyhow::Result<()> {
    syntax_error(
        "ruby",
        "handler.f",
        |body| format!("def f(event, context)\n  {body}\nend"),
        r#""v1""#,
        r#""v2"#,
        &["SyntaxError", "handler.rb:"],
    )
    .await
}

#[tokio::test]
async fn a_python_syntax_error_fails_with_the_interpreters_message() -> anyhow::Result<()> {
    syntax_error(
        "python",
        "handler.f",
        |body| format!("def f(event, context):\n    {body}"),
        r#"return "v1""#,
        r#"return "v2"#,
        &["SyntaxError", "handler.py"],
    )
    .await
}

/// Every Python function runs one interpreter (its code is the same for all: hosts load it
/// once), each with its own files: two functions of the same module name answer apart, and a
/// new revision of one is served, the other unchanged, though its code did not change.
#[tokio::test]
async fn python_functions_share_the_interpreter_and_keep_their_own_files() -> anyhow::Result<()> {
    let _one_at_a_time = BUILDING.lock().await;
    let dir = tempfile::tempdir()?;
    let manifest = |name: &str, answer: &str| {
        format!(
            "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nmetadata: {{name: {name}, namespace: test}}\nspec:\n  runtime: python\n  handler: handler.f\n  function: |\n    import os\n    ANSWER = '{answer}'\n    def f(event, context):\n        return ANSWER + ' ' + os.environ['GREETING']\n  env: [{{name: GREETING, value: '{name}'}}]\n"
        )
    };
    std::fs::write(dir.path().join("a.yaml"), manifest("a", "a1"))?;
    std::fs::write(dir.path().join("b.yaml"), manifest("b", "b1"))?;
    let random = |name: &str| {
        format!(
            "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nmetadata: {{name: {name}, namespace: test}}\nspec:\n  runtime: python\n  handler: handler.f\n  function: |\n    import random\n    def f(event, context):\n        return str(random.random())\n"
        )
    };
    std::fs::write(dir.path().join("r1.yaml"), random("r1"))?;
    std::fs::write(dir.path().join("r2.yaml"), random("r2"))?;
    let up = Up::start(dir.path(), &[]).await?;
    // Module code runs in the instance, with the function's environment.
    assert_eq!(up.get("a.test", "/").await?, (200, "a1 a".into()));
    assert_eq!(up.get("b.test", "/").await?, (200, "b1 b".into()));
    // One snapshot, but not one random sequence for every function.
    let (r1, r2) = (up.get("r1.test", "/").await?, up.get("r2.test", "/").await?);
    assert_eq!((r1.0, r2.0), (200, 200));
    assert_ne!(r1.1, r2.1, "two functions drew the same random number");

    std::fs::write(dir.path().join("a.yaml"), manifest("a", "a2"))?;
    wait_until(Duration::from_secs(120), || async {
        up.get("a.test", "/").await.ok() == Some((200, "a2 a".into()))
    })
    .await?;
    assert_eq!(up.get("b.test", "/").await?, (200, "b1 b".into()));
    // A missing handler fails the build with Python's message; the revision serving stays.
    std::fs::write(
        dir.path().join("a.yaml"),
        manifest("a", "a3").replace("handler.f", "handler.g"),
    )?;
    wait_until(Duration::from_secs(120), || async {
        matches!(up.phase("test", "a").await, Some((p, _)) if p == "Failed")
    })
    .await?;
    let (_, message) = up.phase("test", "a").await.unwrap_or_default();
    assert!(
        message.contains("module 'handler' has no function 'g'"),
        "{message}"
    );
    assert_eq!(up.get("a.test", "/").await?, (200, "a2 a".into()));
    Ok(())
}

#[tokio::test]
async fn a_java_syntax_error_fails_with_the_compilers_message() -> anyhow::Result<()> {
    syntax_error(
        "java",
        "Handler.f",
        |body| format!("package io.kubeless;\npublic class Handler {{\n  public String f(Event event, Context context) {{\n    {body}\n  }}\n}}"),
        r#"return "v1";"#,
        r#"return "v2""#,
        &["error: ';' expected", "Handler.java:"],
    )
    .await
}

/// `go-deps`'s body: the name-based (SHA-1, version 5) UUID of `https://wasmless.dev` in RFC
/// 4122's URL namespace, as github.com/google/uuid computes it natively.
const GO_DEPS_BODY: &str = "uuid 27c777a6-8095-51ce-9a75-7c852c377500";

/// `deps` resolve at build time from the registries (PyPI, npm, crates.io, the Go module proxy)
/// and are bundled; a
/// package that does not exist fails that function's build with the resolver's message, and the
/// other functions serve.
#[tokio::test]
async fn dependencies_are_bundled_and_a_missing_one_fails_the_build() -> anyhow::Result<()> {
    let _one_at_a_time = BUILDING.lock().await;
    let dir = tempfile::tempdir()?;
    let manifest = |name: &str, runtime: &str, handler: &str, deps: &str, code: &str| {
        let indent =
            |text: &str| -> String { text.lines().map(|l| format!("    {l}\n")).collect() };
        format!(
            "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nmetadata: {{name: {name}, namespace: test}}\nspec:\n  runtime: {runtime}\n  handler: {handler}\n  deps: |\n{}  function: |\n{}",
            indent(deps),
            indent(code)
        )
    };
    let python = "import six\ndef f(event, context):\n    return 'six ' + six.__version__\n";
    let node = "const isNumber = require('is-number');\nmodule.exports = { f: (event, context) => 'is-number ' + isNumber('42') };\n";
    let rust = "pub fn f(_: wasmless::Event, _: wasmless::Context) -> Result<String, String> {\n    Ok(format!(\"itoa {}\", itoa::Buffer::new().format(42)))\n}\n";
    let go = "package kubeless\n\nimport (\n\t\"github.com/google/uuid\"\n\t\"github.com/kubeless/kubeless/pkg/functions\"\n)\n\nfunc F(event functions.Event, context functions.Context) (string, error) {\n\treturn \"uuid \" + uuid.NewSHA1(uuid.NameSpaceURL, []byte(\"https://wasmless.dev\")).String(), nil\n}\n";
    let docs = [
        manifest("py-deps", "python", "handler.f", "six==1.16.0", python),
        manifest(
            "js-deps",
            "nodejs",
            "handler.f",
            r#"{"dependencies": {"is-number": "7.0.0"}}"#,
            node,
        ),
        manifest("rs-deps", "rust", "handler.f", r#"itoa = "1""#, rust),
        manifest(
            "go-deps",
            "go",
            "handler.F",
            "module example.com/f\n\nrequire github.com/google/uuid v1.6.0\n",
            go,
        ),
        manifest(
            "py-missing",
            "python",
            "handler.f",
            "no-such-package-wasmless==1.0",
            python,
        ),
        manifest(
            "js-missing",
            "nodejs",
            "handler.f",
            r#"{"dependencies": {"no-such-package-wasmless": "1.0.0"}}"#,
            node,
        ),
        manifest(
            "rs-missing",
            "rust",
            "handler.f",
            r#"no-such-crate-wasmless = "1""#,
            rust,
        ),
        manifest(
            "go-missing",
            "go",
            "handler.F",
            "require example.com/no-such-module-wasmless v1.0.0",
            go,
        ),
    ];
    std::fs::write(dir.path().join("deps.yaml"), docs.join("---\n"))?;
    let up = Up::start(dir.path(), &[]).await?;
    for (name, body) in [
        ("py-deps", "six 1.16.0"),
        ("js-deps", "is-number true"),
        ("rs-deps", "itoa 42"),
        ("go-deps", GO_DEPS_BODY),
    ] {
        assert_eq!(
            up.get(&format!("{name}.test"), "/").await?,
            (200, body.into()),
            "{name}"
        );
    }
    for (name, expect) in [
        ("py-missing", "no-such-package-wasmless"),
        ("js-missing", "no-such-package-wasmless"),
        (
            "rs-missing",
            "no matching package named `no-such-crate-wasmless`",
        ),
        ("go-missing", "example.com/no-such-module-wasmless"),
    ] {
        let (phase, message) = up.phase("test", name).await.unwrap_or_default();
        assert_eq!(phase, "Failed", "{name}: {message}");
        assert!(message.contains(expect), "{name}: {message}");
        assert_eq!(up.get(&format!("{name}.test"), "/").await?.0, 404, "{name}");
    }
    Ok(())
}

/// Warm instances (`warmInstances`, 4 by default for python and go): a function's globals carry over
/// between its own requests, never into another function built from the same source (another
/// tenant's, or its own with `warmInstances: 0`, which starts fresh each time); an instance that
/// exited, timed out or hit its memory cap is never used again.
#[tokio::test]
async fn warm_instances_keep_state_per_function_and_never_after_a_failure() -> anyhow::Result<()> {
    let _one_at_a_time = BUILDING.lock().await;
    let dir = tempfile::tempdir()?;
    // One source for all three: one artifact (the same digest), three loaded functions.
    let source = "import os, time\ncount = 0\ndef f(event, context):\n    global count\n    count += 1\n    if event['data'] == 'exit':\n        os._exit(3)\n    if event['data'] == 'sleep':\n        time.sleep(30)\n    if event['data'] == 'grow':\n        global big\n        big = bytearray(512 << 20)\n    return str(count)\n";
    let manifest = |name: &str, namespace: &str, extra: &str| {
        let code: String = source.lines().map(|l| format!("    {l}\n")).collect();
        format!(
            "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  runtime: python3.12\n  handler: handler.f\n  timeout: 3\n  memory: 256Mi\n{extra}  function: |\n{code}"
        )
    };
    // Go's functions are WAGI reactors, kept warm the same way.
    let go = "package kubeless\n\nimport (\n\t\"os\"\n\t\"strconv\"\n\n\t\"github.com/kubeless/kubeless/pkg/functions\"\n)\n\nvar count int\n\nfunc F(event functions.Event, context functions.Context) (string, error) {\n\tcount++\n\tif event.Data == \"exit\" {\n\t\tos.Exit(3)\n\t}\n\treturn strconv.Itoa(count), nil\n}\n";
    let go_code: String = go.lines().map(|l| format!("    {l}\n")).collect();
    let docs = [
        manifest("counter", "alpha", ""),
        manifest("counter", "beta", ""),
        manifest("fresh", "alpha", "  warmInstances: 0\n"),
        format!(
            "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nmetadata: {{name: go-counter, namespace: alpha}}\nspec:\n  runtime: go\n  handler: handler.F\n  function: |\n{go_code}"
        ),
    ];
    std::fs::write(dir.path().join("f.yaml"), docs.join("---\n"))?;
    let up = Up::start(dir.path(), &[]).await?;
    let post = |host: &'static str, body: &'static str| {
        let request = up.request(reqwest::Method::POST, host, "/").body(body);
        async move {
            let r = request.send().await?;
            anyhow::Ok((r.status().as_u16(), r.text().await?))
        }
    };

    // One request at a time, so each takes the one idle instance there is.
    for expected in ["1", "2", "3"] {
        assert_eq!(up.get("counter.alpha", "/").await?, (200, expected.into()));
    }
    assert_eq!(
        up.get("counter.beta", "/").await?,
        (200, "1".into()),
        "another tenant's function"
    );
    for _ in 0..3 {
        assert_eq!(
            up.get("fresh.alpha", "/").await?,
            (200, "1".into()),
            "warmInstances: 0"
        );
    }
    assert_eq!(up.get("counter.alpha", "/").await?, (200, "4".into()));

    // Each failure drops the instance it ran in: the next request starts from a fresh one.
    let (status, _) = post("counter.alpha", "exit").await?;
    assert_eq!(status, 500, "os._exit is a failed call");
    assert_eq!(
        up.get("counter.alpha", "/").await?,
        (200, "1".into()),
        "after an exit"
    );
    let (status, _) = post("counter.alpha", "sleep").await?;
    assert_eq!(status, 408, "slept past its 3 s timeout");
    assert_eq!(
        up.get("counter.alpha", "/").await?,
        (200, "1".into()),
        "after a timeout"
    );
    let (status, body) = post("counter.alpha", "grow").await?;
    assert_eq!(status, 500, "512 MiB is past its 256Mi cap: {body}");
    assert!(body.contains("memory limit"), "{body}");
    assert_eq!(
        up.get("counter.alpha", "/").await?,
        (200, "1".into()),
        "after the memory cap"
    );
    assert_eq!(
        up.get("counter.alpha", "/").await?,
        (200, "2".into()),
        "and warm again"
    );

    for expected in ["1", "2"] {
        assert_eq!(
            up.get("go-counter.alpha", "/").await?,
            (200, expected.into())
        );
    }
    let (status, _) = post("go-counter.alpha", "exit").await?;
    assert_eq!(status, 500, "os.Exit(3) is a failed call");
    assert_eq!(
        up.get("go-counter.alpha", "/").await?,
        (200, "1".into()),
        "after an exit"
    );
    Ok(())
}
