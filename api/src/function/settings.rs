//! A spec's settings once Kubeless's `spec.deployment` is merged in: the environment, mounts,
//! timeout and memory a function runs with. `spec` wins on conflict: a variable of `spec.env`
//! replaces the container's of the same name, `spec.timeout` and `spec.memory` the container's
//! `FUNC_TIMEOUT` and memory limit.

use super::FunctionSpec;
use super::env::{Env, EnvSource, EnvVar, KeyRef, ObjectName};
use super::kubeless::{Ignored, Mount, Pod, is_empty};
use super::lenient::IntOrString;

/// A value and the field it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct FromField<T> {
    /// The value as written.
    pub value: T,
    /// The field it was read from, such as `spec.timeout`.
    pub field: &'static str,
}

/// What a function runs with: its spec merged with Kubeless's `spec.deployment`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    /// The environment: the container's variables, then `spec.env`'s.
    pub env: Vec<Env>,
    /// Secrets and ConfigMaps mounted as files (Kubeless's `--secrets`).
    pub mounts: Vec<Mount>,
    /// `spec.timeout`, else the container's `FUNC_TIMEOUT`.
    pub timeout: Option<FromField<IntOrString>>,
    /// `spec.memory`, else the container's memory limit.
    pub memory: Option<FromField<IntOrString>>,
    /// Fields with a value that wasmless does not honour.
    pub ignored: Vec<Ignored>,
    /// What cannot be read: `(true, …)` from `spec.env`, `(false, …)` from `spec.deployment`,
    /// each message starting with its path.
    pub problems: Vec<(bool, String)>,
}

const CONTAINER_TIMEOUT: &str =
    "spec.deployment.spec.template.spec.containers[0].env[FUNC_TIMEOUT]";
const CONTAINER_MEMORY: &str =
    "spec.deployment.spec.template.spec.containers[0].resources.limits.memory";

impl Settings {
    /// The settings of `spec`: what cannot be read goes to `problems` rather than failing.
    pub fn of(spec: &FunctionSpec) -> Self {
        let pod = spec
            .deployment
            .as_ref()
            .map(|d| Pod::read(&d.value))
            .unwrap_or_default();
        let mut settings = Settings {
            mounts: pod.mounts,
            ignored: pod.ignored,
            problems: pod.problems.into_iter().map(|p| (false, p)).collect(),
            timeout: from(spec.timeout.as_ref(), "spec.timeout")
                .or_else(|| from(pod.timeout.as_ref(), CONTAINER_TIMEOUT)),
            memory: from(spec.memory.as_ref(), "spec.memory")
                .or_else(|| from(pod.memory.as_ref(), CONTAINER_MEMORY)),
            env: Vec::new(),
        };
        let overridden = |var: &EnvVar| spec.env.iter().any(|own| own.name == var.name);
        let container = pod.env.iter().enumerate().filter(|(_, v)| !overridden(v));
        for (i, var) in container {
            match var.read() {
                Ok(env) => settings.env.push(env),
                Err(m) => settings.problems.push((
                    false,
                    format!("spec.deployment.spec.template.spec.containers[0].env[{i}]: {m}"),
                )),
            }
        }
        for (i, var) in spec.env.iter().enumerate() {
            match var.read() {
                Ok(env) => settings.env.push(env),
                Err(m) => settings.problems.push((true, format!("[{i}]: {m}"))),
            }
        }
        for (field, value) in [
            ("spec.service", &spec.service),
            (
                "spec.horizontalPodAutoscaler",
                &spec.horizontal_pod_autoscaler,
            ),
        ] {
            if value.as_ref().is_some_and(|v| !is_empty(&v.value)) {
                settings.ignored.push(Ignored {
                    field: field.into(),
                    why: "wasmless makes each function's Service itself, and instances are per request",
                });
            }
        }
        settings
    }

    /// Every key the environment reads.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &KeyRef)> {
        self.env.iter().filter_map(|e| match &e.source {
            EnvSource::Key(k) => Some((e.name.as_str(), k)),
            EnvSource::Value(_) => None,
        })
    }

    /// Every Secret and ConfigMap the function reads (in its own namespace), once each.
    pub fn objects(&self) -> Vec<ObjectName> {
        let mut all: Vec<ObjectName> = self
            .keys()
            .map(|(_, k)| k.object.clone())
            .chain(self.mounts.iter().map(|m| m.object.clone()))
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Where each ignored field is, and why, for a status message.
    pub fn ignored_message(&self) -> Option<String> {
        if self.ignored.is_empty() {
            return None;
        }
        let all: Vec<String> = self.ignored.iter().map(ToString::to_string).collect();
        Some(format!("ignored: {}", all.join("; ")))
    }
}

fn from(value: Option<&IntOrString>, field: &'static str) -> Option<FromField<IntOrString>> {
    value.map(|v| FromField {
        value: v.clone(),
        field,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::function::{ObjectKind, Preserved};

    fn spec(deployment: serde_json::Value) -> FunctionSpec {
        FunctionSpec {
            runtime: "wat".into(),
            env: vec![EnvVar::new("GREETING", "spec wins")],
            deployment: Some(Preserved::from(deployment)),
            ..FunctionSpec::default()
        }
    }

    #[test]
    fn spec_wins_over_the_container() {
        let s = Settings::of(&spec(serde_json::json!({"spec": {"template": {"spec": {
            "containers": [{
                "env": [
                    {"name": "GREETING", "value": "container"},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
                    {"name": "FUNC_TIMEOUT", "value": "30"}
                ],
                "resources": {"limits": {"memory": "64Mi"}}
            }]
        }}}})));
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        let env: Vec<(&str, &EnvSource)> =
            s.env.iter().map(|e| (e.name.as_str(), &e.source)).collect();
        assert_eq!(env.len(), 2);
        assert_eq!(env[1], ("GREETING", &EnvSource::Value("spec wins".into())));
        assert_eq!(s.keys().next().map(|(n, _)| n), Some("TOKEN"));
        assert_eq!(
            s.objects(),
            [ObjectName {
                kind: ObjectKind::Secret,
                name: "api".into()
            }]
        );
        assert_eq!(s.timeout.as_ref().map(|t| t.field), Some(CONTAINER_TIMEOUT));
        assert_eq!(
            s.memory.map(|m| m.value),
            Some(IntOrString::String("64Mi".into()))
        );
        let mut own = spec(
            serde_json::json!({"spec": {"template": {"spec": {"containers": [
                {"env": [{"name": "FUNC_TIMEOUT", "value": "30"}], "resources": {"limits": {"memory": "64Mi"}}}
            ]}}}}),
        );
        own.timeout = Some(IntOrString::String("180".into()));
        own.memory = Some(IntOrString::String("128Mi".into()));
        let s = Settings::of(&own);
        assert_eq!(s.timeout.as_ref().map(|t| t.field), Some("spec.timeout"));
        assert_eq!(s.memory.as_ref().map(|t| t.field), Some("spec.memory"));
        assert_eq!(s.ignored_message(), None);
    }

    #[test]
    fn problems_name_their_origin() {
        let mut bad = spec(
            serde_json::json!({"spec": {"template": {"spec": {"containers": [
                {"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}
            ]}}}}),
        );
        bad.env.push(EnvVar::new("", "v"));
        let s = Settings::of(&bad);
        assert_eq!(s.problems.len(), 2, "{:?}", s.problems);
        assert!(
            !s.problems[0].0
                && s.problems[0]
                    .1
                    .contains("containers[0].env[0]: X: valueFrom.fieldRef")
        );
        assert!(s.problems[1].0 && s.problems[1].1.starts_with("[1]: variable name"));
    }
}
