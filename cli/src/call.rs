//! `function call`: Kubeless's request (GET without data, POST with; JSON content type when the
//! data is JSON; `event-*` headers) and the answer's body on stdout.

use std::io::Write;

use anyhow::{Context, bail};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

use crate::target::{Call, Target};

/// Kubeless sent `cli.kubeless.io`.
const EVENT_NAMESPACE: &str = "cli.wasmless.dev";

#[derive(clap::Args)]
pub struct CallArgs {
    /// Function name.
    name: String,
    /// Request body; with it the default method is POST.
    #[arg(long)]
    data: Option<String>,
    /// HTTP method [default: GET, or POST with --data].
    #[arg(long)]
    method: Option<String>,
    /// Extra header K:V (repeat the flag for more).
    #[arg(long, short = 'H', value_name = "K:V")]
    header: Vec<String>,
    /// The path (and query) the function sees, such as /users/7?full=1.
    #[arg(long, default_value = "/", value_name = "PATH")]
    path: String,
}

pub async fn run(target: &Target, args: CallArgs) -> anyhow::Result<()> {
    let key = target.key(&args.name);
    let call = request(&args)?;
    let answer = target.call(&key, call).await?;
    let mut out = std::io::stdout().lock();
    out.write_all(&answer.body)?;
    if !answer.body.is_empty() && !answer.body.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if !answer.status.is_success() {
        bail!("{key} answered {}", answer.status);
    }
    Ok(())
}

fn request(args: &CallArgs) -> anyhow::Result<Call> {
    let method = match &args.method {
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .with_context(|| format!("--method {m:?} is not an HTTP method"))?,
        None if args.data.is_some() => Method::POST,
        None => Method::GET,
    };
    let mut headers = HeaderMap::new();
    let body = args.data.clone().unwrap_or_default().into_bytes();
    if args.data.is_some() {
        let json = serde_json::from_slice::<serde_json::Value>(&body).is_ok();
        let content_type = if json {
            "application/json"
        } else {
            "text/plain"
        };
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    let event_id = uuid::Uuid::new_v4().to_string();
    let event_time = k8s_openapi::jiff::Timestamp::now().to_string();
    for (name, value) in [
        ("event-id", event_id.as_str()),
        ("event-time", event_time.as_str()),
        ("event-namespace", EVENT_NAMESPACE),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_str(value)?);
    }
    for kv in &args.header {
        let (k, v) = kv
            .split_once(':')
            .with_context(|| format!("--header {kv:?} is not K:V"))?;
        let name = HeaderName::from_bytes(k.trim().as_bytes())
            .with_context(|| format!("--header {kv:?}: bad name"))?;
        let value = HeaderValue::from_str(v.trim())
            .with_context(|| format!("--header {kv:?}: bad value"))?;
        headers.insert(name, value);
    }
    Ok(Call {
        path: function_path(&args.path)?,
        method,
        headers,
        body,
    })
}

/// `--path`: absolute, without `.` or `..` segments (spelt out or percent-encoded), which a
/// proxy would resolve to another function's route or another API path.
fn function_path(path: &str) -> anyhow::Result<PathAndQuery> {
    let parsed: PathAndQuery = path
        .parse()
        .with_context(|| format!("--path {path:?} is not a URL path"))?;
    let dots = parsed.path().split('/').any(|segment| {
        let lower = segment.to_ascii_lowercase().replace("%2e", ".");
        lower == "." || lower == ".."
    });
    if !parsed.path().starts_with('/') || dots || path.contains('#') {
        bail!("--path {path:?} must start with / and have no . or .. segments");
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(data: Option<&str>, method: Option<&str>, header: &[&str]) -> CallArgs {
        CallArgs {
            name: "f".into(),
            data: data.map(Into::into),
            method: method.map(Into::into),
            header: header.iter().map(|h| h.to_string()).collect(),
            path: "/".into(),
        }
    }

    #[test]
    fn paths_stay_under_the_function() {
        assert_eq!(function_path("/").unwrap().as_str(), "/");
        assert_eq!(
            function_path("/users/7?full=1").unwrap().as_str(),
            "/users/7?full=1"
        );
        for bad in [
            "users",
            "/a/../b",
            "/..",
            "/%2E%2e/x",
            "/./a",
            "/a b",
            "/a#frag",
        ] {
            assert!(function_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kubeless_defaults() -> anyhow::Result<()> {
        let get = request(&args(None, None, &[]))?;
        assert_eq!(get.method, Method::GET);
        assert!(get.headers.get("content-type").is_none());
        assert_eq!(get.headers["event-namespace"], "cli.wasmless.dev");
        let time = get.headers["event-time"].to_str()?;
        assert!(time.ends_with('Z') && time.contains('T'), "{time}");
        assert_eq!(get.headers["event-id"].len(), 36);

        let json = request(&args(Some(r#"{"a":1}"#), None, &["X-A: b"]))?;
        assert_eq!(json.method, Method::POST);
        assert_eq!(json.headers["content-type"], "application/json");
        assert_eq!(json.headers["x-a"], "b");
        let text = request(&args(Some("hi"), Some("put"), &[]))?;
        assert_eq!(text.method, Method::PUT);
        assert_eq!(text.headers["content-type"], "text/plain");
        assert!(request(&args(None, None, &["nocolon"])).is_err());
        Ok(())
    }
}
