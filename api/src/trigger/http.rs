//! `HTTPTrigger`: a hostname and path for a function, as Kubeless's (`function-name`,
//! `host-name`, `path`, `tls`, `tls-secret`, `gateway`). The controller writes the Ingress; the
//! hosts route the same hostname and path themselves, so any L4 load balancer in front of them
//! works without an ingress controller.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::object::{names_one_function, stored_object};
use crate::address;
use crate::function::Condition;
use crate::validate::{DNS_1035_PATTERN, DNS_1035_RULE, MAX_NAME_LEN};

/// Longest `host-name` (a DNS name).
pub const MAX_HOST_LEN: usize = 253;
/// Longest `path`.
pub const MAX_PATH_LEN: usize = 512;
/// A DNS-1123 subdomain, as Ingress hosts are (lowercase; no wildcard, no address).
pub const HOST_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A path of plain segments, with or without its leading `/` (Kubeless wrote it without).
pub const PATH_PATTERN: &str = r"^/?([A-Za-z0-9._~!$&'()*+,;=:@%-]+/?)*$";

/// Routes a hostname and path prefix to a function of the trigger's namespace. Field names are
/// Kubeless's.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "wasmless.dev",
    version = "v1alpha1",
    kind = "HTTPTrigger",
    root = "HttpTriggerCrd",
    attr = "doc(hidden)",
    namespaced,
    status = "HttpTriggerStatus",
    category = "wasmless",
    printcolumn = r#"{"name":"Function","type":"string","jsonPath":".spec.function-name"}"#,
    printcolumn = r#"{"name":"Host","type":"string","jsonPath":".spec.host-name"}"#,
    printcolumn = r#"{"name":"Path","type":"string","jsonPath":".spec.path"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct HttpTriggerSpec {
    /// The Function requests go to, in the trigger's own namespace.
    #[serde(rename = "function-name")]
    #[schemars(pattern(DNS_1035_PATTERN), length(max = MAX_NAME_LEN))]
    pub function_name: String,
    /// The hostname routed to the function: a lowercase DNS name such as hello.example.com,
    /// not a function's Service name (<name>.<namespace>[.svc...]), no wildcard.
    #[serde(rename = "host-name")]
    #[schemars(pattern(HOST_PATTERN), length(max = MAX_HOST_LEN))]
    pub host_name: String,
    /// The path prefix routed (default /): requests for it and below it go to the function,
    /// which sees the whole path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(pattern(PATH_PATTERN), length(max = MAX_PATH_LEN))]
    pub path: String,
    /// Kubeless's TLS through ACME: the Ingress asks for a certificate (annotation
    /// kubernetes.io/tls-acme) kept in the Secret <trigger>-tls. Not with tls-secret.
    #[serde(default, skip_serializing_if = "is_false")]
    pub tls: bool,
    /// A Secret of the trigger's namespace with the TLS certificate and key for the Ingress.
    #[serde(
        rename = "tls-secret",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    #[schemars(pattern(HOST_PATTERN), length(max = MAX_HOST_LEN))]
    pub tls_secret: String,
    /// Kubeless's gateway (nginx, traefik, kong…): the Ingress's ingressClassName, instead of
    /// the controller's default class.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(pattern(HOST_PATTERN), length(max = MAX_HOST_LEN))]
    pub gateway: String,
    /// Kubeless's basic authentication at the ingress: refused (the hosts route the hostname
    /// too, without it).
    #[serde(
        rename = "basic-auth-secret",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub basic_auth_secret: String,
    /// Kubeless's CORS at the ingress: refused (the hosts route the hostname too, without it;
    /// a function sets its own headers).
    #[serde(rename = "cors-enable", default, skip_serializing_if = "is_false")]
    pub cors_enable: bool,
    /// See cors-enable: refused.
    #[serde(
        rename = "cors-domain",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cors_domain: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What the controller last did with an HTTPTrigger.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpTriggerStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: True (routed) or False with why (InvalidSpec, Conflict, IngressConflict,
    /// FunctionNotFound).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where the function answers: http(s)://<host-name><path>.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

stored_object!(
    /// An `HTTPTrigger` as stored (see [`HttpTriggerSpec`]).
    HttpTrigger,
    HttpTriggerCrd,
    HttpTriggerSpec,
    HttpTriggerStatus
);
names_one_function!(HttpTrigger);

/// The CRD, generated from [`HttpTriggerSpec`] and [`HttpTriggerStatus`].
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = HttpTriggerCrd::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema.title = Some("HTTPTrigger".into());
            schema.description = Some("Kubeless's HTTPTrigger: a hostname and path routed to a function of the trigger's namespace (an Ingress, and the hosts' own routes).".into());
        }
    }
    crd
}

/// A hostname (lowercase, no port) and a path prefix (`/`, or `/a/b` without a trailing `/`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// The hostname, lowercase, without a port.
    pub host: String,
    /// The path prefix: `/`, or `/a/b` without a trailing `/`.
    pub path: String,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.host, self.path)
    }
}

impl HttpTriggerSpec {
    /// The route this trigger asks for, or every problem with it, each naming its field.
    pub fn check(&self) -> Result<Route, Vec<String>> {
        let mut problems = Vec::new();
        if let Err(e) = function_name(&self.function_name) {
            problems.push(format!("spec.function-name: {e}"));
        }
        let host =
            host_name(&self.host_name).map_err(|e| problems.push(format!("spec.host-name: {e}")));
        let path = path(&self.path).map_err(|e| problems.push(format!("spec.path: {e}")));
        if self.tls && !self.tls_secret.is_empty() {
            problems.push("spec.tls and spec.tls-secret: one or the other, not both".into());
        }
        for (field, value) in [("tls-secret", &self.tls_secret), ("gateway", &self.gateway)] {
            if !value.is_empty() && dns_subdomain(value).is_err() {
                problems.push(format!(
                    "spec.{field}: {value:?} must be a lowercase DNS name (letters, digits, '-', '.')"
                ));
            }
        }
        if !self.basic_auth_secret.is_empty() {
            problems.push("spec.basic-auth-secret: not supported: the hosts route this hostname too and would serve it without authentication; authenticate in the function".into());
        }
        if self.cors_enable || !self.cors_domain.is_empty() {
            problems.push("spec.cors-enable, spec.cors-domain: not supported: the hosts route this hostname too and add no CORS headers; set them in the function".into());
        }
        match (host, path) {
            (Ok(host), Ok(path)) if problems.is_empty() => Ok(Route { host, path }),
            _ => Err(problems),
        }
    }

    /// Whether the Ingress serves TLS (a Secret named, or asked for through ACME).
    pub fn is_tls(&self) -> bool {
        self.tls || !self.tls_secret.is_empty()
    }
}

/// A function's name as its Service is named: a DNS-1035 label.
pub fn function_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} must name a Function: {DNS_1035_RULE}"))
    }
}

fn dns_subdomain(text: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if text.len() <= MAX_HOST_LEN && text.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "{text:?} must be a lowercase DNS name: labels of letters, digits and '-', joined by '.', at most {MAX_HOST_LEN} characters"
        ))
    }
}

/// The host a trigger routes: a DNS name that is neither an address nor a Service name.
pub fn host_name(host: &str) -> Result<String, String> {
    if host.starts_with("*.") {
        return Err(format!("{host:?}: wildcard hosts are not supported"));
    }
    dns_subdomain(host)?;
    if host.parse::<std::net::IpAddr>().is_ok()
        || host
            .rsplit('.')
            .next()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("{host:?} must be a DNS name, not an address"));
    }
    // The hosts route these to the function of that name and namespace: a trigger must never
    // take another namespace's traffic.
    if address::key_from_host(host).is_some() {
        return Err(format!(
            "{host:?} reads as a function's Service name (<name>.<namespace>[.svc[.cluster.local]]), which the hosts route to that function: use a name of three or more labels, such as hello.example.com"
        ));
    }
    Ok(host.to_string())
}

/// The path prefix a trigger routes: `/` and plain segments (Kubeless's `path` had no leading
/// `/`; either is read), without a trailing `/` (as Ingress's `Prefix` matches).
pub fn path(path: &str) -> Result<String, String> {
    if path.len() > MAX_PATH_LEN {
        return Err(format!("at most {MAX_PATH_LEN} characters"));
    }
    let rest = path.strip_prefix('/').unwrap_or(path);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok("/".into());
    }
    for segment in rest.split('/') {
        let plain = segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~!$&'()*+,;=:@%-".contains(&b));
        if segment.is_empty() || segment == "." || segment == ".." || !plain {
            return Err(format!(
                "{path:?} must be a path of plain segments (letters, digits and ._~!$&'()*+,;=:@%-), without empty, '.' or '..' segments"
            ));
        }
    }
    Ok(format!("/{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(host: &str, path: &str) -> HttpTriggerSpec {
        HttpTriggerSpec {
            function_name: "hello".into(),
            host_name: host.into(),
            path: path.into(),
            ..HttpTriggerSpec::default()
        }
    }

    #[test]
    fn routes_read_as_kubeless_wrote_them() {
        let route = |h: &str, p: &str| spec(h, p).check();
        assert_eq!(
            route("hello.example.com", ""),
            Ok(Route {
                host: "hello.example.com".into(),
                path: "/".into()
            })
        );
        for p in ["api", "/api", "/api/", "api/"] {
            assert_eq!(
                route("hello.example.com", p).map(|r| r.path),
                Ok("/api".into()),
                "{p}"
            );
        }
        assert_eq!(
            route("a.b.example.com", "v1/items").map(|r| r.path),
            Ok("/v1/items".into())
        );
    }

    #[test]
    fn refuses_what_could_reach_another_tenant_or_mislead() {
        for host in [
            "hello.test",
            "hello.test.svc",
            "hello.test.svc.cluster.local",
            "*.example.com",
            "10.0.0.1",
            "Hello.Example.com",
            "a..b",
            "",
            "-a.example.com",
        ] {
            assert!(spec(host, "").check().is_err(), "{host}");
        }
        for path in ["/a/../b", "//a", "/a b", "/a?x", "/a#b", "/./a"] {
            assert!(spec("hello.example.com", path).check().is_err(), "{path}");
        }
        let mut s = spec("hello.example.com", "");
        s.function_name = "other.ns".into();
        assert!(
            s.check().is_err(),
            "a name with a dot could read as another namespace"
        );
        let mut s = spec("hello.example.com", "");
        s.tls = true;
        s.tls_secret = "cert".into();
        assert!(s.check().is_err());
        let mut s = spec("hello.example.com", "");
        s.basic_auth_secret = "auth".into();
        let problems = s.check().unwrap_err();
        assert!(
            problems[0].contains("without authentication"),
            "{problems:?}"
        );
    }
}
