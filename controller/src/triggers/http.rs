//! HTTPTriggers: each valid trigger holding its route gets the `networking.k8s.io/v1` Ingress it
//! owns (named after it, backend its function's Service), and every trigger a `Ready` condition
//! saying what routes or why nothing does. Which trigger holds a hostname and path is decided as
//! the hosts decide it ([`wasmless_runtime::routes::holders`]): the oldest.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

use wasmless_api::function::Function;
use wasmless_api::trigger::{HttpTrigger, HttpTriggerStatus, Route};
use wasmless_runtime::routes::{Claim, holders};

use super::{Context, Error, Ready};
use crate::backoff::Watch;
use crate::reconcile::MANAGER;
use wasmless_api::cluster::{FUNCTION_PORT, MANAGED_BY};
use wasmless_build::status;

/// The label naming the trigger an Ingress belongs to.
pub const TRIGGER_LABEL: &str = "wasmless.dev/http-trigger";

struct Term {
    ctx: Arc<Context>,
    /// Every HTTPTrigger, to tell which one holds a route.
    store: Store<HttpTrigger>,
    leading: watch::Receiver<bool>,
}

pub async fn run(
    ctx: Arc<Context>,
    leading: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let triggers = Api::<HttpTrigger>::all(client.clone());
    let controller = Controller::new(triggers.clone(), watcher::Config::default());
    let store = controller.store();
    let (peers, readers) = (store.clone(), store.clone());
    let managed = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    controller
        .owns(
            Api::<Ingress>::all(client.clone()),
            watcher::Config::default().labels(&managed),
        )
        // A change to one trigger can hand its route to another of the same host.
        .watches(
            triggers,
            watcher::Config::default(),
            move |t: HttpTrigger| same_host(&peers, &t),
        )
        // A function that comes or goes changes its triggers' Ready.
        .watches(
            Api::<Function>::all(client),
            watcher::Config::default(),
            move |f: Function| naming(&readers, &f),
        )
        .trigger_backoff(Watch::new())
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            error_policy,
            Arc::new(Term {
                ctx,
                store,
                leading,
            }),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("HTTPTrigger reconcile: {e}");
            }
        })
        .await;
}

fn same_host(store: &Store<HttpTrigger>, changed: &HttpTrigger) -> Vec<ObjectRef<HttpTrigger>> {
    store
        .state()
        .iter()
        .filter(|t| t.spec.host_name == changed.spec.host_name && t.key() != changed.key())
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}

fn naming(store: &Store<HttpTrigger>, function: &Function) -> Vec<ObjectRef<HttpTrigger>> {
    let (namespace, name) = (function.namespace(), function.name_any());
    store
        .state()
        .iter()
        .filter(|t| t.metadata.namespace == namespace && t.spec.function_name == name)
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}

fn error_policy(_: Arc<HttpTrigger>, error: &Error, _: Arc<Term>) -> Action {
    tracing::warn!("HTTPTrigger reconcile failed, retrying in 5 s: {error}");
    Action::requeue(Duration::from_secs(5))
}

/// Whether the trigger routes, and the condition saying so.
struct Outcome {
    routed: bool,
    reason: &'static str,
    message: String,
}

impl Outcome {
    fn not_routed(reason: &'static str, message: String) -> Self {
        Self {
            routed: false,
            reason,
            message,
        }
    }
}

async fn reconcile(trigger: Arc<HttpTrigger>, term: Arc<Term>) -> Result<Action, Error> {
    if !*term.leading.borrow() {
        return Ok(Action::await_change());
    }
    let ctx = &term.ctx;
    let key = trigger.key();
    let namespace = trigger.namespace().ok_or(Error::NoNamespace)?;
    let ingresses = Api::<Ingress>::namespaced(ctx.client.clone(), &namespace);
    let existing = ingresses.get_opt(&key.name).await?;
    let ours = existing
        .as_ref()
        .is_some_and(|i| owned_by(&i.metadata, &trigger));

    let route = trigger.spec.check();
    let outcome = match &route {
        Err(problems) => Outcome::not_routed("InvalidSpec", problems.join("; ")),
        Ok(route) => {
            let state = term.store.state();
            let held = holders(state.iter().filter_map(|t| Claim::of(t).ok()));
            match held.holder(route) {
                Some(holder) if holder.trigger != key => Outcome::not_routed(
                    "Conflict",
                    format!(
                        "{route} is held by HTTPTrigger {}, created earlier: this trigger routes nothing (no Ingress, no host route) until that one is deleted or changed",
                        holder.trigger
                    ),
                ),
                _ if existing.is_some() && !ours => Outcome::not_routed(
                    "IngressConflict",
                    format!(
                        "Ingress {key} exists and is not this trigger's: it is left alone (the hosts still route {route})"
                    ),
                ),
                _ => routed(ctx, &trigger, route).await?,
            }
        }
    };
    if !outcome.routed && ours {
        tracing::info!(trigger = %key, "routes nothing: deleting its Ingress");
        ingresses
            .delete(&key.name, &DeleteParams::default())
            .await?;
    }

    let previous = trigger.status.clone().unwrap_or_default();
    let generation = trigger.metadata.generation;
    let url = route
        .as_ref()
        .ok()
        .filter(|_| outcome.reason != "Conflict")
        .map(|r| url(&trigger, r));
    let status = HttpTriggerStatus {
        observed_generation: generation,
        conditions: vec![
            Ready {
                previous: &previous.conditions,
                generation,
                now: status::now(),
            }
            .condition(outcome.reason == "Routed", outcome.reason, outcome.message),
        ],
        url,
    };
    if status != previous {
        if status.conditions != previous.conditions {
            tracing::info!(trigger = %key, reason = outcome.reason, "{}", status.conditions[0].message);
        }
        let mut patch = serde_json::json!({ "status": status });
        if status.url.is_none() {
            patch["status"]["url"] = serde_json::Value::Null;
        }
        Api::<HttpTrigger>::namespaced(ctx.client.clone(), &namespace)
            .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    // A holder's change reaches this trigger through a watch of its own, which may run ahead
    // of the store read above: look again soon.
    let again = if outcome.reason == "Conflict" { 5 } else { 300 };
    Ok(Action::requeue(Duration::from_secs(again)))
}

/// Applies the Ingress of a trigger that holds its route; the outcome says whether its function
/// exists.
async fn routed(ctx: &Context, trigger: &HttpTrigger, route: &Route) -> Result<Outcome, Error> {
    let key = trigger.key();
    let ingress = ingress(trigger, route, ctx.ingress_class.as_deref());
    let applied = Api::<Ingress>::namespaced(ctx.client.clone(), &key.namespace)
        .patch(
            &key.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&ingress),
        )
        .await;
    match applied {
        Ok(_) => {}
        // Refused by the API server (or an admission webhook): no retry helps; say why.
        Err(kube::Error::Api(e)) if e.code == 422 || e.code == 403 => {
            return Ok(Outcome::not_routed(
                "IngressRefused",
                format!("the API server refused its Ingress: {}", e.message),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    let function = trigger.function();
    let exists = Api::<Function>::namespaced(ctx.client.clone(), &key.namespace)
        .get_opt(&trigger.spec.function_name)
        .await?
        .is_some();
    Ok(if exists {
        Outcome {
            routed: true,
            reason: "Routed",
            message: format!(
                "{} goes to function {function} (Ingress {key})",
                url(trigger, route)
            ),
        }
    } else {
        Outcome {
            // The Ingress and the host route stay: they answer once the function exists.
            routed: true,
            reason: "FunctionNotFound",
            message: format!(
                "no Function {:?} in namespace {}: {} answers 404 until it exists",
                function.name,
                function.namespace,
                url(trigger, route)
            ),
        }
    })
}

fn url(trigger: &HttpTrigger, route: &Route) -> String {
    let scheme = if trigger.spec.is_tls() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}{}", route.host, route.path)
}

/// Whether `meta` is of an Ingress this trigger (or one of its name deleted before it) controls.
fn owned_by(meta: &ObjectMeta, trigger: &HttpTrigger) -> bool {
    meta.owner_references.iter().flatten().any(|r| {
        r.controller == Some(true)
            && r.kind == HttpTrigger::kind(&())
            && r.api_version.split('/').next() == Some(HttpTrigger::group(&()).as_ref())
            && r.name == trigger.name_any()
    })
}

/// The Ingress a trigger owns: its host and path (`Prefix`) to its function's Service, TLS as
/// Kubeless wrote it (a named Secret, or ACME's annotation and `<trigger>-tls`).
pub fn ingress(trigger: &HttpTrigger, route: &Route, default_class: Option<&str>) -> Ingress {
    let spec = &trigger.spec;
    let name = trigger.name_any();
    let labels = BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (TRIGGER_LABEL.to_string(), name.clone()),
    ]);
    let tls_secret = if spec.tls {
        Some(format!("{name}-tls"))
    } else {
        Some(spec.tls_secret.clone()).filter(|s| !s.is_empty())
    };
    let annotations = spec
        .tls
        .then(|| BTreeMap::from([("kubernetes.io/tls-acme".to_string(), "true".to_string())]));
    let class = Some(spec.gateway.as_str())
        .filter(|g| !g.is_empty())
        .or(default_class)
        .map(str::to_string);
    Ingress {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: trigger.namespace(),
            labels: Some(labels),
            annotations,
            owner_references: trigger.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: Some(IngressSpec {
            ingress_class_name: class,
            rules: Some(vec![IngressRule {
                host: Some(route.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(route.path.clone()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: spec.function_name.clone(),
                                // By number: an Ingress names ports of at most 15
                                // characters, and the Service's is Kubeless's longer name.
                                port: Some(ServiceBackendPort {
                                    name: None,
                                    number: Some(i32::from(FUNCTION_PORT)),
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            tls: tls_secret.map(|secret| {
                vec![IngressTLS {
                    hosts: Some(vec![route.host.clone()]),
                    secret_name: Some(secret),
                }]
            }),
            default_backend: None,
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmless_api::trigger::HttpTriggerSpec;

    #[test]
    fn the_ingress_routes_the_host_and_path_to_the_functions_service() {
        let mut trigger = HttpTrigger::new(
            "test",
            "hello",
            HttpTriggerSpec {
                function_name: "hello-world".into(),
                host_name: "hello.example.com".into(),
                path: "api".into(),
                tls: true,
                ..HttpTriggerSpec::default()
            },
        );
        trigger.metadata.uid = Some("u".into());
        let route = trigger.spec.check().unwrap();
        let ingress = ingress(&trigger, &route, Some("nginx"));
        let json = serde_json::to_value(&ingress).unwrap();
        assert_eq!(json["apiVersion"], "networking.k8s.io/v1");
        assert_eq!(
            json["metadata"]["ownerReferences"][0]["kind"],
            "HTTPTrigger"
        );
        let rule = &json["spec"]["rules"][0];
        assert_eq!(rule["host"], "hello.example.com");
        assert_eq!(rule["http"]["paths"][0]["path"], "/api");
        assert_eq!(rule["http"]["paths"][0]["pathType"], "Prefix");
        assert_eq!(
            rule["http"]["paths"][0]["backend"]["service"],
            serde_json::json!({"name": "hello-world", "port": {"number": 8080}})
        );
        assert_eq!(json["spec"]["ingressClassName"], "nginx");
        assert_eq!(json["spec"]["tls"][0]["secretName"], "hello-tls");
        assert_eq!(
            json["metadata"]["annotations"]["kubernetes.io/tls-acme"],
            "true"
        );
        assert!(owned_by(&ingress.metadata, &trigger));
    }
}
