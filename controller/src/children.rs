//! What a Function owns in Kubernetes: one Service named after it, so that
//! `http://<name>.<namespace>:8080` works inside the cluster, and, from the native controller,
//! the endpoints of that Service. Shared by the native reconciler and the Metacontroller hook.
//!
//! One shared host Deployment serves every function, usually in a namespace of its own. A
//! Service's label selector only selects pods in the Service's namespace, so the native
//! controller's Services have **no selector**: the controller writes their endpoints itself,
//! the ready host pods wherever they run ([`crate::endpoints`] keeps them current). The host
//! tells functions apart by the Host header (or the `/fn/<namespace>/<name>/` path).
//!
//! It writes both objects: an `Endpoints` (what the API server's service proxy reads, still in
//! 1.35) labelled `endpointslice.kubernetes.io/skip-mirror`, and the `EndpointSlice`s that
//! kube-proxy, CoreDNS and ingress controllers read. Writing the slices itself rather than
//! leaving them to kube-controller-manager's mirroring controller means one writer and one
//! round trip per change, readiness conditions the legacy object cannot express, dual-stack
//! slices, and no dependence on a controller a cluster may disable.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints, ObjectReference, Pod,
    Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use wasmless_api::cluster::{
    DEFAULT_HOST_SELECTOR, FUNCTION_LABEL, FUNCTION_PORT, MANAGED_BY, PORT_NAME,
    SERVICE_NAME_LABEL, admin_port,
};
use wasmless_api::function::Function;
use wasmless_runtime::token::Token;

/// Which controller keeps an EndpointSlice; others leave slices of another manager alone.
pub const SLICE_MANAGED_BY: (&str, &str) =
    ("endpointslice.kubernetes.io/managed-by", "wasmless.dev");
/// Keeps kube-controller-manager from mirroring our Endpoints into slices of its own.
pub const SKIP_MIRROR: (&str, &str) = ("endpointslice.kubernetes.io/skip-mirror", "true");

/// Where the host pods are and how to reach their functions.
#[derive(Clone, Debug)]
pub struct ChildConfig {
    /// Labels of the shared host pods.
    pub host_selector: BTreeMap<String, String>,
    /// The namespace of the host pods; `None`: any namespace.
    pub host_namespace: Option<String>,
    /// The host pods' function port: a number, or the name of a container port (what a chart
    /// whose hosts listen elsewhere than 8080 uses).
    pub host_port: IntOrString,
    /// What the hosts' admin data (the functions they serve) requires.
    pub host_token: Option<Token>,
}

impl Default for ChildConfig {
    fn default() -> Self {
        let (key, value) = DEFAULT_HOST_SELECTOR.split_once('=').unwrap_or_default();
        Self {
            host_selector: BTreeMap::from([(key.to_string(), value.to_string())]),
            host_namespace: None,
            host_port: IntOrString::Int(i32::from(FUNCTION_PORT)),
            host_token: None,
        }
    }
}

impl ChildConfig {
    /// The host selector as a label selector string (`k=v,k=v`).
    pub fn selector_string(&self) -> String {
        self.host_selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Who fills a function's Service with endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointsBy {
    /// The native controller writes them ([`endpoints`], [`endpoint_slices`]): host pods in
    /// any namespace.
    Controller,
    /// Kubernetes, from the Service's selector: host pods in the function's namespace only.
    /// The Metacontroller hook's choice: it has no API access, and Metacontroller hands a
    /// namespaced parent related objects of its own namespace only.
    Selector,
}

/// The function's address inside the cluster.
pub fn url(function: &Function) -> String {
    format!(
        "http://{}.{}:{FUNCTION_PORT}",
        function.name_any(),
        function.namespace().unwrap_or_default()
    )
}

/// Metadata of a child: named after the function (or `name`), in its namespace, labelled, and
/// owned by it (ownerReference set, so deleting the Function deletes it).
fn child_meta(function: &Function, name: String, extra: &[(&str, &str)]) -> ObjectMeta {
    let mut labels = BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (FUNCTION_LABEL.to_string(), function.name_any()),
    ]);
    labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ObjectMeta {
        name: Some(name),
        namespace: function.namespace(),
        labels: Some(labels),
        owner_references: function.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

/// Whether `meta` is of an object a Function of this name controls: this Function, or one of
/// the same name deleted before it (its children wait for the garbage collector, and a Function
/// deleted and applied again takes them over). Anything else of the Function's name is someone
/// else's: the controller never adopts it (it would take over its traffic, and deleting the
/// Function would delete it).
pub fn controlled_by(meta: &ObjectMeta, function: &Function) -> bool {
    let name = function.name_any();
    meta.owner_references.iter().flatten().any(|r| {
        r.controller == Some(true)
            && r.kind == Function::kind(&())
            && r.api_version.split('/').next() == Some(Function::group(&()).as_ref())
            && r.name == name
    })
}

/// The Service a Function owns.
pub fn service(function: &Function, config: &ChildConfig, by: EndpointsBy) -> Service {
    Service {
        metadata: child_meta(function, function.name_any(), &[]),
        spec: Some(ServiceSpec {
            selector: (by == EndpointsBy::Selector).then(|| config.host_selector.clone()),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.to_string()),
                port: i32::from(FUNCTION_PORT),
                target_port: Some(config.host_port.clone()),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A ready host pod as an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostPod {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    /// The pod's IPs, primary first (two on a dual-stack cluster).
    pub ips: Vec<String>,
    pub node_name: Option<String>,
    /// The function port, resolved against this pod's container ports.
    pub port: i32,
    /// The admin port ([`admin_port`]), where the host lists what it serves.
    pub admin_port: i32,
}

/// `pod` as an endpoint, if it is Running, Ready, not being deleted, has an IP and (for a named
/// `--host-port`) a container port of that name.
pub fn host_pod(pod: &Pod, config: &ChildConfig) -> Option<HostPod> {
    let status = pod.status.as_ref()?;
    let ready = status.phase.as_deref() == Some("Running")
        && pod.metadata.deletion_timestamp.is_none()
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return None;
    }
    let mut ips: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.clone())
        .collect();
    if ips.is_empty() {
        ips.extend(status.pod_ip.clone());
    }
    if ips.is_empty() {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    let port = match &config.host_port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            spec.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
                })?
                .container_port
        }
    };
    Some(HostPod {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        uid: pod.uid(),
        ips,
        node_name: spec.node_name.clone(),
        port,
        admin_port: admin_port(pod),
    })
}

fn pod_ref(host: &HostPod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".to_string()),
        namespace: Some(host.namespace.clone()),
        name: Some(host.name.clone()),
        uid: host.uid.clone(),
        ..ObjectReference::default()
    }
}

/// The `Endpoints` of the function's Service (the API server's service proxy reads these): each
/// host's primary IP, one subset per function port. `hosts` sorted, so the same hosts always
/// give the same object.
pub fn endpoints(function: &Function, hosts: &[HostPod]) -> Endpoints {
    let mut by_port: BTreeMap<i32, Vec<EndpointAddress>> = BTreeMap::new();
    for h in hosts {
        // Endpoints are single-stack: the primary IP.
        let Some(ip) = h.ips.first() else { continue };
        by_port.entry(h.port).or_default().push(EndpointAddress {
            ip: ip.clone(),
            node_name: h.node_name.clone(),
            target_ref: Some(pod_ref(h)),
            ..EndpointAddress::default()
        });
    }
    Endpoints {
        metadata: child_meta(function, function.name_any(), &[SKIP_MIRROR]),
        subsets: Some(
            by_port
                .into_iter()
                .map(|(port, addresses)| EndpointSubset {
                    addresses: Some(addresses),
                    not_ready_addresses: None,
                    ports: Some(vec![CorePort {
                        name: Some(PORT_NAME.to_string()),
                        port,
                        protocol: Some("TCP".to_string()),
                        app_protocol: None,
                    }]),
                })
                .collect(),
        ),
    }
}

/// The `EndpointSlice`s of the function's Service (kube-proxy and CoreDNS read these): one per
/// address family and function port, named `<function>-<family>-<port>`. No hosts, no slices.
pub fn endpoint_slices(function: &Function, hosts: &[HostPod]) -> Vec<EndpointSlice> {
    let mut groups: BTreeMap<(&str, i32), Vec<Endpoint>> = BTreeMap::new();
    for h in hosts {
        for ip in &h.ips {
            let family = if ip.contains(':') { "IPv6" } else { "IPv4" };
            groups.entry((family, h.port)).or_default().push(Endpoint {
                addresses: vec![ip.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                node_name: h.node_name.clone(),
                target_ref: Some(pod_ref(h)),
                ..Endpoint::default()
            });
        }
    }
    let service = function.name_any();
    groups
        .into_iter()
        .map(|((family, port), endpoints)| EndpointSlice {
            metadata: child_meta(
                function,
                format!("{service}-{}-{port}", family.to_lowercase()),
                &[(SERVICE_NAME_LABEL, service.as_str()), SLICE_MANAGED_BY],
            ),
            address_type: family.to_string(),
            endpoints,
            ports: Some(vec![EndpointPort {
                name: Some(PORT_NAME.to_string()),
                port: Some(port),
                protocol: Some("TCP".to_string()),
                app_protocol: None,
            }]),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use wasmless_api::FunctionSpec;

    fn function() -> Function {
        let mut f = Function::new("hello-world", FunctionSpec::default());
        f.metadata.namespace = Some("test".into());
        f.metadata.uid = Some("uid-1".into());
        f
    }

    fn owned_by_the_function(meta: &ObjectMeta) {
        let owner = &meta.owner_references.clone().unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Function", "uid-1", Some(true))
        );
        assert_eq!(meta.namespace.as_deref(), Some("test"));
    }

    /// A host pod as the kubelet reports it.
    fn pod(name: &str, ips: &[&str], ready: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "wasmless", "uid": format!("uid-{name}")},
            "spec": {"nodeName": "node-1", "containers": [{"name": "host", "ports": [
                {"name": "functions", "containerPort": 9000}, {"name": "admin", "containerPort": 9090}]}]},
            "status": {"phase": "Running", "podIP": ips[0],
                       "podIPs": ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect::<Vec<_>>(),
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap()
    }

    #[test]
    fn the_service_is_owned_and_selects_the_hosts_only_when_asked() {
        let f = function();
        let config = ChildConfig::default();
        let svc = service(&f, &config, EndpointsBy::Selector);
        assert_eq!(svc.metadata.name.as_deref(), Some("hello-world"));
        owned_by_the_function(&svc.metadata);
        assert!(controlled_by(&svc.metadata, &f));
        // A deleted Function's of the same name (another uid) is taken over.
        let mut before = svc.metadata.clone();
        before
            .owner_references
            .iter_mut()
            .flatten()
            .for_each(|r| r.uid = "uid-0".into());
        assert!(controlled_by(&before, &f));
        // Someone else's Service of the same name: owned by another kind, another Function,
        // not as its controller, or by nothing.
        let changes: [fn(&mut OwnerReference); 4] = [
            |r| r.kind = "Deployment".into(),
            |r| r.api_version = "example.com/v1".into(),
            |r| r.name = "other".into(),
            |r| r.controller = None,
        ];
        for change in changes {
            let mut foreign = svc.metadata.clone();
            foreign
                .owner_references
                .iter_mut()
                .flatten()
                .for_each(change);
            assert!(!controlled_by(&foreign, &f), "{foreign:?}");
        }
        assert!(!controlled_by(&ObjectMeta::default(), &f));
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

        let selectorless = service(&f, &config, EndpointsBy::Controller);
        assert!(selectorless.spec.unwrap().selector.is_none());
    }

    #[test]
    fn only_ready_hosts_with_the_port_are_endpoints() {
        let named = ChildConfig {
            host_port: IntOrString::String("functions".into()),
            ..ChildConfig::default()
        };
        let h = host_pod(&pod("h-0", &["10.0.0.5"], true), &named).unwrap();
        assert_eq!(
            (h.namespace.as_str(), h.name.as_str(), h.port),
            ("wasmless", "h-0", 9000)
        );
        assert_eq!(h.ips, ["10.0.0.5"]);
        let default = ChildConfig::default();
        assert_eq!(
            host_pod(&pod("h-0", &["10.0.0.5"], true), &default).map(|h| h.port),
            Some(8080)
        );
        assert!(host_pod(&pod("h-0", &["10.0.0.5"], false), &named).is_none());
        let missing = ChildConfig {
            host_port: IntOrString::String("nope".into()),
            ..ChildConfig::default()
        };
        assert!(host_pod(&pod("h-0", &["10.0.0.5"], true), &missing).is_none());
        let mut deleting = pod("h-0", &["10.0.0.5"], true);
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
        );
        assert!(host_pod(&deleting, &named).is_none());
        assert!(host_pod(&Pod::default(), &named).is_none());
    }

    #[test]
    fn endpoints_and_slices_point_at_the_hosts() {
        let f = function();
        let named = ChildConfig {
            host_port: IntOrString::String("functions".into()),
            ..ChildConfig::default()
        };
        let hosts: Vec<HostPod> = [
            pod("h-0", &["10.0.0.5"], true),
            pod("h-1", &["10.0.0.6", "fd00::6"], true),
        ]
        .iter()
        .filter_map(|p| host_pod(p, &named))
        .collect();

        let ep = endpoints(&f, &hosts);
        assert_eq!(ep.metadata.name.as_deref(), Some("hello-world"));
        owned_by_the_function(&ep.metadata);
        assert_eq!(ep.metadata.labels.as_ref().unwrap()[SKIP_MIRROR.0], "true");
        let subsets = ep.subsets.unwrap();
        assert_eq!(subsets.len(), 1);
        let addresses = subsets[0].addresses.clone().unwrap();
        let ips: Vec<&str> = addresses.iter().map(|a| a.ip.as_str()).collect();
        assert_eq!(ips, ["10.0.0.5", "10.0.0.6"]);
        let target = addresses[0].target_ref.clone().unwrap();
        assert_eq!(
            (
                target.kind.as_deref(),
                target.namespace.as_deref(),
                target.name.as_deref()
            ),
            (Some("Pod"), Some("wasmless"), Some("h-0"))
        );
        let port = &subsets[0].ports.clone().unwrap()[0];
        assert_eq!((port.name.as_deref(), port.port), (Some(PORT_NAME), 9000));

        let slices = endpoint_slices(&f, &hosts);
        let names: Vec<_> = slices
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["hello-world-ipv4-9000", "hello-world-ipv6-9000"]);
        let v4 = &slices[0];
        owned_by_the_function(&v4.metadata);
        let labels = v4.metadata.labels.clone().unwrap();
        assert_eq!(labels[SERVICE_NAME_LABEL], "hello-world");
        assert_eq!(labels[SLICE_MANAGED_BY.0], "wasmless.dev");
        assert_eq!(v4.address_type, "IPv4");
        assert_eq!(v4.endpoints.len(), 2);
        assert_eq!(
            v4.endpoints[1].conditions.as_ref().and_then(|c| c.ready),
            Some(true)
        );
        assert_eq!(slices[1].endpoints[0].addresses, ["fd00::6"]);
        let port = &v4.ports.clone().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.port),
            (Some(PORT_NAME), Some(9000))
        );

        // No hosts: an Endpoints with no addresses, and no slices.
        assert_eq!(endpoints(&f, &[]).subsets, Some(vec![]));
        assert!(endpoint_slices(&f, &[]).is_empty());
    }
}
