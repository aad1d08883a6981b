//! The builder's HTTP API (see [`crate::api`]): bearer-token authentication compared in constant
//! time, a bounded number of builds at once, each in [`crate::sandbox`].

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use wasmless_runtime::token::{self, Token};

use crate::api::{self, BuildRequest, Failure};
use crate::builders::{self, BuildError, Source};
use crate::sandbox::Sandbox;

pub struct Server {
    sandbox: Arc<Sandbox>,
    token: Token,
    builds: tokio::sync::Semaphore,
}

impl Server {
    /// `concurrency` builds run at once, the rest wait.
    pub fn new(sandbox: Arc<Sandbox>, token: Token, concurrency: usize) -> Arc<Self> {
        Arc::new(Self {
            sandbox,
            token,
            builds: tokio::sync::Semaphore::new(concurrency.max(1)),
        })
    }
}

pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route(api::BUILD_PATH, post(build))
        .route(api::HEALTH_PATH, get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(api::MAX_REQUEST))
        .with_state(server)
}

async fn build(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !server.token.presented_in(&headers) {
        return token::unauthorized();
    }
    let request: BuildRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("unreadable request: {e}\n"),
            )
                .into_response();
        }
    };
    drop(body);
    if !api::valid_tenant(&request.tenant) {
        return (StatusCode::BAD_REQUEST, "tenant must be a DNS label\n").into_response();
    }
    let runtime = request.runtime;
    let code = match base64::engine::general_purpose::STANDARD.decode(&request.source) {
        Ok(c) => c,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("source is not base64: {e}\n"),
            )
                .into_response();
        }
    };
    let Ok(_permit) = server.builds.acquire().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    };
    let source = Source {
        code: &code,
        packaging: request.packaging,
        handler: &request.handler,
        deps: &request.deps,
    };
    let started = std::time::Instant::now();
    let result = server
        .sandbox
        .build(runtime, &request.tenant, &source)
        .await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let version = builders::builder(runtime).version();
    match result {
        Ok(wasm) => {
            tracing::info!(tenant = %request.tenant, runtime = runtime.name(), size = wasm.len(), elapsed_ms, "built");
            (
                [
                    (header::CONTENT_TYPE.as_str(), "application/wasm"),
                    (api::VERSION_HEADER, version),
                ],
                wasm,
            )
                .into_response()
        }
        Err(e) => {
            // The message is the tenant's own compiler output: not logged, only returned.
            tracing::info!(tenant = %request.tenant, runtime = runtime.name(), kind = ?Failure::from(&e).kind, elapsed_ms, "build failed");
            failed(&e)
        }
    }
}

fn failed(e: &BuildError) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(Failure::from(e)),
    )
        .into_response()
}
