//! How the controller, the Metacontroller hook and `wasmless up` reach the builder.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use wasmless_api::function::Runtime;

use crate::api::{self, BuildRequest, Failure};
use crate::builders::{self, BuildError, Source};

/// A builder at `url`, asked with a bearer token.
pub struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
    /// Blocking callers ([`crate::Build`]) wait on the runtime the client was made in.
    runtime: tokio::runtime::Handle,
}

impl Client {
    /// Must be called inside a Tokio runtime. `timeout` bounds a whole build, waiting included.
    pub fn new(url: &str, token: &str, timeout: Duration) -> Result<Self, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            BuildError::Internal(format!("the builder client needs a runtime: {e}"))
        })?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| BuildError::Internal(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            url: url.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            runtime,
        })
    }

    /// [`Client::new`] with the token read from a file (a mounted Secret).
    pub fn with_token_file(
        url: &str,
        token_file: &Path,
        timeout: Duration,
    ) -> Result<Self, BuildError> {
        let token = wasmless_runtime::token::Token::from_file(token_file)
            .map_err(|e| BuildError::Internal(format!("the builder token: {e}")))?;
        Self::new(url, token.secret(), timeout)
    }

    pub async fn build_async(
        &self,
        runtime: Runtime,
        tenant: &str,
        source: &Source<'_>,
    ) -> Result<Vec<u8>, BuildError> {
        let request = BuildRequest {
            runtime,
            handler: source.handler.to_string(),
            deps: source.deps.to_string(),
            tenant: tenant.to_string(),
            source: base64::engine::general_purpose::STANDARD.encode(source.code),
            packaging: source.packaging,
        };
        let unavailable = |e: reqwest::Error| BuildError::Unavailable(format!("{}: {e}", self.url));
        let response = self
            .http
            .post(format!("{}{}", self.url, api::BUILD_PATH))
            .bearer_auth(&self.token)
            .json(&request)
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status();
        let version = response
            .headers()
            .get(api::VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if status.is_success() {
            let expected = builders::builder(runtime).version();
            if version.as_deref() != Some(expected) {
                return Err(BuildError::Internal(format!(
                    "the builder builds {} as {version:?}, this controller expects {expected:?}: run the same release of both",
                    runtime.name()
                )));
            }
            let wasm = response.bytes().await.map_err(unavailable)?;
            return Ok(wasm.to_vec());
        }
        if status == reqwest::StatusCode::UNPROCESSABLE_ENTITY {
            let failure: Failure = response.json().await.map_err(unavailable)?;
            return Err(failure.into());
        }
        let text = response.text().await.unwrap_or_default();
        let text: String = text.trim().chars().take(500).collect();
        Err(if status.is_server_error() {
            BuildError::Unavailable(format!("{}: {status} {text}", self.url))
        } else {
            BuildError::Internal(format!("{}: {status} {text}", self.url))
        })
    }
}

impl crate::Build for Client {
    /// Blocking: call it off the async runtime (in `spawn_blocking`, or a plain thread).
    fn build(
        &self,
        runtime: Runtime,
        tenant: &str,
        source: &Source,
    ) -> Result<Vec<u8>, BuildError> {
        self.runtime
            .block_on(self.build_async(runtime, tenant, source))
    }
}
