//! The `Function` manifest: the vocabulary the controller, the host and `wasmless up` share.
//!
//! Field names are Kubeless's (`function`, `function-content-type`, `handler`, `runtime`,
//! `checksum`, `deps`, `timeout`), so a Kubeless manifest ports by changing `apiVersion`.

use std::fmt;

use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "wasmless.dev/v1alpha1";
pub const KIND: &str = "Function";
pub const DEFAULT_NAMESPACE: &str = "default";

/// A whole manifest document as written in YAML or JSON.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionManifest {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: FunctionSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl FunctionManifest {
    pub fn key(&self) -> FunctionKey {
        FunctionKey::new(
            self.metadata
                .namespace
                .as_deref()
                .unwrap_or(DEFAULT_NAMESPACE),
            &self.metadata.name,
        )
    }
}

/// What the user wrote under `spec:`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct FunctionSpec {
    /// Language or format of `function`: `wat`, `wasm`; Kubeless names such as `python3.8` are
    /// mapped by the builders.
    pub runtime: String,
    /// Kubeless `file.func`, for source runtimes.
    #[serde(default)]
    pub handler: String,
    /// The source itself (or its base64, or a URL; see `function-content-type`).
    #[serde(default)]
    pub function: String,
    #[serde(rename = "function-content-type", default)]
    pub function_content_type: String,
    /// Optional `sha256:<hex>` of the decoded source.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub checksum: String,
    /// Dependencies file text (requirements.txt, package.json, go.mod).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deps: String,
    /// Seconds, as a string (Kubeless) or an integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    /// Linear-memory cap as a Kubernetes quantity (`128Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// Kubeless wrote `timeout: "180"`; people also write `timeout: 180`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Timeout {
    Seconds(u64),
    Text(String),
}

impl Timeout {
    pub fn seconds(&self) -> Result<u64, String> {
        match self {
            Timeout::Seconds(s) => Ok(*s),
            Timeout::Text(t) => t
                .trim()
                .parse()
                .map_err(|_| format!("timeout {t:?} is not a whole number of seconds")),
        }
    }
}

/// Identifies a function: namespace and name, as in Kubernetes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FunctionKey {
    pub namespace: String,
    pub name: String,
}

impl FunctionKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_ascii_lowercase(),
            name: name.to_ascii_lowercase(),
        }
    }
}

impl fmt::Display for FunctionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where a function is in its life: the `phase` of its status.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum Phase {
    #[default]
    Pending,
    Building,
    Ready,
    Failed,
}

/// What a function source (a directory in local mode) last did with a function.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct SourceStatus {
    pub phase: Phase,
    /// The build error, trimmed, when the last attempt failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The artifact serving now, which may be older than the manifest when a build failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<String>,
}
