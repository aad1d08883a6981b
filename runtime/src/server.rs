//! The two listeners: function traffic (8080) and admin (9090: health, readiness, metrics, the
//! function list and their logs). Routing picks the function; `Host::invoke` runs it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::{StatusCode, Uri, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::admission::{Reason, Rejected};
use crate::host::{Host, json_error};
use crate::token::{self, Token};
use wasmless_api::function::FunctionKey;
use wasmless_api::{address, admin};

/// What one listener's connections may hold. A connection that has not sent a whole request
/// head within `header_timeout` (the first or the next one on a kept-alive connection) is
/// closed, so idle and slow clients cost a bounded time; past `max_connections` new ones are
/// answered 503 and closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// Largest request head (request line and headers); larger ones get 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request; more get 431.
    pub max_headers: usize,
    /// How the listener lets go when told to stop.
    pub drain: Drain,
}

/// A stopping listener goes on accepting until no connection has come for `quiet`, at most for
/// `max`, then stops listening while the requests in flight finish: the routes that send
/// clients here (endpoints, kube-proxy's rules) are updated after the stop, later under load.
/// A `quiet` of zero stops listening at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drain {
    pub quiet: Duration,
    pub max: Duration,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            quiet: Duration::ZERO,
            max: Duration::from_secs(30),
        }
    }
}

/// hyper's smallest read buffer, and so the smallest head limit it can apply.
pub const MIN_HEADER_BYTES: usize = 8192;

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 64 << 10,
            max_headers: 100,
            drain: Drain::default(),
        }
    }
}

/// The function listener's app: every path and method goes to the function the request names.
pub fn function_app(host: Arc<Host>) -> Router {
    Router::new().fallback(handle_function).with_state(host)
}

async fn handle_function(
    State(host): State<Arc<Host>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let host_header = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();

    let by_host = address::key_from_host(host_header).and_then(|k| host.registry().get(&k));
    // Else an HTTPTrigger's hostname and path (a trigger never holds a Service name).
    let by_host = by_host.or_else(|| {
        let key = host.routes().route(host_header, parts.uri.path())?;
        host.registry().get(&key)
    });
    let function = match by_host {
        Some(f) => f,
        None if !host.config().path_routing => {
            host.metrics().unrouted.inc();
            return not_found(host_header, None);
        }
        None => {
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let routed = address::key_from_path(path)
                .and_then(|(k, rest)| Some((host.registry().get(&k)?, rest)));
            let Some((f, rest)) = routed else {
                host.metrics().unrouted.inc();
                return not_found(host_header, Some(path));
            };
            match rest.parse::<Uri>() {
                Ok(uri) => parts.uri = uri,
                Err(_) => return json_error(StatusCode::BAD_REQUEST, "bad path", None),
            }
            f
        }
    };

    let key = &function.def.key;
    let limit = host.config().max_body_bytes;
    let too_large = || {
        let rejected = Rejected {
            reason: Reason::body_too_large,
            message: format!("request body is larger than this host's limit of {limit} bytes"),
        };
        host.reject(Some(key), &rejected)
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let body_timeout = host.config().body_timeout;
    let collected = tokio::time::timeout(body_timeout, Limited::new(body, limit).collect()).await;
    let Ok(collected) = collected else {
        let rejected = Rejected {
            reason: Reason::body_timeout,
            message: format!(
                "the request body did not arrive within {} ms",
                body_timeout.as_millis()
            ),
        };
        return host.reject(Some(key), &rejected);
    };
    let body = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read request body: {e}"),
                Some(&function.def.key),
            );
        }
    };
    host.invoke(function.clone(), parts, body, Some(remote))
        .await
}

/// `path` is the request's when path routing is on.
fn not_found(host_header: &str, path: Option<&str>) -> Response {
    let message = match (address::key_from_host(host_header), path) {
        (Some(key), _) => format!("no function {key} is loaded on this host"),
        (None, Some(path)) => format!(
            "no function for host {host_header:?} and path {path:?}: send Host: <name>.<namespace> or use the path {}<namespace>/<name>/",
            address::PATH_PREFIX
        ),
        (None, None) => format!(
            "no function for host {host_header:?}: send Host: <name>.<namespace> (path routing, {}<namespace>/<name>/, is off on this host)",
            address::PATH_PREFIX
        ),
    };
    json_error(StatusCode::NOT_FOUND, &message, None)
}

/// The admin listener's app: health, readiness and metrics for anyone (probes, scrapers);
/// what tenants loaded and logged only with `token` (`None`: to anyone, for `wasmless up`,
/// whose admin listener is on loopback).
pub fn admin_app(host: Arc<Host>, token: Option<Token>) -> Router {
    let mut data = Router::new()
        .route(admin::FUNCTIONS_PATH, get(functions))
        .route(admin::STATUS_PATH, get(statuses))
        .route(&admin::logs_path_of("{namespace}", "{name}"), get(logs));
    if let Some(token) = token {
        data = data.layer(axum::middleware::from_fn_with_state(token, token::require));
    }
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(data)
        .with_state(host)
}

async fn readyz(State(host): State<Arc<Host>>) -> impl IntoResponse {
    if host.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "loading functions")
    }
}

async fn metrics(State(host): State<Arc<Host>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        host.metrics().encode(),
    )
}

async fn functions(State(host): State<Arc<Host>>) -> impl IntoResponse {
    let list: Vec<_> = host.registry().list().iter().map(|f| f.info()).collect();
    Json(list)
}

/// What the function source last did with each function.
async fn statuses(State(host): State<Arc<Host>>) -> impl IntoResponse {
    let list: Vec<_> = host
        .statuses()
        .into_iter()
        .map(|(key, status)| admin::FunctionState {
            namespace: key.namespace,
            name: key.name,
            status,
        })
        .collect();
    Json(list)
}

#[derive(Deserialize)]
struct LogsQuery {
    #[serde(default)]
    since: u64,
}

async fn logs(
    State(host): State<Arc<Host>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(q): Query<LogsQuery>,
) -> Response {
    let key = FunctionKey::new(&namespace, &name);
    match host.logs().get(&key) {
        Some(buffer) => Json(buffer.since(q.since)).into_response(),
        None => json_error(
            StatusCode::NOT_FOUND,
            &format!("no logs for {key}"),
            Some(&key),
        ),
    }
}

/// The function and admin listeners, bound before serving so callers can print the real ports
/// (`127.0.0.1:0` in tests).
pub struct Listeners {
    pub functions: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(functions: &str, admin: &str) -> Result<Self, BindError> {
        let bind = |addr: &str| {
            let addr = addr.to_string();
            async move {
                TcpListener::bind(&addr)
                    .await
                    .map_err(|source| BindError { addr, source })
            }
        };
        Ok(Self {
            functions: bind(functions).await?,
            admin: bind(admin).await?,
        })
    }

    /// The bound addresses, as `(functions, admin)`.
    pub fn addresses(&self) -> std::io::Result<(SocketAddr, SocketAddr)> {
        Ok((self.functions.local_addr()?, self.admin.local_addr()?))
    }

    /// Prints the two addresses on stdout, one line each, for scripts and tests:
    /// `<program>: functions on http://…` and `<program>: admin on http://…`.
    pub fn announce(&self, program: &str) -> std::io::Result<()> {
        let (functions, admin) = self.addresses()?;
        println!("{program}: functions on http://{functions}");
        println!("{program}: admin on http://{admin}");
        Ok(())
    }

    /// Serves `host`'s functions and `admin` (an [`admin_app`], with whatever routes the
    /// program adds) until `stop` is cancelled; in-flight requests finish first.
    pub async fn serve(
        self,
        host: Arc<Host>,
        admin: Router,
        stop: CancellationToken,
    ) -> std::io::Result<()> {
        let stop_admin = CancellationToken::new();
        let functions = tokio::spawn(serve_functions(
            self.functions,
            host,
            stop.clone().cancelled_owned(),
        ));
        let admin = tokio::spawn(serve(
            self.admin,
            admin,
            stop_admin.clone().cancelled_owned(),
        ));
        stop.cancelled().await;
        // The admin port (readiness, metrics) outlives the function port's drain.
        let served = functions.await.map_err(std::io::Error::other)?;
        stop_admin.cancel();
        admin.await.map_err(std::io::Error::other)??;
        served
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    addr: String,
    source: std::io::Error,
}

/// Serves the function listener with the host's connection limits until `shutdown` resolves.
pub async fn serve_functions(
    listener: TcpListener,
    host: Arc<Host>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = host.config().connections.clone();
    let refused = host.metrics().rejected_counter(Reason::connections);
    serve_with(
        listener,
        function_app(host),
        &limits,
        Some(refused),
        shutdown,
    )
    .await
}

/// Serves `app` on `listener` with the default connection limits until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, &ConnectionLimits::default(), None, shutdown).await
}

/// Serves `app` on `listener` until `shutdown` resolves; in-flight requests finish first.
/// `refused` counts the connections turned away. `TCP_NODELAY` matters: a response that leaves
/// in several small writes otherwise waits ~40 ms for a delayed ACK.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    limits: &ConnectionLimits,
    refused: Option<Counter>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    // Functions may never call back into this process (see `outbound`).
    crate::outbound::record_own_listener(local);
    // HTTP/1 only: protocol detection (hyper-util's `auto`) waits for a first byte without any
    // timeout, so a connection that sends nothing would be held forever.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES))
        .max_headers(limits.max_headers);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    let mut draining: Option<Draining> = None;
    loop {
        let until = draining.as_ref().map(Draining::until);
        let (stream, remote) = tokio::select! {
            _ = &mut shutdown, if draining.is_none() => {
                let drain = limits.drain;
                if drain.quiet.is_zero() {
                    break;
                }
                tracing::info!(%local, quiet = ?drain.quiet, max = ?drain.max, "stopping: accepting connections until none comes for the quiet time");
                draining = Some(Draining::start(drain));
                continue;
            }
            _ = tokio::time::sleep_until(until.unwrap_or_else(Instant::now)), if until.is_some() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, usually: wait rather than spin.
                    tracing::warn!(%local, "accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if let Some(draining) = &mut draining {
            draining.accepted();
        }
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Some(counter) = &refused {
                counter.inc();
            }
            tracing::warn!(%local, %remote, reason = ?Reason::connections, max = limits.max_connections, "refused a connection: too many open");
            tokio::spawn(refuse_connection(stream));
            continue;
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: http::Request<_>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            app.clone().oneshot(request)
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%remote, "connection: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A listener's drain under way: when it ends unless another connection comes.
struct Draining {
    quiet: Duration,
    quiet_until: Instant,
    end: Instant,
}

impl Draining {
    fn start(drain: Drain) -> Self {
        let now = Instant::now();
        Self {
            quiet: drain.quiet,
            quiet_until: now + drain.quiet,
            end: now + drain.max,
        }
    }

    fn accepted(&mut self) {
        self.quiet_until = Instant::now() + self.quiet;
    }

    fn until(&self) -> Instant {
        self.quiet_until.min(self.end)
    }
}

/// Tells a client over the connection limit to come back later, and closes.
async fn refuse_connection(mut stream: TcpStream) {
    const BODY: &str = r#"{"error":"this host holds as many connections as it may: retry later"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        crate::admission::RETRY_AFTER_SECONDS,
        BODY.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// A token cancelled on Ctrl-C or SIGTERM: what every part of a process that must stop waits on.
pub fn stop_on_signal() -> CancellationToken {
    let stop = CancellationToken::new();
    let cancel = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        cancel.cancel();
    });
    stop
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} },
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A stop signal and the server, already told to stop.
    async fn stopped_server(drain: Drain) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let limits = ConnectionLimits {
            drain,
            ..ConnectionLimits::default()
        };
        let app = Router::new().fallback(|| async { "served" });
        let server = tokio::spawn(async move {
            serve_with(listener, app, &limits, None, async {})
                .await
                .expect("serve");
        });
        (addr, server)
    }

    async fn get(addr: SocketAddr) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok(response)
    }

    #[tokio::test]
    async fn a_stopping_listener_serves_until_connections_stop_coming() {
        let quiet = Duration::from_millis(1000);
        let (addr, server) = stopped_server(Drain {
            quiet,
            max: Duration::from_secs(30),
        })
        .await;
        // Longer than the quiet time in all: each connection starts it again.
        for i in 0..15 {
            let response = get(addr).await.expect("served while draining");
            assert!(response.ends_with("served"), "request {i}: {response}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let last = Instant::now();
        server.await.expect("server task");
        assert!(last.elapsed() >= quiet - Duration::from_millis(200));
        assert!(get(addr).await.is_err(), "no longer listening");
    }

    #[tokio::test]
    async fn a_drain_ends_at_its_max_however_busy() {
        let (addr, server) = stopped_server(Drain {
            quiet: Duration::from_secs(5),
            max: Duration::from_millis(500),
        })
        .await;
        let started = Instant::now();
        while !server.is_finished() {
            assert!(
                started.elapsed() < Duration::from_secs(4),
                "drain past its max"
            );
            let _ = get(addr).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(get(addr).await.is_err(), "no longer listening");
    }

    #[tokio::test]
    async fn without_a_drain_a_stop_closes_the_listener_at_once() {
        let (addr, server) = stopped_server(Drain::default()).await;
        server.await.expect("server task");
        assert!(get(addr).await.is_err(), "no longer listening");
    }
}

/// The function listener's app at its seam: routing, 404 and 413, through `oneshot`.
#[cfg(test)]
mod function_app_tests {
    use super::*;
    use crate::host::HostConfig;
    use crate::testing;
    use bytes::Bytes;

    fn request(host: &str, path: &str, body: &'static [u8]) -> Request {
        let mut request = Request::builder()
            .uri(path)
            .header(header::HOST, host)
            .body(axum::body::Body::from(body))
            .expect("a request");
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4000))));
        request
    }

    async fn send(host: &Arc<Host>, request: Request) -> (u16, String) {
        let response = function_app(host.clone()).oneshot(request).await;
        testing::text(response.expect("infallible")).await
    }

    fn two_functions(config: HostConfig) -> Arc<Host> {
        let host = testing::host(config);
        for name in ["a", "b"] {
            let key = FunctionKey::new("ns", name);
            testing::load(&host, &key, "r1", &testing::wagi(&format!("from {name}")))
                .expect("loads");
        }
        host
    }

    #[tokio::test]
    async fn the_host_header_picks_the_function_in_each_service_form() {
        let host = two_functions(HostConfig::default());
        for (host_header, body) in [
            ("a.ns", "from a"),
            ("b.ns:8080", "from b"),
            ("a.ns.svc", "from a"),
            ("b.ns.svc.cluster.local:8080", "from b"),
        ] {
            let got = send(&host, request(host_header, "/", b"")).await;
            assert_eq!(got, (200, body.to_string()), "Host: {host_header}");
        }
    }

    #[tokio::test]
    async fn an_unknown_function_gets_404_naming_it_and_is_counted() {
        let host = two_functions(HostConfig::default());
        let (status, body) = send(&host, request("c.ns", "/", b"")).await;
        assert_eq!(status, 404);
        assert!(body.contains("no function ns/c is loaded"), "{body}");
        let (status, body) = send(&host, request("localhost:8080", "/", b"")).await;
        assert_eq!(status, 404);
        assert!(body.contains("path routing"), "{body}");
        assert_eq!(host.metrics().unrouted.get(), 2);
    }

    #[tokio::test]
    async fn a_path_routes_only_where_path_routing_is_on() {
        let off = two_functions(HostConfig::default());
        let (status, _) = send(&off, request("localhost", "/fn/ns/b/x", b"")).await;
        assert_eq!(
            status, 404,
            "off by default: a cluster's ingress could reach any function"
        );

        let on = two_functions(HostConfig {
            path_routing: true,
            ..HostConfig::default()
        });
        let got = send(&on, request("localhost", "/fn/ns/b/x?y=1", b"")).await;
        assert_eq!(got, (200, "from b".to_string()));
        let (status, _) = send(&on, request("localhost", "/fn/ns/none/", b"")).await;
        assert_eq!(status, 404);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_gets_413_whether_declared_or_streamed() {
        let host = two_functions(HostConfig {
            max_body_bytes: 8,
            ..HostConfig::default()
        });
        let got = send(&host, request("a.ns", "/", b"12345678")).await;
        assert_eq!(got, (200, "from a".to_string()), "at the limit");

        let (status, body) = send(&host, request("a.ns", "/", b"123456789")).await;
        assert_eq!(status, 413);
        assert!(body.contains("limit of 8 bytes"), "{body}");

        // No Content-Length: the body is cut as it streams in.
        let chunks =
            futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"123456789"))]);
        let mut streamed = request("a.ns", "/", b"");
        *streamed.body_mut() = axum::body::Body::from_stream(chunks);
        let (status, _) = send(&host, streamed).await;
        assert_eq!(status, 413);
    }
}
