//! One cron invocation: a request to the function with Kubeless's cron event headers
//! (`event-id`, `event-time`, `event-type`, `event-namespace: cronjobtrigger.kubeless.io`), GET,
//! or POST with the trigger's payload as JSON, as Kubeless's cron jobs sent it.

use std::time::Duration;

use http::header;
use sha2::{Digest, Sha256};

use wasmless_runtime::FunctionKey;
use wasmless_runtime::trigger::CronResult;
use wasmless_runtime::trigger::cron::EVENT_NAMESPACE;

/// Longest error kept in status.
const MAX_ERROR: usize = 500;

/// What one invocation sends.
pub struct Invocation<'a> {
    pub function: &'a FunctionKey,
    /// The tick, RFC 3339: `event-time`.
    pub tick: &'a str,
    /// Names the tick of one trigger: the same for a tick whoever sends it, so a function can
    /// tell a repeat (none is sent; see the claim in [`super::cron`]).
    pub event_id: String,
    pub payload: Option<&'a serde_json::Value>,
    pub timeout: Duration,
}

/// `event-id`: of the trigger's uid and the tick.
pub fn event_id(trigger_uid: &str, tick: &str) -> String {
    let digest = Sha256::digest(format!("{trigger_uid}/{tick}"));
    hex::encode(&digest[..16])
}

/// Sends `invocation` to `base` (with `Host: <name>.<namespace>`), or to the function's Service
/// when there is no base; the outcome as status records it.
pub async fn send(
    client: &reqwest::Client,
    base: Option<&str>,
    invocation: &Invocation<'_>,
) -> CronResult {
    let key = invocation.function;
    let host = format!("{}.{}", key.name, key.namespace);
    let url = match base {
        Some(base) => format!("{}/", base.trim_end_matches('/')),
        None => format!("http://{host}.svc:8080/"),
    };
    let request = match invocation.payload {
        Some(payload) => client
            .post(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(payload.to_string()),
        None => client.get(&url),
    };
    let sent = request
        .header(header::HOST, &host)
        .header("event-id", &invocation.event_id)
        .header("event-time", invocation.tick)
        .header("event-type", "application/json")
        .header("event-namespace", EVENT_NAMESPACE)
        .timeout(invocation.timeout)
        .send()
        .await;
    let mut result = CronResult {
        schedule_time: invocation.tick.to_string(),
        ..CronResult::default()
    };
    match sent {
        Ok(mut response) => {
            let status = response.status();
            result.status_code = Some(status.as_u16());
            if !status.is_success() {
                // The start of the answer says why; a large one is not read on.
                let mut body = Vec::new();
                while body.len() < MAX_ERROR * 4 {
                    match response.chunk().await {
                        Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                        _ => break,
                    }
                }
                let body = String::from_utf8_lossy(&body);
                result.error = trim(&format!("{status}: {}", body.trim()));
            }
        }
        Err(e) => result.error = trim(&format!("cannot reach {key} at {url}: {e}")),
    }
    result
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
    async fn sends_kubeless_cron_headers_to_the_functions_host() {
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
        let invocation = Invocation {
            function: &key,
            tick: "2026-01-01T00:00:05Z",
            event_id: event_id("uid", "2026-01-01T00:00:05Z"),
            payload: Some(&payload),
            timeout: Duration::from_secs(5),
        };
        let base = format!("http://{addr}");
        let result = send(&reqwest::Client::new(), Some(&base), &invocation).await;
        assert_eq!(result.status_code, Some(500));
        assert!(result.error.contains("boom"), "{}", result.error);
        assert_eq!(result.schedule_time, "2026-01-01T00:00:05Z");

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
