//! The example functions' expected behaviour (`functions/<runtime>/`), checked over HTTP against
//! any server: `wasmless up`, or a host fed by the controller from a real API server.

use reqwest::Method;

use crate::{Served, wait_until};

/// Status, Content-Type and body of one request to `function` in namespace `test`.
pub async fn call(
    served: &Served,
    function: &str,
    method: Method,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, String, String)> {
    let (status, response_headers, body) =
        call_with_headers(served, function, method, path, body, headers).await?;
    let content_type = header(&response_headers, "content-type").to_string();
    Ok((status, content_type, body))
}

/// Status, headers and body of one request to `function` in namespace `test`.
async fn call_with_headers(
    served: &Served,
    function: &str,
    method: Method,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, reqwest::header::HeaderMap, String)> {
    let mut request = served
        .request(method, &format!("{function}.test"), path)
        .body(body.to_string());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let r = request.send().await?;
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    Ok((status, headers, r.text().await?))
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Each runtime's examples are `<prefix>-<example>`.
pub const EXAMPLES: [&str; 8] = [
    "hello", "echo", "json", "headers", "env", "error", "timeout", "created",
];

/// Waits until `function` is routed (a host may load it a moment after its status says Ready).
async fn routed(served: &Served, function: &str) -> anyhow::Result<()> {
    wait_until(std::time::Duration::from_secs(60), || async {
        matches!(served.get(&format!("{function}.test"), "/").await, Ok((s, _)) if s != 404)
    })
    .await
}

/// What every runtime's examples share: `<prefix>-hello`, `-echo` (text), `-headers`, `-env`,
/// `-error`, `-timeout`, `-created`: 201 with a `Location` and `created` as its JSON body
/// (each runtime sets a status and headers its own way: a returned `{statusCode, headers, body}`
/// in Node.js, Python and Ruby, a `wasmless::Response` in Rust and an `io.kubeless.Response` in Java, Kubeless's response writer in Go,
/// `wasmless_status`/`wasmless_set_header` in C); and `-cgi` where the runtime builds programs.
async fn common(up: &Served, prefix: &str, created: &str) -> anyhow::Result<()> {
    let f = |name: &str| format!("{prefix}-{name}");
    for name in EXAMPLES {
        routed(up, &f(name)).await?;
    }
    let text = "text/plain; charset=utf-8";
    assert_eq!(
        call(up, &f("hello"), Method::GET, "/", "", &[]).await?,
        (200, text.into(), "hello world".into())
    );
    assert_eq!(
        call(up, &f("echo"), Method::POST, "/", "some data", &[]).await?,
        (200, text.into(), "some data".into())
    );
    assert_eq!(
        call(
            up,
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
        call(up, &f("env"), Method::GET, "/", "", &[]).await?,
        (200, text.into(), "GREETING=hi".into())
    );
    assert_eq!(
        call(up, &f("error"), Method::GET, "/", "", &[]).await?,
        (500, text.into(), "something went wrong".into())
    );
    let (status, _, body) = call(up, &f("timeout"), Method::GET, "/", "", &[]).await?;
    assert_eq!(status, 408, "{body}");
    let (status, headers, body) =
        call_with_headers(up, &f("created"), Method::GET, "/", "", &[]).await?;
    assert_eq!(
        (
            status,
            header(&headers, "location"),
            header(&headers, "content-type"),
            body.as_str()
        ),
        (201, "/items/1", "application/json", created),
        "{prefix}-created"
    );
    if PROGRAMS.contains(&prefix) {
        program(up, prefix).await?;
    }
    Ok(())
}

/// The runtimes that also build whole programs (no handler): `<prefix>-cgi`.
const PROGRAMS: [&str; 3] = ["c", "rs", "go"];

/// `<prefix>-cgi`, a plain CGI program: its own status line and headers, the method and query
/// from the environment, the body from stdin.
async fn program(served: &Served, prefix: &str) -> anyhow::Result<()> {
    let function = format!("{prefix}-cgi");
    routed(served, &function).await?;
    let (status, headers, body) = call_with_headers(
        served,
        &function,
        Method::POST,
        "/path?q=42",
        "some data",
        &[],
    )
    .await?;
    assert_eq!(
        (
            status,
            header(&headers, "content-type"),
            header(&headers, "x-program"),
            body.as_str()
        ),
        (201, "text/plain", prefix, "POST q=42 body=some data\n"),
        "{function}"
    );
    Ok(())
}

/// The Go examples (`go-hello` …): Go handlers return strings, as in Kubeless, so the json
/// example marshals its own (sorted) object and answers text.
pub async fn go(up: &Served) -> anyhow::Result<()> {
    common(up, "go", r#"{"id":1}"#).await?;
    assert_eq!(
        call(up, "go-json", Method::GET, "/", "", &[]).await?,
        (
            200,
            "text/plain; charset=utf-8".into(),
            r#"{"function":"go-json","ok":true,"runtime":"go1.21"}"#.into()
        )
    );
    Ok(())
}

/// The Java examples (`java-hello` …): `event.getData()` is the body as text, as in Kubeless's
/// Java runtime, so a JSON body echoes as text; a returned Map is JSON.
pub async fn java(up: &Served) -> anyhow::Result<()> {
    common(up, "java", r#"{"id":1}"#).await?;
    assert_eq!(
        call(up, "java-json", Method::GET, "/", "", &[]).await?,
        (
            200,
            "application/json".into(),
            r#"{"function":"java-json","runtime":"java11","ok":true}"#.into()
        )
    );
    Ok(())
}

/// The examples of a runtime whose handlers return objects as JSON (`nodejs`, `python`, `rust`,
/// `c`). `json_of` is how the runtime prints `{"a": [1, true]}` and the json example's object.
pub async fn kubeless(
    up: &Served,
    prefix: &str,
    runtime: &str,
    json_of: fn(&str) -> String,
) -> anyhow::Result<()> {
    common(up, prefix, &json_of(r#"{"id":1}"#)).await?;
    let f = |name: &str| format!("{prefix}-{name}");
    assert_eq!(
        call(
            up,
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
        call(up, &f("json"), Method::GET, "/", "", &[]).await?,
        (200, "application/json".into(), json_of(&object))
    );
    Ok(())
}

/// `js-accepted`: a status (202) and a header set on Kubeless's `event.extensions.response`, the
/// Express-like object Kubeless's Node.js runtime handed functions.
pub async fn express_response(up: &Served) -> anyhow::Result<()> {
    routed(up, "js-accepted").await?;
    let (status, headers, body) =
        call_with_headers(up, "js-accepted", Method::GET, "/", "", &[]).await?;
    assert_eq!(
        (
            status,
            header(&headers, "x-queue"),
            header(&headers, "content-type"),
            body.as_str()
        ),
        (202, "default", "text/plain; charset=utf-8", "queued")
    );
    Ok(())
}

/// `{"a": [1, true]}` for `{"a":[1,true]}`: how Python's json.dumps prints, and how the C
/// examples write their JSON (C echoes the request's JSON text as sent).
pub fn spaced(compact: &str) -> String {
    compact.replace(':', ": ").replace(',', ", ")
}

/// A Metacontroller sync request (`CompositeController` hook, v1) for the HelloWorld `your-name`
/// in `test`, with `children` the Pods Metacontroller observed.
pub fn hello_world_sync(children: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "controller": {"apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "CompositeController",
                       "metadata": {"name": "hello-controller"}},
        "parent": {"apiVersion": "example.com/v1", "kind": "HelloWorld",
                   "metadata": {"name": "your-name", "namespace": "test", "uid": "uid-1"},
                   "spec": {"who": "Your Name"}},
        "children": {"Pod.v1": children},
        "related": {},
        "finalizing": false
    })
}

/// The seed example (`examples/metacontroller-hello-world`): the function answers Metacontroller's
/// sync hook with the HelloWorld's status and its one child Pod.
pub async fn hello_world_controller(served: &Served) -> anyhow::Result<()> {
    routed(served, "hello-world").await?;
    let sync = |children: serde_json::Value| {
        let body = hello_world_sync(children).to_string();
        async move {
            let (status, content_type, text) = call(
                served,
                "hello-world",
                Method::POST,
                "/",
                &body,
                &[("content-type", "application/json")],
            )
            .await?;
            anyhow::ensure!(status == 200, "sync answered {status}: {text}");
            anyhow::ensure!(
                content_type.starts_with("application/json"),
                "{content_type}"
            );
            Ok::<serde_json::Value, anyhow::Error>(serde_json::from_str(&text)?)
        }
    };
    let first = sync(serde_json::json!({})).await?;
    assert_eq!(
        first["status"],
        serde_json::json!({"replicas": 0, "succeeded": 0})
    );
    let children = first["children"].as_array().cloned().unwrap_or_default();
    assert_eq!(children.len(), 1, "{first}");
    assert_eq!(children[0]["kind"], "Pod");
    assert_eq!(children[0]["metadata"]["name"], "your-name");
    assert_eq!(
        children[0]["spec"]["containers"][0]["command"],
        serde_json::json!(["echo", "Hello, Your Name"])
    );
    // Once Metacontroller has seen the Pod succeed, the status says so.
    let mut pod = children[0].clone();
    pod["status"] = serde_json::json!({"phase": "Succeeded"});
    let second = sync(serde_json::json!({ "your-name": pod })).await?;
    assert_eq!(
        second["status"],
        serde_json::json!({"replicas": 1, "succeeded": 1})
    );
    Ok(())
}

/// A C Function `name` in namespace `test` whose source is `prelude` followed by a handler.
pub fn c_function(name: &str, prelude: &str) -> String {
    let source = format!(
        "#include <wasmless.h>\n{prelude}\nint hello(const struct wasmless_event *e, const struct wasmless_context *c, struct wasmless_reply *r) {{ return wasmless_text(r, \"hi\"); }}\n"
    );
    let indented: String = source.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nmetadata: {{name: {name}, namespace: test}}\nspec:\n  runtime: c\n  handler: f.hello\n  function: |\n{indented}"
    )
}

/// A Python Function `name` in namespace `test` whose module code loops forever: the build's
/// check runs it, so only the builder's wall-clock timeout ends the build.
pub fn python_build_loop(name: &str) -> String {
    format!(
        "apiVersion: wasmless.dev/v1alpha1\nkind: Function\nmetadata: {{name: {name}, namespace: test}}\nspec:\n  runtime: python\n  handler: f.handler\n  function: |\n    while True:\n        pass\n    def handler(event, context):\n        return 'never'\n"
    )
}

/// C that makes the compiler build an initializer of 8^11 elements: it runs out of any memory
/// (or time) a build is given.
pub const C_MEMORY_BOMB: &str = "#define A0 1,1,1,1,1,1,1,1
#define A1 A0,A0,A0,A0,A0,A0,A0,A0
#define A2 A1,A1,A1,A1,A1,A1,A1,A1
#define A3 A2,A2,A2,A2,A2,A2,A2,A2
#define A4 A3,A3,A3,A3,A3,A3,A3,A3
#define A5 A4,A4,A4,A4,A4,A4,A4,A4
#define A6 A5,A5,A5,A5,A5,A5,A5,A5
#define A7 A6,A6,A6,A6,A6,A6,A6,A6
#define A8 A7,A7,A7,A7,A7,A7,A7,A7
#define A9 A8,A8,A8,A8,A8,A8,A8,A8
#define A10 A9,A9,A9,A9,A9,A9,A9,A9
static const char big[] = { A10 };";

/// A planted secret: a file outside anything a build may read, and its content.
pub struct Secret {
    _dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
    pub content: String,
}

impl Secret {
    pub fn plant() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("secret.h");
        let content = format!("wasmless_planted_secret_{}", std::process::id());
        // Valid C if it were read: the compiler would name it in its error.
        std::fs::write(&path, format!("int x = {content};\n"))?;
        Ok(Self {
            _dir: dir,
            path,
            content,
        })
    }

    /// The C line that tries to read it.
    pub fn include(&self) -> String {
        format!("#include \"{}\"", self.path.display())
    }
}
