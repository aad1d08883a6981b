//! The one check every entry point runs before anything else (the controller, the Metacontroller
//! hook, `wasmless up`, the CLI, and the hosts before they load): names, handler, runtime,
//! source, checksum, limits and `deps`. Every problem is reported, each naming its field. The CRD
//! states the same rules where its schema can ([`crate::function::crd`]), so most never reach
//! here from a cluster; objects stored before the rules existed, and `wasmless up`, still do.

mod deps;
pub use deps::go_requires;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Component, Path};
use std::time::Duration;

use thiserror::Error;

use crate::function::{
    ArchiveFiles, ContentType, FromField, Function, FunctionManifest, FunctionSpec, IntOrString,
    Packaging, Preserved, Runtime, Settings, StringList,
};
use crate::limits::{DEFAULT_TIMEOUT, MAX_MEMORY_BYTES, parse_quantity};

/// Kubernetes names Services with DNS-1035 labels, and each Function gets one named after it.
pub const MAX_NAME_LEN: usize = 63;
/// A DNS-1035 label, as a regex (its length limit is [`MAX_NAME_LEN`]).
pub const DNS_1035_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
/// [`DNS_1035_PATTERN`] and [`MAX_NAME_LEN`] in words, for messages.
pub const DNS_1035_RULE: &str = "lowercase letters, digits and '-', starting with a letter and ending with a letter or digit, at most 63 characters";
/// A `runtime`: a name, with or without a Kubeless version (`python3.8`).
pub const RUNTIME_PATTERN: &str = "^[A-Za-z][A-Za-z0-9._-]*$";
/// Longest `runtime`.
pub const MAX_RUNTIME_LEN: usize = 63;
/// `file.function`: the file becomes a path and the function is pasted into glue code, so each
/// is an identifier and nothing else.
pub const HANDLER_PATTERN: &str = r"^([A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*)?$";
/// Longest `handler`.
pub const MAX_HANDLER_LEN: usize = 255;
/// Every spelling of `function-content-type`, as the CRD lists them.
pub const CONTENT_TYPES: [&str; 6] = ContentType::NAMES;
/// An optional `checksum`: `sha256:` and 64 hex digits.
pub const CHECKSUM_PATTERN: &str = "^(sha256:[0-9a-fA-F]{64})?$";
/// Largest `deps`, in bytes.
pub const MAX_DEPS_BYTES: usize = 64 << 10;
/// The longest a request may run: a host keeps one task per request in flight.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// One WebAssembly page.
pub const MIN_MEMORY_BYTES: u64 = 64 << 10;
/// Most entries of `allowedOutboundHosts`.
pub const MAX_OUTBOUND_HOSTS: usize = 64;
/// Most idle instances one function may keep on a host.
pub const MAX_WARM_INSTANCES: u32 = 16;
/// Longest entry of `allowedOutboundHosts`.
pub const MAX_OUTBOUND_HOST_LEN: usize = 300;
/// The shape of an entry as the CRD can state it; [`crate::outbound`] reads the rest.
pub const OUTBOUND_HOST_PATTERN: &str = r"^(http|https|\*)://[^/?#@ ]+/?$";
/// What [`parse_quantity`] reads, as Kubernetes spells it.
pub const QUANTITY_PATTERN: &str = "^[0-9]+(k|M|G|Ki|Mi|Gi)?$";

/// A field of a Function, named as in the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `metadata.name`.
    Name,
    /// `metadata.namespace`.
    Namespace,
    /// `spec.runtime`.
    Runtime,
    /// `spec.handler`.
    Handler,
    /// `spec.function`.
    Function,
    /// `spec.function-content-type`.
    ContentType,
    /// `spec.checksum`.
    Checksum,
    /// `spec.deps`.
    Deps,
    /// `spec.timeout`.
    Timeout,
    /// `spec.memory`.
    Memory,
    /// `spec.env`.
    Env,
    /// `spec.allowedOutboundHosts`.
    AllowedOutboundHosts,
    /// `spec.warmInstances`.
    WarmInstances,
    /// `spec.deployment`.
    Deployment,
    /// `spec.service`.
    Service,
    /// `spec.horizontalPodAutoscaler`.
    HorizontalPodAutoscaler,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Name => "metadata.name",
            Field::Namespace => "metadata.namespace",
            Field::Runtime => "spec.runtime",
            Field::Handler => "spec.handler",
            Field::Function => "spec.function",
            Field::ContentType => "spec.function-content-type",
            Field::Checksum => "spec.checksum",
            Field::Deps => "spec.deps",
            Field::Timeout => "spec.timeout",
            Field::Memory => "spec.memory",
            Field::Env => "spec.env",
            Field::AllowedOutboundHosts => "spec.allowedOutboundHosts",
            Field::WarmInstances => "spec.warmInstances",
            Field::Deployment => "spec.deployment",
            Field::Service => "spec.service",
            Field::HorizontalPodAutoscaler => "spec.horizontalPodAutoscaler",
        })
    }
}

/// One problem, with the field it is in.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field, as the manifest names it.
    pub field: Field,
    /// What is wrong with it.
    pub message: String,
}

/// Every problem found in one Function.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub struct Invalid(pub Vec<FieldError>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&all.join("; "))
    }
}

impl Invalid {
    /// Whether the name or namespace is wrong, so that no Service can be named after it.
    pub fn names_unusable(&self) -> bool {
        self.0
            .iter()
            .any(|e| matches!(e.field, Field::Name | Field::Namespace))
    }
}

/// Where a manifest comes from, which decides what a `url` source may name.
#[derive(Clone, Copy, Debug)]
pub enum Origin<'a> {
    /// A Function in a cluster: http(s) URLs only, never a file of the controller.
    Cluster,
    /// A manifest file of `wasmless up`: a file inside this directory, the manifest's.
    Dir(&'a Path),
    /// A manifest with no directory (sent to `wasmless up`'s API): inline sources only.
    Inline,
}

/// What a valid spec asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The runtime, mapped to ours.
    pub runtime: Runtime,
    /// How long a request may run: `timeout`, else the container's `FUNC_TIMEOUT`, else
    /// [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// `None`: the host's default.
    pub memory_bytes: Option<u64>,
}

/// A Function object from the API server.
pub fn function(f: &Function, origin: Origin) -> Result<Checked, Invalid> {
    let name = f.metadata.name.as_deref().unwrap_or_default();
    let namespace = f.metadata.namespace.as_deref().unwrap_or_default();
    object(name, namespace, &f.spec, origin)
}

/// A manifest document (`wasmless up`, the CLI).
pub fn manifest(m: &FunctionManifest, origin: Origin) -> Result<Checked, Invalid> {
    object(&m.metadata.name, m.namespace(), &m.spec, origin)
}

/// A Function by its parts: name, namespace and spec.
pub fn object(
    name: &str,
    namespace: &str,
    spec: &FunctionSpec,
    origin: Origin,
) -> Result<Checked, Invalid> {
    let mut errors = Vec::new();
    if let Err(message) = dns_label(name, true) {
        errors.push(FieldError {
            field: Field::Name,
            message,
        });
    }
    if let Err(message) = dns_label(namespace, false) {
        errors.push(FieldError {
            field: Field::Namespace,
            message,
        });
    }
    match spec_checked(spec, origin) {
        Ok(checked) if errors.is_empty() => Ok(checked),
        Ok(_) => Err(Invalid(errors)),
        Err(Invalid(more)) => {
            errors.extend(more);
            Err(Invalid(errors))
        }
    }
}

/// The spec alone (the pipeline's own check: names are its caller's).
pub fn spec(spec: &FunctionSpec, origin: Origin) -> Result<Checked, Invalid> {
    spec_checked(spec, origin)
}

fn spec_checked(spec: &FunctionSpec, origin: Origin) -> Result<Checked, Invalid> {
    let mut errors = Vec::new();
    let mut refuse = |field, message: String| errors.push(FieldError { field, message });
    let runtime = runtime(&spec.runtime);
    if let Err(m) = &runtime {
        refuse(Field::Runtime, m.clone());
    }
    let runtime = runtime.ok();
    if let Err(m) = handler(&spec.handler, runtime) {
        refuse(Field::Handler, m);
    }
    match ContentType::parse(&spec.function_content_type) {
        Err(m) => refuse(Field::ContentType, m),
        Ok(content) => {
            if content.is_url()
                && let Err(m) = url(&spec.function, origin)
            {
                refuse(Field::Function, m);
            }
            if let Some(r) = runtime
                && let Err(m) = packaging(content, r)
            {
                refuse(Field::ContentType, m);
            }
        }
    }
    if let Err(m) = checksum(&spec.checksum) {
        refuse(Field::Checksum, m);
    }
    if spec.deps.len() > MAX_DEPS_BYTES {
        refuse(
            Field::Deps,
            format!(
                "{} bytes, at most {MAX_DEPS_BYTES} are allowed",
                spec.deps.len()
            ),
        );
    } else if let Some(r) = runtime
        && let Err(m) = deps::check(r, &spec.deps)
    {
        refuse(Field::Deps, m);
    }
    let settings = Settings::of(spec);
    let timeout = merged_timeout(&settings).map_err(|(f, m)| refuse(f, m));
    let memory = merged_memory(&settings).map_err(|(f, m)| refuse(f, m));
    for (own, problem) in &settings.problems {
        refuse(
            if *own { Field::Env } else { Field::Deployment },
            problem.clone(),
        );
    }
    if !matches!(origin, Origin::Cluster) && !settings.objects().is_empty() {
        refuse(
            Field::Env,
            "Secrets and ConfigMaps (valueFrom, or Secret volumes in spec.deployment) are read from a cluster: wasmless up has none, so it refuses them rather than run without; set value instead".into(),
        );
    }
    if let Err(m) = outbound_hosts(&spec.allowed_outbound_hosts) {
        refuse(Field::AllowedOutboundHosts, m);
    }
    if let Err(m) = warm_instances(spec.warm_instances.as_ref()) {
        refuse(Field::WarmInstances, m);
    }
    for (field, value) in [
        (Field::Deployment, &spec.deployment),
        (Field::Service, &spec.service),
        (
            Field::HorizontalPodAutoscaler,
            &spec.horizontal_pod_autoscaler,
        ),
    ] {
        if value.as_ref().is_some_and(|p: &Preserved| p.too_deep) {
            refuse(
                field,
                format!(
                    "nested deeper than {} levels",
                    crate::function::MAX_PRESERVED_DEPTH
                ),
            );
        }
    }
    match (runtime, timeout, memory) {
        (Some(runtime), Ok(timeout), Ok(memory_bytes)) if errors.is_empty() => Ok(Checked {
            runtime,
            timeout,
            memory_bytes,
        }),
        _ => Err(Invalid(errors)),
    }
}

/// A DNS label: RFC 1035's (a letter first) for names, RFC 1123's for namespaces.
fn dns_label(s: &str, letter_first: bool) -> Result<(), String> {
    if s.is_empty() {
        return Err("required".into());
    }
    let first_ok = s
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || (!letter_first && b.is_ascii_digit()));
    let ok = s.len() <= MAX_NAME_LEN
        && first_ok
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else if letter_first {
        Err(format!("{s:?} must be a DNS-1035 label: {DNS_1035_RULE}"))
    } else {
        Err(format!(
            "{s:?} must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
        ))
    }
}

fn runtime(name: &str) -> Result<Runtime, String> {
    if name.trim().is_empty() {
        return Err(format!("required: one of {}", Runtime::supported()));
    }
    Runtime::parse(name).ok_or_else(|| {
        format!(
            "unknown runtime {name:?}: use one of {} (Kubeless names such as python3.8 too)",
            Runtime::supported()
        )
    })
}

fn handler(handler: &str, runtime: Option<Runtime>) -> Result<(), String> {
    if handler.is_empty() {
        return match runtime {
            Some(r) if r.needs_handler() => Err(format!(
                "required by {r} functions: file.function, each an identifier"
            )),
            _ => Ok(()),
        };
    }
    let well_formed = handler.len() <= MAX_HANDLER_LEN
        && handler
            .split_once('.')
            .is_some_and(|(file, func)| is_identifier(file) && is_identifier(func));
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "{handler:?} must be file.function, each an identifier ([A-Za-z_][A-Za-z0-9_]*)"
        ))
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `runtime`'s build takes what `content` decodes to.
fn packaging(content: ContentType, runtime: Runtime) -> Result<(), String> {
    match (content.packaging(), runtime.archive_files()) {
        (Packaging::Zip, ArchiveFiles::Refused) => Err(format!(
            "{content}: a {runtime} function is one module, not an archive: use text, base64 or url"
        )),
        _ => Ok(()),
    }
}

/// What a `url` source may name where the manifest comes from.
fn url(url: &str, origin: Origin) -> Result<(), String> {
    let http = url.starts_with("http://") || url.starts_with("https://");
    match origin {
        Origin::Cluster if http => Err(format!(
            "{url:?}: fetching http(s) sources is not supported yet; inline the source (function-content-type text or base64)"
        )),
        Origin::Cluster => Err(format!(
            "{url:?} is not an http(s) URL: in a cluster a url source is never a file path (that would be the controller's disk)"
        )),
        Origin::Inline => Err(format!(
            "{url:?}: url sources are files beside a manifest in wasmless up's directory; send the source inline (text or base64)"
        )),
        Origin::Dir(_) => local_path(url),
    }
}

/// A path relative to the manifest's directory that stays inside it.
fn local_path(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("required: a file path relative to the manifest".into());
    }
    if url.contains("://") || url.starts_with("file:") {
        return Err(format!(
            "{url:?}: only a file path relative to the manifest's directory, not a URL"
        ));
    }
    let path = Path::new(url);
    if path.is_absolute() || url.contains('\0') {
        return Err(format!(
            "{url:?} must be a path relative to the manifest's directory"
        ));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "{url:?} must stay inside the manifest's directory (no ..)"
        ));
    }
    Ok(())
}

fn checksum(checksum: &str) -> Result<(), String> {
    let ok = checksum.is_empty()
        || checksum
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(format!("{checksum:?} must be sha256:<64 hex digits>"))
    }
}

/// How the timeout rule reads, here and in the CRD.
pub fn timeout_rule() -> String {
    format!("must be whole seconds from 1 to {}", MAX_TIMEOUT.as_secs())
}

/// How the memory rule reads, here and in the CRD.
pub fn memory_rule() -> String {
    "must be a quantity from 64Ki to 1Gi, such as 64Mi".into()
}

/// The idle instances a spec asks a host to keep, if it names a number.
pub fn warm_instances(raw: Option<&IntOrString>) -> Result<Option<u32>, String> {
    match raw {
        None => Ok(None),
        Some(IntOrString::Int(n)) if (0..=i64::from(MAX_WARM_INSTANCES)).contains(n) => {
            Ok(u32::try_from(*n).ok())
        }
        Some(_) => Err(format!(
            "{} must be a whole number from 0 to {MAX_WARM_INSTANCES}",
            shown(raw)
        )),
    }
}

/// The request timeout a spec asks for (Kubeless's 180 s when it names none).
pub fn timeout(raw: Option<&IntOrString>) -> Result<Duration, String> {
    let seconds = match raw {
        None => return Ok(DEFAULT_TIMEOUT),
        Some(IntOrString::Int(n)) => u64::try_from(*n).ok(),
        Some(IntOrString::String(s)) if s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        Some(_) => None,
    };
    match seconds {
        Some(s) if (1..=MAX_TIMEOUT.as_secs()).contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err(format!("{} {}", shown(raw), timeout_rule())),
    }
}

/// The linear-memory cap a spec asks for, in bytes (`None`: the host's default).
pub fn memory(raw: Option<&IntOrString>) -> Result<Option<u64>, String> {
    let bytes = match raw {
        None => return Ok(None),
        Some(IntOrString::Int(n)) => u64::try_from(*n).ok(),
        Some(IntOrString::String(s)) if !s.contains(char::is_whitespace) => parse_quantity(s).ok(),
        Some(_) => None,
    };
    match bytes {
        Some(b) if (MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&b) => Ok(Some(b)),
        _ => Err(format!("{} {}", shown(raw), memory_rule())),
    }
}

/// A raw value in a message: strings quoted, so that an empty or spaced one shows.
fn shown(raw: Option<&IntOrString>) -> String {
    match raw {
        Some(IntOrString::String(s)) => format!("{s:?}"),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// The timeout of the merged settings (`spec.timeout`, else the container's `FUNC_TIMEOUT`),
/// a problem naming the field it came from.
pub fn merged_timeout(settings: &Settings) -> Result<Duration, (Field, String)> {
    let t = settings.timeout.as_ref();
    timeout(t.map(|t| &t.value)).map_err(|m| match t {
        Some(FromField { field, .. }) if *field != "spec.timeout" => {
            (Field::Deployment, format!("{field}: {m}"))
        }
        _ => (Field::Timeout, m),
    })
}

/// The memory cap of the merged settings (`spec.memory`, else the container's limit).
pub fn merged_memory(settings: &Settings) -> Result<Option<u64>, (Field, String)> {
    let m = settings.memory.as_ref();
    memory(m.map(|m| &m.value)).map_err(|e| match m {
        Some(FromField { field, .. }) if *field != "spec.memory" => {
            (Field::Deployment, format!("{field}: {e}"))
        }
        _ => (Field::Memory, e),
    })
}

/// Each entry a pattern [`crate::outbound`] can read.
fn outbound_hosts(list: &StringList) -> Result<(), String> {
    let Some(items) = list.strings() else {
        return Err("must be a list of strings such as https://api.example.com".into());
    };
    if items.len() > MAX_OUTBOUND_HOSTS {
        return Err(format!(
            "{} entries, at most {MAX_OUTBOUND_HOSTS} are allowed",
            items.len()
        ));
    }
    let bad: Vec<String> = items
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            if p.len() > MAX_OUTBOUND_HOST_LEN {
                return Some(format!(
                    "[{i}] longer than {MAX_OUTBOUND_HOST_LEN} characters"
                ));
            }
            let parsed = p.parse::<crate::outbound::AllowedHost>();
            parsed.err().map(|e| format!("[{i}] {e}"))
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join(", "))
    }
}
