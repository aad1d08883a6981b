//! The `Function` manifest: the vocabulary the controller, the host and `wasmless up` share.
//!
//! Field names are Kubeless's (`function`, `function-content-type`, `handler`, `runtime`,
//! `checksum`, `deps`, `timeout`), so a Kubeless manifest ports by changing `apiVersion`.
//! Fields whose stored value may be anything are read leniently ([`lenient`]) and judged by
//! [`crate::validate`]; the CRD states what it can of the same rules.

pub mod content;
mod env;
mod kubeless;
mod lenient;
mod object;
mod runtime;
mod settings;

use std::fmt;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::validate;

pub use content::{ContentType, Packaging};
pub use env::{Env, EnvSource, EnvVar, KeyRef, ObjectKind, ObjectName, config_key};
pub use kubeless::{Ignored, Mount};
pub use lenient::{
    IntOrString, Lenient, MAX_PRESERVED_DEPTH, Preserved, StringList,
    metadata_without_managed_fields,
};
pub use object::{Function, crd};
pub use runtime::{ArchiveFiles, Deps, Runtime};
pub use settings::{FromField, Settings};

/// The `apiVersion` of Functions and their manifests.
pub const API_VERSION: &str = "wasmless.dev/v1alpha1";
/// The `kind` of a Function.
pub const KIND: &str = "Function";
/// The namespace of a manifest that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A whole manifest document as written in YAML or JSON.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionManifest {
    /// Must be [`API_VERSION`].
    pub api_version: String,
    /// Must be [`KIND`].
    pub kind: String,
    /// Its name and namespace.
    pub metadata: Metadata,
    /// The function itself.
    pub spec: FunctionSpec,
}

/// A manifest's `metadata`: only its name and namespace are read.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Metadata {
    /// The function's name (missing reads as empty, which the validator refuses).
    #[serde(default)]
    pub name: String,
    /// Its namespace; none means [`DEFAULT_NAMESPACE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl FunctionManifest {
    /// The function it names.
    pub fn key(&self) -> FunctionKey {
        FunctionKey::new(self.namespace(), &self.metadata.name)
    }

    /// The namespace it lives in: [`DEFAULT_NAMESPACE`] when it names none.
    pub fn namespace(&self) -> &str {
        self.metadata
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_NAMESPACE)
    }
}

/// A function: its source, how to build it, and the limits it runs under. Field names are
/// Kubeless's, so a Kubeless manifest ports by changing `apiVersion`.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "wasmless.dev",
    version = "v1alpha1",
    kind = "Function",
    root = "FunctionCrd",
    attr = "doc(hidden)",
    namespaced,
    shortname = "fn",
    status = "FunctionStatus",
    category = "wasmless",
    printcolumn = r#"{"name":"Runtime","type":"string","jsonPath":".spec.runtime"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.url"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!self.function__dash__content__dash__type.startsWith('url') || self.function.startsWith('http://') || self.function.startsWith('https://')",
    "message": "a url source in a cluster must be an http(s) URL, never a file of the controller",
    "fieldPath": ".function"
}]))]
pub struct FunctionSpec {
    /// Language or format of `function`: wat (WebAssembly text), wasm (a prebuilt module or
    /// component), go, nodejs, python, rust or c. Kubeless runtime names with versions
    /// (python3.8, nodejs14, go1.14) are mapped to the matching wasmless runtime.
    #[schemars(pattern(validate::RUNTIME_PATTERN), length(max = validate::MAX_RUNTIME_LEN))]
    pub runtime: String,
    /// Kubeless "file.function": the file and function that handle requests, each an
    /// identifier; required by nodejs and python. Without one, a go, rust or c source is a
    /// whole WASI program (main.go, main.rs, main.c) that speaks CGI on stdin and stdout.
    #[serde(default)]
    #[schemars(pattern(validate::HANDLER_PATTERN), length(max = validate::MAX_HANDLER_LEN))]
    pub handler: String,
    /// The function's source: text, base64, or a URL, as function-content-type says; with
    /// `+zip`, a zip archive holding the handler's file and the files beside it.
    #[serde(default)]
    pub function: String,
    /// How `function` is encoded: text (default), base64, or url (in a cluster an http(s) URL;
    /// in `wasmless up` a file beside the manifest); base64+zip and url+zip for a zip archive
    /// (Kubeless's) of the handler's file and the files beside it.
    #[serde(rename = "function-content-type", default)]
    #[schemars(extend("enum" = validate::CONTENT_TYPES))]
    pub function_content_type: String,
    /// Optional "sha256:<64 hex digits>" of the decoded source; the build fails when it does not
    /// match.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(pattern(validate::CHECKSUM_PATTERN))]
    pub checksum: String,
    /// Dependencies, as the text of requirements.txt (python), package.json (nodejs),
    /// `[dependencies]` lines of Cargo.toml (rust) or a go.mod's require lines (go); at most
    /// 64 KiB.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = validate::MAX_DEPS_BYTES))]
    pub deps: String,
    /// Seconds a request may run before it is stopped with 408 (default 180, at most 3600),
    /// as a string (Kubeless) or an integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "timeout_schema")]
    pub timeout: Option<IntOrString>,
    /// Linear-memory cap per instance, a quantity such as 64Mi (default 256Mi, from 64Ki to
    /// 1Gi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "memory_schema")]
    pub memory: Option<IntOrString>,
    /// Environment variables the function sees: `value`, or `valueFrom` a Secret's or
    /// ConfigMap's key (`secretKeyRef`/`configMapKeyRef`) in the Function's own namespace. They
    /// replace the variables of the same name in `deployment`'s first container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// What a wasi:http function may call, as `scheme://host[:port]` patterns such as
    /// `https://api.example.com` or `http://*.svc:8080` (scheme http, https or *; host a name,
    /// *.domain, * or an address; port a number or *, else the scheme's). Empty (the default):
    /// every outbound request is refused. Loopback and link-local (cloud metadata) addresses
    /// only when a pattern names the host exactly; the host's own listeners never.
    #[serde(
        rename = "allowedOutboundHosts",
        default,
        skip_serializing_if = "StringList::is_empty"
    )]
    #[schemars(schema_with = "outbound_schema")]
    pub allowed_outbound_hosts: StringList,
    /// Idle instances a host keeps to answer this function's next requests, 0 to 16: 0 starts a
    /// fresh instance for every request. Default: 4 for python, nodejs and go (their interpreter
    /// or runtime then starts once, as in Kubeless's long-lived runtimes), 0 otherwise. Kept:
    /// wasi:http components (python, nodejs, prebuilt ones) and WAGI reactors (go); WAGI
    /// commands (wat, c, rust) always start fresh. A function that keeps n runs at most n
    /// instances at once on a host: further requests wait for one (within the function's
    /// timeout) rather than each starting a fresh interpreter. Globals a function sets are seen
    /// by its own later requests, never another function's; an instance that failed, timed out
    /// or hit its memory cap is never reused.
    #[serde(
        rename = "warmInstances",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "warm_schema")]
    pub warm_instances: Option<IntOrString>,
    /// Kubeless's per-function Deployment. Of its first container wasmless honours `env` (with
    /// `valueFrom`), `resources.limits.memory` (the memory cap, unless `memory` is set),
    /// `FUNC_TIMEOUT` (unless `timeout` is set) and Secret or ConfigMap `volumeMounts` (Kubeless's
    /// `--secrets`: the keys as read-only files under the mount path); the status lists every
    /// other field with a value as ignored, with why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown")]
    pub deployment: Option<Preserved>,
    /// Kubeless's per-function Service settings: accepted and ignored (wasmless makes the
    /// Service itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown")]
    pub service: Option<Preserved>,
    /// Kubeless's autoscaler settings: accepted and ignored (instances are per request).
    #[serde(
        rename = "horizontalPodAutoscaler",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "preserve_unknown")]
    pub horizontal_pod_autoscaler: Option<Preserved>,
}

impl FunctionSpec {
    /// What its source decodes to (a valid spec's; a file otherwise).
    pub fn packaging(&self) -> Packaging {
        ContentType::parse(self.function_content_type.trim())
            .map(ContentType::packaging)
            .unwrap_or_default()
    }
}

fn timeout_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let max = validate::MAX_TIMEOUT.as_secs();
    let digits = max.to_string().len();
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "description": "Seconds a request may run before it is stopped with 408 (default 180, at most 3600), as a string (Kubeless) or an integer.",
        "x-kubernetes-validations": [{
            "rule": format!("type(self) == int ? self >= 1 && self <= {max} : self.matches('^[0-9]{{1,{digits}}}$') && int(self) >= 1 && int(self) <= {max}"),
            "message": validate::timeout_rule(),
        }]
    })
}

fn memory_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let (min, max) = (validate::MIN_MEMORY_BYTES, crate::limits::MAX_MEMORY_BYTES);
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "description": "Linear-memory cap per instance, a quantity such as 64Mi (default 256Mi, from 64Ki to 1Gi).",
        "x-kubernetes-validations": [{
            "rule": format!("type(self) == int ? self >= {min} && self <= {max} : self.matches('{}') && quantity(self).compareTo(quantity('{min}')) >= 0 && quantity(self).compareTo(quantity('{max}')) <= 0", validate::QUANTITY_PATTERN),
            "message": validate::memory_rule(),
        }]
    })
}

fn warm_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "integer",
        "minimum": 0,
        "maximum": validate::MAX_WARM_INSTANCES,
        "description": "Idle instances a host keeps to answer this function's next requests (0: a fresh instance per request; default 4 for python, nodejs and go, 0 otherwise)."
    })
}

fn outbound_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": validate::MAX_OUTBOUND_HOSTS,
        "description": "What a wasi:http function may call, as scheme://host[:port] patterns such as https://api.example.com or http://*.svc:8080. Empty (the default): every outbound request is refused.",
        "items": {
            "type": "string",
            "maxLength": validate::MAX_OUTBOUND_HOST_LEN,
            "pattern": validate::OUTBOUND_HOST_PATTERN,
        }
    })
}

fn preserve_unknown(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "description": "Kubeless pod-level setting. Of deployment's first container, env, the memory limit, FUNC_TIMEOUT and Secret/ConfigMap volume mounts are honoured; the status lists every other field with a value as ignored."
    })
}

/// What the controller last did with a Function (`status`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Building, Loading, Ready or Failed.
    #[serde(default)]
    pub phase: Phase,
    /// Built and Ready, with reason and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The function's address inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The artifact hosts serve. After a failed build it is still the last good one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactRef>,
}

/// A condition, as Kubernetes writes them.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Built or Ready.
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    /// One CamelCase word.
    #[serde(default)]
    pub reason: String,
    /// Human-readable detail, such as a compiler's error (trimmed).
    #[serde(default)]
    pub message: String,
    /// When status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The generation of the spec this condition describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Names a built function in the artifact store. Its digests are typed: the CRD states their
/// pattern, so a status the API server accepted always reads.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRef {
    /// "sha256:<hex>" of the WebAssembly binary.
    pub digest: Sha256Digest,
    /// Size of the WebAssembly binary in bytes.
    pub size: u64,
    /// How hosts call it: wagi (a WASI command module), wagi-reactor (started once, called
    /// per request) or wasi-http (a component).
    pub abi: crate::abi::Abi,
    /// "sha256:<hex>" of the binary precompiled for the hosts' engine configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precompiled: Option<Sha256Digest>,
    /// The function's own files, when its code is an interpreter other functions share
    /// ([`crate::files`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<crate::files::FilesRef>,
}

impl ArtifactRef {
    /// What names this build of the function, as hosts report what they serve: the code's
    /// digest, or with files, a digest of both (the code alone is the same for many functions).
    pub fn revision(&self) -> Sha256Digest {
        crate::files::revision(&self.digest, self.files.as_ref())
    }

    /// The digests its objects are stored and cached under: its code's, and its files'.
    pub fn digests(&self) -> impl Iterator<Item = &Sha256Digest> {
        crate::files::digests(&self.digest, self.files.as_ref().map(|f| &f.digest))
    }
}

/// Identifies a function: namespace and name, as in Kubernetes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FunctionKey {
    /// The namespace it lives in.
    pub namespace: String,
    /// Its name within the namespace.
    pub name: String,
}

impl FunctionKey {
    /// The function `name` of `namespace`, both lowercased.
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
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Nothing done with it yet (the default).
    #[default]
    Pending,
    /// A build is running; the previous artifact, if any, still serves.
    Building,
    /// Built; not every ready host serves the artifact yet (or there is no ready host).
    Loading,
    /// Built and served (in a cluster, by every ready host).
    Ready,
    /// Invalid, or its build or load failed: the conditions (or the message) say why.
    Failed,
}

/// What a function source (a directory in local mode) last did with a function.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct SourceStatus {
    /// Where the function is in its life.
    pub phase: Phase,
    /// The build error, trimmed, when the last attempt failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The artifact serving now, which may be older than the manifest when a build failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<Sha256Digest>,
}
