//! Source runtimes through `wasmless up`: every example of each runtime built from source by
//! its real toolchain, then called over HTTP with exact bodies, content types and status codes.

use std::time::Duration;

use reqwest::Method;
use wasmless_e2e::{Up, functions_dir, wait_until};

/// Builds are CPU-bound and the machine has 2 cores: one suite builds at a time.
static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn call(
    up: &Up,
    function: &str,
    method: Method,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, String, String)> {
    let mut request = up
        .request(method, &format!("{function}.test"), path)
        .body(body.to_string());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let r = request.send().await?;
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((status, content_type, r.text().await?))
}

#[tokio::test]
async fn go_examples() -> anyhow::Result<()> {
    let _one_at_a_time = BUILDING.lock().await;
    let up = Up::start(&functions_dir().join("go"), &[]).await?;
    let text = "text/plain; charset=utf-8";
    assert_eq!(
        call(&up, "go-hello", Method::GET, "/", "", &[]).await?,
        (200, text.into(), "hello world".into())
    );
    assert_eq!(
        call(&up, "go-echo", Method::POST, "/", "some data", &[]).await?,
        (200, text.into(), "some data".into())
    );
    assert_eq!(
        call(&up, "go-json", Method::GET, "/", "", &[]).await?,
        (
            200,
            text.into(),
            r#"{"function":"go-json","ok":true,"runtime":"go1.21"}"#.into()
        )
    );
    assert_eq!(
        call(
            &up,
            "go-headers",
            Method::GET,
            "/path?q=42",
            "",
            &[("x-name", "bob"), ("event-id", "ev-1")]
        )
        .await?,
        (200, text.into(), "x-name=bob q=42 event-id=ev-1".into())
    );
    assert_eq!(
        call(&up, "go-env", Method::GET, "/", "", &[]).await?,
        (200, text.into(), "GREETING=hi".into())
    );
    assert_eq!(
        call(&up, "go-error", Method::GET, "/", "", &[]).await?,
        (500, text.into(), "something went wrong".into())
    );
    let (status, _, body) = call(&up, "go-timeout", Method::GET, "/", "", &[]).await?;
    assert_eq!(status, 408, "{body}");
    Ok(())
}

/// The Kubeless examples of a runtime whose handlers return objects as JSON (`nodejs`,
/// `python`): `<prefix>-hello`, `-echo`, `-json`, `-headers`, `-env`, `-error`, `-timeout`.
/// `json_of` is how the runtime prints `{"a": [1, true]}` and the json example's object.
async fn kubeless_examples(
    dir: &str,
    prefix: &str,
    runtime: &str,
    json_of: fn(&str) -> String,
) -> anyhow::Result<()> {
    let _one_at_a_time = BUILDING.lock().await;
    let up = Up::start(&functions_dir().join(dir), &[]).await?;
    let f = |name: &str| format!("{prefix}-{name}");
    let text = "text/plain; charset=utf-8";
    assert_eq!(
        call(&up, &f("hello"), Method::GET, "/", "", &[]).await?,
        (200, text.into(), "hello world".into())
    );
    assert_eq!(
        call(&up, &f("echo"), Method::POST, "/", "some data", &[]).await?,
        (200, text.into(), "some data".into())
    );
    assert_eq!(
        call(
            &up,
            &f("echo"),
            Method::POST,
            "/",
            r#"{"a": [1, true]}"#,
            &[("content-type", "application/json")]
        )
        .await?,
        (200, "application/json".into(), json_of(r#"{"a":[1,true]}"#)),
        "JSON bodies arrive decoded"
    );
    let object = format!(
        r#"{{"function":"{}","runtime":"{runtime}","ok":true}}"#,
        f("json")
    );
    assert_eq!(
        call(&up, &f("json"), Method::GET, "/", "", &[]).await?,
        (200, "application/json".into(), json_of(&object))
    );
    assert_eq!(
        call(
            &up,
            &f("headers"),
            Method::GET,
            "/path?q=42",
            "",
            &[("x-name", "bob"), ("event-id", "ev-1")]
        )
        .await?,
        (200, text.into(), "x-name=bob q=42 event-id=ev-1".into())
    );
    assert_eq!(
        call(&up, &f("env"), Method::GET, "/", "", &[]).await?,
        (200, text.into(), "GREETING=hi".into())
    );
    assert_eq!(
        call(&up, &f("error"), Method::GET, "/", "", &[]).await?,
        (500, text.into(), "something went wrong".into())
    );
    let (status, _, body) = call(&up, &f("timeout"), Method::GET, "/", "", &[]).await?;
    assert_eq!(status, 408, "{body}");
    Ok(())
}

#[tokio::test]
async fn nodejs_examples() -> anyhow::Result<()> {
    kubeless_examples("nodejs", "js", "nodejs20", str::to_string).await
}

/// `{"a": [1, true]}` for `{"a":[1,true]}`: how Python's json.dumps prints, and how the C
/// examples write their JSON (C echoes the request's JSON text as sent).
fn spaced(compact: &str) -> String {
    compact.replace(':', ": ").replace(',', ", ")
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
