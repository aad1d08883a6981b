//! What a Kubeless `spec.deployment` says that wasmless honours: the first container's `env`
//! (with `valueFrom`), its memory limit, its `FUNC_TIMEOUT`, and Secret or ConfigMap volumes it
//! mounts (Kubeless's `--secrets`: a volume `<secret>-vol` mounted at `/<secret>`). Everything
//! else with a value is listed as ignored, with why: never dropped silently.

use serde_json::Value;

use super::env::{EnvVar, ObjectKind, ObjectName, config_key, object_name};
use super::lenient::IntOrString;

/// A Secret's or ConfigMap's keys as read-only files under `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Absolute, normalized (`/db`).
    pub path: String,
    /// The Secret or ConfigMap whose keys are mounted.
    pub object: ObjectName,
    /// A missing object mounts an empty directory instead of failing the load.
    pub optional: bool,
}

/// A field wasmless does not honour, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ignored {
    /// Its path from `spec`, e.g. `spec.deployment.spec.replicas`.
    pub field: String,
    /// Why wasmless does not honour it.
    pub why: &'static str,
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.why)
    }
}

const NO_POD: &str = "one shared host serves every function, there is no pod of its own";
const NO_IMAGE: &str = "the function's code is spec.function, built by wasmless";
const NO_CPU: &str = "CPU is not limited per function; the timeout bounds a request";
const ONE_CONTAINER: &str = "only the first container is the function";
const NOT_A_VOLUME: &str = "only Secret and ConfigMap volumes are mounted";
const WHOLE_OBJECT: &str = "every key is mounted as a file of its own name";

/// What a `spec.deployment` contributes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pod {
    pub env: Vec<EnvVar>,
    /// `resources.limits.memory` of the first container.
    pub memory: Option<IntOrString>,
    /// The first container's `FUNC_TIMEOUT` (Kubeless's runtimes read their timeout from it).
    pub timeout: Option<IntOrString>,
    pub mounts: Vec<Mount>,
    pub ignored: Vec<Ignored>,
    /// What cannot be read, each with its path.
    pub problems: Vec<String>,
}

const BASE: &str = "spec.deployment";
const POD: &str = "spec.deployment.spec.template.spec";
const CONTAINER: &str = "spec.deployment.spec.template.spec.containers[0]";

impl Pod {
    pub fn read(deployment: &Value) -> Self {
        let mut pod = Pod::default();
        let spec = pod.walk(deployment, BASE, &["spec"], &[("status", "")]);
        let template = pod.walk(spec, &format!("{BASE}.spec"), &["template"], &[]);
        let pod_spec = pod.walk(template, &format!("{BASE}.spec.template"), &["spec"], &[]);
        let containers = pod
            .walk(pod_spec, POD, &["containers", "volumes"], &[])
            .as_array();
        let Some(first) = containers.and_then(|c| c.first()) else {
            return pod;
        };
        for (i, other) in containers.into_iter().flatten().enumerate().skip(1) {
            if !is_empty(other) {
                pod.ignore(format!("{POD}.containers[{i}]"), ONE_CONTAINER);
            }
        }
        pod.walk(
            first,
            CONTAINER,
            &["env", "resources", "volumeMounts", "name"],
            &[("image", NO_IMAGE)],
        );
        pod.container_env(first.get("env"));
        pod.resources(first.get("resources"));
        pod.volume_mounts(first.get("volumeMounts"), pod_spec.get("volumes"));
        pod
    }

    fn ignore(&mut self, field: String, why: &'static str) {
        self.ignored.push(Ignored { field, why });
    }

    /// `value`'s field `next` (Null when absent); every other field with a value is ignored,
    /// with the reason `why` names for it, else [`NO_POD`]. `why` "" skips a field quietly.
    fn walk<'a>(
        &mut self,
        value: &'a Value,
        path: &str,
        honoured: &[&str],
        why: &[(&str, &'static str)],
    ) -> &'a Value {
        let Some(fields) = value.as_object() else {
            if !is_empty(value) {
                self.problems.push(format!("{path}: must be an object"));
            }
            return &Value::Null;
        };
        for (name, field) in fields {
            if honoured.contains(&name.as_str()) || is_empty(field) {
                continue;
            }
            let reason = why.iter().find(|(n, _)| n == name).map_or(NO_POD, |w| w.1);
            if !reason.is_empty() {
                self.ignore(format!("{path}.{name}"), reason);
            }
        }
        honoured
            .first()
            .and_then(|first| fields.get(*first))
            .unwrap_or(&Value::Null)
    }

    fn container_env(&mut self, env: Option<&Value>) {
        let Some(env) = env.filter(|e| !e.is_null()) else {
            return;
        };
        match serde_json::from_value::<Vec<EnvVar>>(env.clone()) {
            Ok(vars) => {
                for var in vars {
                    match var.name.as_str() {
                        "FUNC_TIMEOUT" if var.value_from.is_none() => {
                            self.timeout = Some(IntOrString::String(var.value));
                        }
                        _ => self.env.push(var),
                    }
                }
            }
            Err(e) => self.problems.push(format!(
                "{CONTAINER}.env: must be a list of {{name, value or valueFrom}}: {e}"
            )),
        }
    }

    fn resources(&mut self, resources: Option<&Value>) {
        let Some(resources) = resources else { return };
        let path = format!("{CONTAINER}.resources");
        let limits = self.walk(resources, &path, &["limits"], &[("requests", NO_POD)]);
        let memory = self.walk(
            limits,
            &format!("{path}.limits"),
            &["memory"],
            &[("cpu", NO_CPU)],
        );
        self.memory = match memory {
            Value::Null => None,
            Value::String(s) => Some(IntOrString::String(s.clone())),
            Value::Number(n) => Some(
                n.as_i64()
                    .map_or(IntOrString::Other(memory.clone()), IntOrString::Int),
            ),
            other => Some(IntOrString::Other(other.clone())),
        };
    }

    fn volume_mounts(&mut self, mounts: Option<&Value>, volumes: Option<&Value>) {
        let mounts = mounts
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let volumes = volumes
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let volume = |name: &str| {
            volumes
                .iter()
                .enumerate()
                .find(|(_, v)| v.get("name").and_then(Value::as_str) == Some(name))
        };
        for (i, mount) in mounts.iter().enumerate() {
            let at = format!("{CONTAINER}.volumeMounts[{i}]");
            self.walk(
                mount,
                &at,
                &["name", "mountPath", "readOnly"],
                &[("subPath", WHOLE_OBJECT), ("subPathExpr", WHOLE_OBJECT)],
            );
            let name = mount
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let Some((v, volume)) = volume(name) else {
                self.problems
                    .push(format!("{at}.name: no volume {name:?} in {POD}.volumes"));
                continue;
            };
            let vat = format!("{POD}.volumes[{v}]");
            let (kind, source, name_field) = if let Some(s) = volume.get("secret") {
                (ObjectKind::Secret, s, "secretName")
            } else if let Some(c) = volume.get("configMap") {
                (ObjectKind::ConfigMap, c, "name")
            } else {
                self.ignore(vat, NOT_A_VOLUME);
                continue;
            };
            let source_at = format!(
                "{vat}.{}",
                if kind == ObjectKind::Secret {
                    "secret"
                } else {
                    "configMap"
                }
            );
            self.walk(
                source,
                &source_at,
                &[name_field, "optional", "defaultMode"],
                &[("items", WHOLE_OBJECT)],
            );
            let object = source
                .get(name_field)
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Err(m) = object_name(object) {
                self.problems.push(format!("{source_at}.{name_field}: {m}"));
                continue;
            }
            let path = mount
                .get("mountPath")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let path = match mount_path(path) {
                Ok(p) => p,
                Err(m) => {
                    self.problems.push(format!("{at}.mountPath: {m}"));
                    continue;
                }
            };
            if self.mounts.iter().any(|m| m.path == path) {
                self.problems
                    .push(format!("{at}.mountPath: {path:?} is mounted twice"));
                continue;
            }
            self.mounts.push(Mount {
                path,
                object: ObjectName {
                    kind,
                    name: object.to_string(),
                },
                optional: source
                    .get("optional")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            });
        }
    }
}

/// An absolute path of plain names (`/db`, `/etc/app`), each a valid key: the guest sees it as
/// a preopened directory.
fn mount_path(path: &str) -> Result<String, String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if !path.starts_with('/') || parts.is_empty() || parts.iter().any(|p| config_key(p).is_err()) {
        return Err(format!(
            "{path:?} must be an absolute path of plain names such as /db (not / itself, no . or ..)"
        ));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Null, "", false-free emptiness: `{}`, `[]`, or objects of empty values (Kubeless writes
/// `creationTimestamp: null`, `resources: {}`, `strategy: {}`).
pub(super) fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.iter().all(is_empty),
        Value::Object(o) => o.values().all(is_empty),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest as `kubeless function deploy --env --secrets --memory --cpu` writes it.
    fn kubeless() -> Value {
        serde_json::json!({
            "metadata": {"creationTimestamp": null},
            "spec": {
                "replicas": 2,
                "strategy": {},
                "template": {
                    "metadata": {"creationTimestamp": null},
                    "spec": {
                        "containers": [{
                            "name": "",
                            "image": "kubeless/python:3.7",
                            "env": [
                                {"name": "GREETING", "value": "hi"},
                                {"name": "FUNC_TIMEOUT", "value": "30"},
                                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}
                            ],
                            "resources": {
                                "limits": {"cpu": "100m", "memory": "128Mi"},
                                "requests": {"cpu": "100m", "memory": "128Mi"}
                            },
                            "volumeMounts": [{"name": "db-vol", "mountPath": "/db"}]
                        }],
                        "volumes": [{"name": "db-vol", "secret": {"secretName": "db"}}]
                    }
                }
            },
            "status": {}
        })
    }

    #[test]
    fn reads_what_kubeless_writes_and_names_what_it_ignores() {
        let pod = Pod::read(&kubeless());
        assert!(pod.problems.is_empty(), "{:?}", pod.problems);
        let names: Vec<&str> = pod.env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["GREETING", "PASSWORD"]);
        assert!(pod.env[1].value_from.is_some());
        assert_eq!(pod.timeout, Some(IntOrString::String("30".into())));
        assert_eq!(pod.memory, Some(IntOrString::String("128Mi".into())));
        assert_eq!(
            pod.mounts,
            [Mount {
                path: "/db".into(),
                object: ObjectName {
                    kind: ObjectKind::Secret,
                    name: "db".into()
                },
                optional: false
            }]
        );
        let ignored: Vec<String> = pod.ignored.iter().map(|i| i.field.clone()).collect();
        assert_eq!(
            ignored,
            [
                "spec.deployment.spec.replicas",
                "spec.deployment.spec.template.spec.containers[0].image",
                "spec.deployment.spec.template.spec.containers[0].resources.requests",
                "spec.deployment.spec.template.spec.containers[0].resources.limits.cpu",
            ]
        );
    }

    #[test]
    fn other_volumes_and_bad_paths() {
        let mut d = kubeless();
        let pod_spec = &mut d["spec"]["template"]["spec"];
        pod_spec["volumes"] = serde_json::json!([
            {"name": "db-vol", "configMap": {"name": "settings", "items": [{"key": "a", "path": "b"}]}},
            {"name": "tmp", "emptyDir": {}}
        ]);
        pod_spec["containers"][0]["volumeMounts"] = serde_json::json!([
            {"name": "db-vol", "mountPath": "/etc//app/"},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "nope", "mountPath": "/x"}
        ]);
        let pod = Pod::read(&d);
        assert_eq!(pod.mounts[0].path, "/etc/app");
        assert_eq!(pod.mounts[0].object.kind, ObjectKind::ConfigMap);
        assert!(
            pod.ignored
                .iter()
                .any(|i| i.field.ends_with("volumes[0].configMap.items"))
        );
        assert!(
            pod.ignored
                .iter()
                .any(|i| i.field.ends_with("volumes[1]") && i.why == NOT_A_VOLUME)
        );
        assert_eq!(pod.problems.len(), 1, "{:?}", pod.problems);
        assert!(mount_path("/").is_err());
        assert!(mount_path("/a/../b").is_err());
        assert!(mount_path("db").is_err());
    }

    #[test]
    fn a_malformed_deployment_is_a_problem_not_a_panic() {
        let pod = Pod::read(
            &serde_json::json!({"spec": {"template": {"spec": {"containers": [{"env": "x"}]}}}}),
        );
        assert_eq!(pod.problems.len(), 1);
        let pod = Pod::read(&serde_json::json!({"spec": 3}));
        assert!(pod.problems[0].contains("must be an object"));
    }
}
