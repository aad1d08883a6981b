//! The builder's HTTP API, shared by [`crate::server`] and [`crate::client`].
//!
//! `POST /v1/build` with `Authorization: Bearer <token>` and a JSON [`BuildRequest`]: `200` with
//! the WebAssembly bytes (`application/wasm`) and the builder's version for the runtime in
//! [`VERSION_HEADER`], or `422` with a JSON [`Failure`] (the compiler's message, a limit hit).
//! `401` without the token, `400` for a request it cannot read. `GET /healthz` needs no token.

use serde::{Deserialize, Serialize};

use wasmless_api::function::{Packaging, Runtime};

use crate::BuildError;

pub const BUILD_PATH: &str = "/v1/build";
pub const HEALTH_PATH: &str = "/healthz";
/// The builder's version for the requested runtime: the controller checks it against the one
/// its build keys were made with.
pub const VERSION_HEADER: &str = "wasmless-builder-version";
/// The largest request body: a source of 64 MiB (`wasmless up`'s limit for files), base64.
pub const MAX_REQUEST: usize = 96 * 1024 * 1024;
/// The largest WebAssembly binary a build may produce.
pub const MAX_WASM: u64 = 256 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
pub struct BuildRequest {
    /// What to build with.
    pub runtime: Runtime,
    pub handler: String,
    pub deps: String,
    /// The Function's namespace: its builds write only their own caches.
    pub tenant: String,
    /// The decoded source, base64.
    pub source: String,
    /// Whether the source is the handler's file or a zip archive of files.
    #[serde(default)]
    pub packaging: Packaging,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    Compile,
    Toolchain,
    Limit,
    Runtime,
    Internal,
}

/// Why a build failed, as the builder says it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl From<&BuildError> for Failure {
    fn from(e: &BuildError) -> Self {
        let kind = match e {
            BuildError::Compile(_) => FailureKind::Compile,
            BuildError::Toolchain { .. } => FailureKind::Toolchain,
            BuildError::Limit(_) => FailureKind::Limit,
            BuildError::UnknownRuntime(_) => FailureKind::Runtime,
            BuildError::Unavailable(_) | BuildError::Internal(_) => FailureKind::Internal,
        };
        Self {
            kind,
            message: e.to_string(),
        }
    }
}

impl From<Failure> for BuildError {
    fn from(f: Failure) -> Self {
        match f.kind {
            // The message is already whole ("clang-16 is not installed: …").
            FailureKind::Compile | FailureKind::Toolchain | FailureKind::Runtime => {
                BuildError::Compile(f.message)
            }
            FailureKind::Limit => BuildError::Limit(f.message),
            FailureKind::Internal => BuildError::Internal(f.message),
        }
    }
}

/// A tenant names directories: a DNS-1123 label, as namespaces are.
pub fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 63
        && tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !tenant.starts_with('-')
        && !tenant.ends_with('-')
}
