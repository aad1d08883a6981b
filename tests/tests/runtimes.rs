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

#[tokio::test]
async fn nodejs_examples() -> anyhow::Result<()> {
    let _one_at_a_time = BUILDING.lock().await;
    let up = Up::start(&functions_dir().join("nodejs"), &[]).await?;
    let text = "text/plain; charset=utf-8";
    assert_eq!(
        call(&up, "js-hello", Method::GET, "/", "", &[]).await?,
        (200, text.into(), "hello world".into())
    );
    assert_eq!(
        call(&up, "js-echo", Method::POST, "/", "some data", &[]).await?,
        (200, text.into(), "some data".into())
    );
    assert_eq!(
        call(
            &up,
            "js-echo",
            Method::POST,
            "/",
            r#"{"a": [1, true]}"#,
            &[("content-type", "application/json")]
        )
        .await?,
        (200, "application/json".into(), r#"{"a":[1,true]}"#.into()),
        "JSON bodies arrive decoded"
    );
    assert_eq!(
        call(&up, "js-json", Method::GET, "/", "", &[]).await?,
        (
            200,
            "application/json".into(),
            r#"{"function":"js-json","runtime":"nodejs20","ok":true}"#.into()
        )
    );
    assert_eq!(
        call(
            &up,
            "js-headers",
            Method::GET,
            "/path?q=42",
            "",
            &[("x-name", "bob"), ("event-id", "ev-1")]
        )
        .await?,
        (200, text.into(), "x-name=bob q=42 event-id=ev-1".into())
    );
    assert_eq!(
        call(&up, "js-env", Method::GET, "/", "", &[]).await?,
        (200, text.into(), "GREETING=hi".into())
    );
    assert_eq!(
        call(&up, "js-error", Method::GET, "/", "", &[]).await?,
        (500, text.into(), "something went wrong".into())
    );
    let (status, _, body) = call(&up, "js-timeout", Method::GET, "/", "", &[]).await?;
    assert_eq!(status, 408, "{body}");
    Ok(())
}

#[tokio::test]
async fn python_examples() -> anyhow::Result<()> {
    let _one_at_a_time = BUILDING.lock().await;
    let up = Up::start(&functions_dir().join("python"), &[]).await?;
    let text = "text/plain; charset=utf-8";
    assert_eq!(
        call(&up, "py-hello", Method::GET, "/", "", &[]).await?,
        (200, text.into(), "hello world".into())
    );
    assert_eq!(
        call(&up, "py-echo", Method::POST, "/", "some data", &[]).await?,
        (200, text.into(), "some data".into())
    );
    assert_eq!(
        call(
            &up,
            "py-echo",
            Method::POST,
            "/",
            r#"{"a": [1, true]}"#,
            &[("content-type", "application/json")]
        )
        .await?,
        (200, "application/json".into(), r#"{"a": [1, true]}"#.into()),
        "JSON bodies arrive decoded"
    );
    assert_eq!(
        call(&up, "py-json", Method::GET, "/", "", &[]).await?,
        (
            200,
            "application/json".into(),
            r#"{"function": "py-json", "runtime": "python3.12", "ok": true}"#.into()
        )
    );
    assert_eq!(
        call(
            &up,
            "py-headers",
            Method::GET,
            "/path?q=42",
            "",
            &[("x-name", "bob"), ("event-id", "ev-1")]
        )
        .await?,
        (200, text.into(), "x-name=bob q=42 event-id=ev-1".into())
    );
    assert_eq!(
        call(&up, "py-env", Method::GET, "/", "", &[]).await?,
        (200, text.into(), "GREETING=hi".into())
    );
    assert_eq!(
        call(&up, "py-error", Method::GET, "/", "", &[]).await?,
        (500, text.into(), "something went wrong".into())
    );
    let (status, _, body) = call(&up, "py-timeout", Method::GET, "/", "", &[]).await?;
    assert_eq!(status, 408, "{body}");
    Ok(())
}

#[tokio::test]
async fn a_go_syntax_error_fails_with_the_compilers_message_and_the_old_revision_serves()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("f.yaml");
    let manifest = |body: &str| {
        format!(
            "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nmetadata: {{name: f, namespace: test}}\nspec:\n  runtime: go\n  handler: handler.F\n  function: |\n    package kubeless\n    import \"github.com/kubeless/kubeless/pkg/functions\"\n    func F(event functions.Event, context functions.Context) (string, error) {{\n      {body}\n    }}\n"
        )
    };
    std::fs::write(&file, manifest(r#"return "v1", nil"#))?;
    let up = Up::start(dir.path(), &[]).await?;
    assert_eq!(up.get("f.test", "/").await?, (200, "v1".into()));

    std::fs::write(&file, manifest(r#"return "v2" nil"#))?;
    wait_until(Duration::from_secs(120), || async {
        matches!(up.phase("test", "f").await, Some((p, _)) if p == "Failed")
    })
    .await?;
    let (_, message) = up.phase("test", "f").await.unwrap_or_default();
    assert!(
        message.contains("syntax error"),
        "the Go compiler's message: {message}"
    );
    assert!(
        message.contains("handler.go:"),
        "points at the user's file: {message}"
    );
    assert_eq!(up.get("f.test", "/").await?, (200, "v1".into()));
    Ok(())
}
