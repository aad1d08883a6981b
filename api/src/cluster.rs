//! The names and numbers the planes agree on in a cluster: the ports a host listens on, the
//! labels the controller writes and the CLI reads, and how a host pod names its admin port.

use k8s_openapi::api::core::v1::Pod;

/// The port Kubeless functions answered on, kept: each Function's Service, and the hosts'
/// function listener.
pub const FUNCTION_PORT: u16 = 8080;
/// Kubeless's name for that port, kept.
pub const PORT_NAME: &str = "http-function-port";
/// A host's admin listener (what it serves, logs, metrics) when its pod names none.
pub const ADMIN_PORT: u16 = 9090;
/// The container port name that overrides [`ADMIN_PORT`].
pub const ADMIN_PORT_NAME: &str = "admin";
/// The labels of the shared host pods, as a selector (the chart's, and the flags' default).
pub const DEFAULT_HOST_SELECTOR: &str = "app.kubernetes.io/name=wasmless-host";
/// On everything wasmless's controller creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "wasmless");
/// Names the Function a child object belongs to.
pub const FUNCTION_LABEL: &str = "wasmless.dev/function";
/// Ties an EndpointSlice to its Service (kube-proxy and CoreDNS look slices up by it).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The annotation of a host pod naming the Secret (in its namespace) whose `token` its admin
/// data requires; the chart sets it, the CLI reads it.
pub const TOKEN_SECRET_ANNOTATION: &str = "wasmless.dev/token-secret";

/// A host pod's admin port: its container port named [`ADMIN_PORT_NAME`], else [`ADMIN_PORT`].
pub fn admin_port(pod: &Pod) -> i32 {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(ADMIN_PORT_NAME))
        .map_or(i32::from(ADMIN_PORT), |p| p.container_port)
}
