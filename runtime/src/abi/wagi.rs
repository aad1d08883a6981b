//! WAGI: a WASI p1 command answers one request as a CGI script would. The body arrives on stdin,
//! CGI variables in the environment; stdout carries header lines, a blank line, then the body.
//! Go (`GOOS=wasip1`), C (wasi-libc) and hand-written WAT produce such modules.

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use wasmtime::{InstancePre, Linker, Module, Store};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

use super::{CallError, Invocation, LiveGuard};
use crate::admission::Permit;
use crate::limits::MemoryLimiter;

pub struct WagiState {
    pub(super) wasi: WasiP1Ctx,
    pub(super) limiter: MemoryLimiter,
    /// The admission slot of the request the instance serves now (none while a reactor idles).
    pub(super) permit: Option<Permit>,
    pub(super) _live: LiveGuard,
}

impl WagiState {
    /// A store for one instance of a WAGI command or reactor, capped at the call's memory,
    /// holding no admission slot yet.
    pub(super) fn store(
        engine: &wasmtime::Engine,
        call: &Invocation,
        wasi: WasiP1Ctx,
    ) -> Store<Self> {
        let mut store = Store::new(
            engine,
            WagiState {
                wasi,
                limiter: MemoryLimiter::new(call.memory_bytes),
                permit: None,
                _live: LiveGuard::new(call.instances_live.clone()),
            },
        );
        store.limiter(|s| &mut s.limiter);
        store
    }
}

pub(super) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<WagiState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut WagiState| &mut s.wasi)?;
    Ok(linker)
}

pub struct Wagi {
    pre: InstancePre<WagiState>,
}

impl Wagi {
    pub(super) fn new(linker: &Linker<WagiState>, module: &Module) -> wasmtime::Result<Self> {
        if module.get_export("_start").is_none() {
            wasmtime::bail!("it exports no `_start` function (build it as a WASI command)");
        }
        Ok(Self {
            pre: linker.instantiate_pre(module)?,
        })
    }

    pub(super) async fn call(&self, call: Invocation) -> Result<Response<Body>, CallError> {
        // One byte more than allowed, so that a response cut at the limit can be told apart.
        let max_stdout = call.max_stdout_bytes;
        let stdout = MemoryOutputPipe::new(max_stdout.saturating_add(1));
        let stderr = MemoryOutputPipe::new(call.max_log_bytes);
        let mut wasi = super::wasi_builder(&call);
        cgi_variables(&call, |name, value| {
            wasi.env(name, value);
        });
        let wasi = wasi
            .stdin(MemoryInputPipe::new(call.body.clone()))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .arg(call.parts.uri.path())
            .build_p1();
        let mut store = WagiState::store(self.pre.module().engine(), &call, wasi);
        store.data_mut().permit = Some(call.permit);
        super::yield_on_epoch(&mut store);

        let run = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        };
        let outcome = tokio::time::timeout_at(call.deadline, run).await;
        call.logs.record(&stderr.contents());
        let outcome = outcome.map_err(|_| CallError::Timeout)?;
        match outcome {
            Ok(()) => {}
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(I32Exit(0)) => {}
                Some(I32Exit(code)) => return Err(CallError::Exit(*code)),
                None => return Err(CallError::from_trap(e, &store.data().limiter)),
            },
        }
        drop(store);
        response(stdout.contents(), max_stdout)
    }
}

/// The response in what a WAGI function wrote to stdout: at most `max_stdout` bytes (the pipe
/// holds one more, so that a response cut at the limit is told apart).
pub(super) fn response(out: Bytes, max_stdout: usize) -> Result<Response<Body>, CallError> {
    if out.len() > max_stdout {
        return Err(CallError::BadResponse(format!(
            "the response is larger than this host's limit of {max_stdout} bytes"
        )));
    }
    parse_cgi_response(out).map_err(CallError::BadResponse)
}

/// The CGI/1.1 meta-variables (RFC 3875) plus an `HTTP_*` variable per request header, each
/// handed to `each` as it is found: most are borrowed from the request, not copied, since this
/// runs for every request.
pub(super) fn cgi_variables(call: &Invocation, mut each: impl FnMut(&str, &str)) {
    let parts = &call.parts;
    let header = |name: &HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let host = header(&header::HOST);
    let (server_name, server_port) = host.rsplit_once(':').unwrap_or((host, "80"));
    let protocol = match parts.version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    };
    each("GATEWAY_INTERFACE", "CGI/1.1");
    each("SERVER_SOFTWARE", "wasmless");
    each("SERVER_PROTOCOL", protocol);
    each("REQUEST_METHOD", parts.method.as_str());
    each("SCRIPT_NAME", "");
    each("PATH_INFO", parts.uri.path());
    each("QUERY_STRING", parts.uri.query().unwrap_or_default());
    each(
        "REQUEST_URI",
        parts.uri.path_and_query().map_or("/", |p| p.as_str()),
    );
    each("CONTENT_TYPE", header(&header::CONTENT_TYPE));
    each("CONTENT_LENGTH", &call.body.len().to_string());
    each("SERVER_NAME", server_name);
    each("SERVER_PORT", server_port);
    if let Some(addr) = call.remote_addr {
        each("REMOTE_ADDR", &addr.ip().to_string());
        each("REMOTE_PORT", &addr.port().to_string());
    }
    let mut var = String::new();
    for (name, value) in &parts.headers {
        // Like CGI servers, leave out what is already a meta-variable.
        if name == header::CONTENT_TYPE || name == header::CONTENT_LENGTH {
            continue;
        }
        if let Ok(value) = value.to_str() {
            var.clear();
            var.push_str("HTTP_");
            // Header names are lower case already (`http` normalises them).
            var.extend(name.as_str().chars().map(|c| match c {
                '-' => '_',
                c => c.to_ascii_uppercase(),
            }));
            each(&var, value);
        }
    }
}

/// Splits CGI output into a response: header lines, a blank line, the body. `Status:` sets the
/// code; a `Location:` without one redirects (302).
pub fn parse_cgi_response(out: Bytes) -> Result<Response<Body>, String> {
    let (head_len, body_start) = find_blank_line(&out).unwrap_or((out.len(), out.len()));
    let head = std::str::from_utf8(&out[..head_len])
        .map_err(|_| "the header block is not UTF-8".to_string())?;
    let mut response = Response::new(Body::empty());
    let mut status = None;
    for line in head.lines() {
        let (name, value) = line.split_once(':').ok_or_else(|| {
            format!(
                "expected header lines, a blank line, then the body; found {:?}",
                truncate(line)
            )
        })?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or_default();
            status = Some(
                code.parse::<u16>()
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .ok_or_else(|| format!("bad Status header {:?}", truncate(value)))?,
            );
            continue;
        }
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("bad header name {:?}", truncate(name)))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("bad value for header {:?}", truncate(name.as_str())))?;
        response.headers_mut().append(name, value);
    }
    let redirect = response.headers().contains_key(header::LOCATION);
    *response.status_mut() = status.unwrap_or(if redirect {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    *response.body_mut() = Body::from(out.slice(body_start..));
    Ok(response)
}

/// Where the header block ends and the body starts: the first blank line, `\n\n` or `\r\n\r\n`.
fn find_blank_line(out: &[u8]) -> Option<(usize, usize)> {
    if out.starts_with(b"\n") {
        return Some((0, 1));
    }
    if out.starts_with(b"\r\n") {
        return Some((0, 2));
    }
    (0..out.len()).find_map(|i| match &out[i..] {
        [b'\n', b'\n', ..] => Some((i, i + 2)),
        [b'\n', b'\r', b'\n', ..] => Some((i, i + 3)),
        _ => None,
    })
}

fn truncate(s: &str) -> &str {
    s.get(..s.char_indices().nth(60).map_or(s.len(), |(i, _)| i))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn parse(
        out: &'static str,
    ) -> Result<(StatusCode, Vec<(String, String)>, String), String> {
        let r = parse_cgi_response(Bytes::from_static(out.as_bytes()))?;
        let status = r.status();
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let body = r
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
    }

    #[tokio::test]
    async fn headers_then_body() {
        let (status, headers, body) = parse("Content-Type: text/plain\nX-A: 1\n\nhello\n\nworld")
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers,
            vec![
                ("content-type".into(), "text/plain".into()),
                ("x-a".into(), "1".into())
            ]
        );
        assert_eq!(body, "hello\n\nworld");
    }

    #[tokio::test]
    async fn status_location_and_crlf() {
        let (status, _, body) =
            parse("Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope")
                .await
                .unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::NOT_FOUND, "nope"));
        let (status, headers, _) = parse("Location: /elsewhere\n\n").await.unwrap();
        assert_eq!(status, StatusCode::FOUND);
        assert_eq!(headers, vec![("location".into(), "/elsewhere".into())]);
        let (status, _, body) = parse("\nbody only").await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "body only"));
    }

    #[tokio::test]
    async fn malformed_output_is_an_error() {
        let e = parse("hello world\n\nbody").await.unwrap_err();
        assert!(e.contains("expected header lines"), "{e}");
        assert!(
            parse("Status: abc\n\n")
                .await
                .unwrap_err()
                .contains("bad Status")
        );
    }

    /// Errors reach logs and clients: a few dozen characters of the output, never all of it
    /// (found by tests/tests/fuzz.rs).
    #[test]
    fn errors_quote_the_output_briefly() {
        let long = "x".repeat(10_000);
        for out in [
            format!("Status: 4.{long}\n\n"),
            format!("X-{long}: \u{1}\n\n"),
            format!("{long}\n\n"),
        ] {
            let e = parse_cgi_response(Bytes::from(out)).unwrap_err();
            assert!(e.len() < 200, "{e}");
        }
    }
}
