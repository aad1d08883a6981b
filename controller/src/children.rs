//! What a Function owns in Kubernetes: one Service named after it, so that
//! `http://<name>.<namespace>:8080` works inside the cluster. Shared by the native reconciler and
//! the Metacontroller hook.
//!
//! The Service selects the shared host pods (by label) instead of per-function pods. Kubernetes'
//! own EndpointSlice controller then keeps its endpoints, so cluster DNS, kube-proxy and the API
//! server's service proxy all work unchanged; the host tells functions apart by the Host header
//! (or the `/fn/<namespace>/<name>/` path the service proxy can use).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use wasmless_runtime::function::Function;

/// The port Kubeless functions answered on, kept.
pub const FUNCTION_PORT: i32 = 8080;
/// Kubeless's port name, kept.
pub const PORT_NAME: &str = "http-function-port";
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "wasmless");
pub const FUNCTION_LABEL: &str = "wasmless.dev/function";

/// How the per-function Service finds the host pods.
#[derive(Clone, Debug)]
pub struct ChildConfig {
    /// Labels of the shared host pods.
    pub host_selector: BTreeMap<String, String>,
    /// The host pods' function port: a number, or the name of a container port (what a chart
    /// whose hosts listen elsewhere than 8080 uses).
    pub host_port: IntOrString,
}

impl Default for ChildConfig {
    fn default() -> Self {
        Self {
            host_selector: BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "wasmless-host".to_string(),
            )]),
            host_port: IntOrString::Int(FUNCTION_PORT),
        }
    }
}

/// The function's address inside the cluster.
pub fn url(function: &Function) -> String {
    format!(
        "http://{}.{}:{FUNCTION_PORT}",
        function.name_any(),
        function.namespace().unwrap_or_default()
    )
}

/// The Service a Function owns (ownerReference set, so deleting the Function deletes it).
pub fn service(function: &Function, config: &ChildConfig) -> Service {
    let labels = BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (FUNCTION_LABEL.to_string(), function.name_any()),
    ]);
    Service {
        metadata: ObjectMeta {
            name: Some(function.name_any()),
            namespace: function.namespace(),
            labels: Some(labels),
            owner_references: function.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(config.host_selector.clone()),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.to_string()),
                port: FUNCTION_PORT,
                target_port: Some(config.host_port.clone()),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmless_runtime::FunctionSpec;

    #[test]
    fn the_service_is_owned_and_selects_the_hosts() {
        let mut f = Function::new("hello-world", FunctionSpec::default());
        f.metadata.namespace = Some("test".into());
        f.metadata.uid = Some("uid-1".into());
        let svc = service(&f, &ChildConfig::default());
        assert_eq!(svc.metadata.name.as_deref(), Some("hello-world"));
        assert_eq!(svc.metadata.namespace.as_deref(), Some("test"));
        let owner = &svc.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Function", "uid-1", Some(true))
        );
        let spec = svc.spec.unwrap();
        assert_eq!(
            spec.selector.unwrap()["app.kubernetes.io/name"],
            "wasmless-host"
        );
        let port = &spec.ports.unwrap()[0];
        assert_eq!(
            (port.port, port.name.as_deref()),
            (8080, Some("http-function-port"))
        );
        assert_eq!(url(&f), "http://hello-world.test:8080");
    }
}
