//! One trigger invocation: a request to the function with Kubeless's event headers
//! (`event-id`, `event-time`, `event-type`, `event-namespace`: `cronjobtrigger.kubeless.io` or
//! `natstriggers.kubeless.io`), a GET, or a POST of the trigger's payload or message, as
//! Kubeless's cron jobs and NATS consumers sent it.

use std::time::Duration;

use http::header;
use sha2::{Digest, Sha256};

use wasmless_api::FunctionKey;
use wasmless_api::function::Function;
use wasmless_api::validate;

/// Longest error kept in status.
const MAX_ERROR: usize = 500;

/// Added to the function's own timeout for the whole request.
const CALL_MARGIN: Duration = Duration::from_secs(5);

/// How long an invocation of `function` may take: its timeout (the default when it has none,
/// or is not found) and a margin.
pub fn timeout(function: Option<&Function>) -> Duration {
    function
        .and_then(|f| validate::timeout(f.spec.timeout.as_ref()).ok())
        .unwrap_or(wasmless_api::limits::DEFAULT_TIMEOUT)
        + CALL_MARGIN
}

/// What one invocation sends.
pub struct Invocation<'a> {
    pub function: &'a FunctionKey,
    /// `event-time`, RFC 3339: a cron tick, or when a message came.
    pub time: &'a str,
    /// `event-id`: a cron tick's is the same whoever sends it, so a function can tell a repeat.
    pub event_id: String,
    /// `event-namespace`: who sent it.
    pub source: &'static str,
    /// The body (POSTed) and its content type, also `event-type`; none: a GET, with
    /// `event-type: application/json`, as Kubeless's cron jobs sent.
    pub body: Option<(&'static str, Vec<u8>)>,
    pub timeout: Duration,
    /// How much of the answer to keep (a NATS reply carries it); 0: only a failure's start.
    pub keep: usize,
}

impl<'a> Invocation<'a> {
    /// A cron tick's: a GET, or a POST of the trigger's payload as JSON.
    pub fn cron(
        function: &'a FunctionKey,
        tick: &'a str,
        event_id: String,
        payload: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> Self {
        Self {
            function,
            time: tick,
            event_id,
            source: wasmless_api::trigger::cron::EVENT_NAMESPACE,
            body: payload.map(|p| ("application/json", p.to_string().into_bytes())),
            timeout,
            keep: 0,
        }
    }
}

/// How the function answered.
#[derive(Debug, Default)]
pub struct Answer {
    /// The HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Its content type, if it said one.
    pub content_type: Option<String>,
    /// The start of the answer: up to [`Invocation::keep`] bytes, or a failure's start.
    pub body: Vec<u8>,
    /// Whether the answer was longer than what was kept.
    pub cut: bool,
    /// Why it failed: a non-2xx answer's start, or why the function could not be reached.
    pub error: String,
}

impl Answer {
    pub fn succeeded(&self) -> bool {
        self.status_code.is_some_and(|c| (200..300).contains(&c))
    }
}

/// `event-id`: of the trigger's uid and what names the event (a tick, a message).
pub fn event_id(trigger_uid: &str, event: &str) -> String {
    let digest = Sha256::digest(format!("{trigger_uid}/{event}"));
    hex::encode(&digest[..16])
}

/// Sends `invocation` to `base` (with `Host: <name>.<namespace>`), or to the function's Service
/// when there is no base.
pub async fn send(
    client: &reqwest::Client,
    base: Option<&str>,
    invocation: &Invocation<'_>,
) -> Answer {
    let key = invocation.function;
    let host = format!("{}.{}", key.name, key.namespace);
    let url = match base {
        Some(base) => format!("{}/", base.trim_end_matches('/')),
        None => format!("http://{host}.svc:8080/"),
    };
    let (request, event_type) = match &invocation.body {
        Some((content_type, body)) => (
            client
                .post(&url)
                .header(header::CONTENT_TYPE, *content_type)
                .body(body.clone()),
            *content_type,
        ),
        None => (client.get(&url), "application/json"),
    };
    let sent = request
        .header(header::HOST, &host)
        .header("event-id", &invocation.event_id)
        .header("event-time", invocation.time)
        .header("event-type", event_type)
        .header("event-namespace", invocation.source)
        .timeout(invocation.timeout)
        .send()
        .await;
    let mut answer = Answer::default();
    match sent {
        Ok(mut response) => {
            let status = response.status();
            answer.status_code = Some(status.as_u16());
            answer.content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let keep = if status.is_success() {
                invocation.keep
            } else {
                invocation.keep.max(MAX_ERROR * 4)
            };
            // What is not kept is not read: a large answer costs nothing.
            while answer.body.len() <= keep {
                match response.chunk().await {
                    Ok(Some(chunk)) => answer.body.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            answer.cut = answer.body.len() > keep;
            answer.body.truncate(keep);
            if !status.is_success() {
                let start = &answer.body[..answer.body.len().min(MAX_ERROR * 4)];
                let start = String::from_utf8_lossy(start);
                answer.error = trim(&format!("{status}: {}", start.trim()));
            }
        }
        Err(e) => answer.error = trim(&format!("cannot reach {key} at {url}: {e}")),
    }
    answer
}

fn trim(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::Request;

    use super::*;

    #[tokio::test]
    async fn sends_kubeless_event_headers_to_the_functions_host() {
        let seen: Arc<Mutex<Vec<(String, http::HeaderMap, String)>>> = Arc::default();
        let sink = seen.clone();
        let app = axum::Router::new().fallback(move |request: Request| {
            let sink = sink.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                sink.lock().unwrap().push((
                    parts.method.to_string(),
                    parts.headers,
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                (http::StatusCode::INTERNAL_SERVER_ERROR, "boom")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let key = FunctionKey::new("test", "tick");
        let payload = serde_json::json!({"hello": "world"});
        let invocation = Invocation::cron(
            &key,
            "2026-01-01T00:00:05Z",
            event_id("uid", "2026-01-01T00:00:05Z"),
            Some(&payload),
            Duration::from_secs(5),
        );
        let base = format!("http://{addr}");
        let result = send(&reqwest::Client::new(), Some(&base), &invocation).await;
        assert_eq!(result.status_code, Some(500));
        assert!(!result.succeeded());
        assert!(result.error.contains("boom"), "{}", result.error);
        assert_eq!(result.body, b"boom");
        assert!(!result.cut);

        let (method, headers, body) = seen.lock().unwrap().remove(0);
        assert_eq!(method, "POST");
        assert_eq!(body, r#"{"hello":"world"}"#);
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        assert_eq!(header("host"), "tick.test");
        assert_eq!(header("event-namespace"), "cronjobtrigger.kubeless.io");
        assert_eq!(header("event-type"), "application/json");
        assert_eq!(header("event-time"), "2026-01-01T00:00:05Z");
        assert_eq!(header("event-id"), event_id("uid", "2026-01-01T00:00:05Z"));
        assert_ne!(
            event_id("uid", "2026-01-01T00:00:05Z"),
            event_id("uid", "2026-01-01T00:00:06Z")
        );

        // Nothing listening: the reason, no status code.
        let closed = send(
            &reqwest::Client::new(),
            Some("http://127.0.0.1:1"),
            &invocation,
        )
        .await;
        assert_eq!(closed.status_code, None);
        assert!(
            closed.error.contains("cannot reach test/tick"),
            "{}",
            closed.error
        );
    }
}
