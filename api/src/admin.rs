//! The admin API's wire types: what a host's admin listener (and `wasmless up`'s) answers. The
//! hosts write them; the controller (is an artifact served?) and the CLI (`ls`, `describe`,
//! `logs`, errors) read them.

use serde::{Deserialize, Serialize};

use crate::abi::Abi;
use crate::digest::Sha256Digest;
use crate::function::{FunctionKey, FunctionManifest, SourceStatus};

/// `GET`: the loaded functions, as [`FunctionInfo`]s.
pub const FUNCTIONS_PATH: &str = "/functions";
/// `GET`: what the function source last did with each function, as [`FunctionState`]s.
pub const STATUS_PATH: &str = "/status";

/// `GET ?since=<seq>`: a function's recent stderr, as [`LogLine`]s after `seq`.
pub fn logs_path(key: &FunctionKey) -> String {
    logs_path_of(&key.namespace, &key.name)
}

/// [`logs_path`] of a namespace and name as given: the hosts route
/// `logs_path_of("{namespace}", "{name}")`.
pub fn logs_path_of(namespace: &str, name: &str) -> String {
    format!("{FUNCTIONS_PATH}/{namespace}/{name}/logs")
}

/// A loaded function as `GET /functions` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionInfo {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The artifact's wasm digest it serves.
    pub revision: Sha256Digest,
    /// The runtime its manifest names.
    pub runtime: String,
    /// Its handler (`file.function`), empty when the runtime takes none.
    pub handler: String,
    /// How its WebAssembly is called.
    pub abi: Abi,
    /// How long a request may run.
    pub timeout_seconds: u64,
    /// Its instances' linear-memory cap.
    pub memory_bytes: u64,
}

impl FunctionInfo {
    /// The function it describes.
    pub fn key(&self) -> FunctionKey {
        FunctionKey::new(&self.namespace, &self.name)
    }
}

/// One entry of `GET /status`: a function and what its source last did with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionState {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Loading, loaded or refused, and why.
    #[serde(flatten)]
    pub status: SourceStatus,
}

/// One line of a function's stderr.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    /// Increases by one per line of this function; `?since=` resumes after it.
    pub seq: u64,
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// The text, without its newline.
    pub line: String,
}

/// Every error answer of wasmless's own (the function and admin listeners, `wasmless up`'s
/// API, the Metacontroller hook): `{"error": ..., "namespace": ..., "function": ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, in one line.
    pub error: String,
    /// The function's namespace, when the error is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The function's name, when the error is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
}

impl ErrorBody {
    /// An error about `key`, or about no function.
    pub fn new(error: impl Into<String>, key: Option<&FunctionKey>) -> Self {
        Self {
            error: error.into(),
            namespace: key.map(|k| k.namespace.clone()),
            function: key.map(|k| k.name.clone()),
        }
    }

    /// The message of an answer's body, when it is one of these.
    pub fn message_of(body: &[u8]) -> Option<String> {
        serde_json::from_slice::<Self>(body).ok().map(|b| b.error)
    }
}

/// `wasmless up`'s `GET`: where its functions answer, as an [`UpInfo`].
pub const UP_INFO_PATH: &str = "/info";
/// `wasmless up`'s `GET`: the manifests it serves, as [`ManifestEntry`]s.
pub const UP_MANIFESTS_PATH: &str = "/manifests";

/// `wasmless up`'s `GET /info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpInfo {
    /// The function listener's base URL, `http://<address>`.
    pub functions: String,
}

/// One function of `wasmless up`'s `GET /manifests`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The manifest it serves.
    pub manifest: FunctionManifest,
    /// The file that defines it, or `api`.
    pub origin: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_about_no_function_names_none() {
        let key = FunctionKey::new("team", "hello");
        let about = serde_json::to_value(ErrorBody::new("gone", Some(&key))).unwrap();
        assert_eq!(
            about,
            serde_json::json!({"error": "gone", "namespace": "team", "function": "hello"})
        );
        let plain = serde_json::to_string(&ErrorBody::new("busy", None)).unwrap();
        assert_eq!(plain, r#"{"error":"busy"}"#);
        assert_eq!(
            ErrorBody::message_of(plain.as_bytes()).as_deref(),
            Some("busy")
        );
        assert_eq!(ErrorBody::message_of(b"upstream timed out"), None);
    }

    #[test]
    fn a_state_is_flat() {
        let text =
            r#"{"namespace":"a","name":"b","phase":"Failed","message":"no key","serving":null}"#;
        let state: FunctionState = serde_json::from_str(text).unwrap();
        assert_eq!(state.status.message, "no key");
        assert_eq!(state.status.phase, crate::function::Phase::Failed);
    }
}
