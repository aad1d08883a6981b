//! Environment variables and where their values come from: written inline, or read from a
//! Secret or ConfigMap of the Function's own namespace (Kubernetes' `valueFrom` shape). Values
//! are resolved by the hosts when they load a function ([`crate::values`]), never by the
//! controller and never at build time.

use std::fmt;

use k8s_openapi::api::core::v1::EnvVarSource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::lenient::Lenient;

/// An environment variable, as Kubernetes writes it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Variable value.
    #[serde(default)]
    pub value: String,
    /// Where the value comes from instead: `secretKeyRef` or `configMapKeyRef` (`name`, `key`,
    /// `optional`), always in the Function's own namespace; read by the hosts when they load
    /// the function, so a changed Secret reaches new instances without a rebuild.
    #[serde(rename = "valueFrom", default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<Lenient<EnvVarSource>>,
}

impl EnvVar {
    /// A variable with an inline value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            value_from: None,
        }
    }
}

/// The two kinds of object a Function may read values from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// A Secret.
    Secret,
    /// A ConfigMap.
    ConfigMap,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Secret => "Secret",
            ObjectKind::ConfigMap => "ConfigMap",
        })
    }
}

/// A Secret or ConfigMap by name. It has no namespace: a Function's references resolve in its
/// own namespace only.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName {
    /// Secret or ConfigMap.
    pub kind: ObjectKind,
    /// Its name, in the Function's own namespace.
    pub name: String,
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.kind, self.name)
    }
}

/// One key of a Secret or ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRef {
    /// The Secret or ConfigMap the key is read from.
    pub object: ObjectName,
    /// The key whose value is read.
    pub key: String,
    /// A missing object or key leaves the variable unset instead of failing the load.
    pub optional: bool,
}

/// Where a variable's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvSource {
    /// Written inline (`value`).
    Value(String),
    /// Read from a Secret's or ConfigMap's key (`valueFrom`).
    Key(KeyRef),
}

/// A variable of the merged environment ([`super::Settings`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    /// Variable name.
    pub name: String,
    /// Where its value comes from.
    pub source: EnvSource,
}

/// The longest Secret or ConfigMap name Kubernetes allows (a DNS-1123 subdomain), and key.
const MAX_OBJECT_NAME: usize = 253;

impl EnvVar {
    /// What this variable is: its name checked and its source read. Errors say what is wrong,
    /// without the field's path (the caller's).
    pub fn read(&self) -> Result<Env, String> {
        if self.name.is_empty() || self.name.contains(['=', '\0']) {
            return Err(format!(
                "variable name {:?} must be non-empty, without '=' or NUL",
                self.name
            ));
        }
        let source = match &self.value_from {
            None if self.value.contains('\0') => {
                return Err(format!("the value of {} contains NUL", self.name));
            }
            None => EnvSource::Value(self.value.clone()),
            Some(_) if !self.value.is_empty() => {
                return Err(format!(
                    "{}: value and valueFrom are both set; use one",
                    self.name
                ));
            }
            Some(Lenient::Other(_)) => {
                return Err(format!(
                    "{}: valueFrom must be {{secretKeyRef: {{name, key, optional}}}} or {{configMapKeyRef: {{name, key, optional}}}}",
                    self.name
                ));
            }
            Some(Lenient::Read(from)) => {
                EnvSource::Key(key_ref(from).map_err(|m| format!("{}: valueFrom{m}", self.name))?)
            }
        };
        Ok(Env {
            name: self.name.clone(),
            source,
        })
    }
}

fn key_ref(from: &EnvVarSource) -> Result<KeyRef, String> {
    let unsupported = |field: &str| {
        Err(format!(
            ".{field} is not supported: a function runs in a shared host, not a pod of its own; use secretKeyRef or configMapKeyRef"
        ))
    };
    if from.field_ref.is_some() {
        return unsupported("fieldRef");
    }
    if from.resource_field_ref.is_some() {
        return unsupported("resourceFieldRef");
    }
    if from.file_key_ref.is_some() {
        return unsupported("fileKeyRef");
    }
    let (field, kind, name, key, optional) = match (&from.secret_key_ref, &from.config_map_key_ref)
    {
        (Some(s), None) => (
            "secretKeyRef",
            ObjectKind::Secret,
            &s.name,
            &s.key,
            s.optional,
        ),
        (None, Some(c)) => (
            "configMapKeyRef",
            ObjectKind::ConfigMap,
            &c.name,
            &c.key,
            c.optional,
        ),
        _ => return Err(": set exactly one of secretKeyRef and configMapKeyRef".into()),
    };
    object_name(name).map_err(|m| format!(".{field}.name: {m}"))?;
    config_key(key).map_err(|m| format!(".{field}.key: {m}"))?;
    Ok(KeyRef {
        object: ObjectName {
            kind,
            name: name.clone(),
        },
        key: key.clone(),
        optional: optional.unwrap_or(false),
    })
}

/// A DNS-1123 subdomain, as Kubernetes names Secrets and ConfigMaps: no `/`, so nothing can
/// name another namespace.
pub fn object_name(name: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if name.len() <= MAX_OBJECT_NAME && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} must be the name of a Secret or ConfigMap of the Function's own namespace (a DNS-1123 subdomain)"
        ))
    }
}

/// A Secret's or ConfigMap's key: letters, digits, `-`, `_`, `.`, never `.` or `..` alone (it is
/// also a file name under a mount).
pub fn config_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= MAX_OBJECT_NAME
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{key:?} must be a key of letters, digits, '-', '_' and '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(json: serde_json::Value) -> EnvVar {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn reads_values_and_references() {
        let plain = var(serde_json::json!({"name": "A", "value": "x"}));
        assert_eq!(plain.read().unwrap().source, EnvSource::Value("x".into()));
        let secret = var(serde_json::json!({"name": "P", "valueFrom":
            {"secretKeyRef": {"name": "db", "key": "password", "optional": true}}}));
        assert_eq!(
            secret.read().unwrap().source,
            EnvSource::Key(KeyRef {
                object: ObjectName {
                    kind: ObjectKind::Secret,
                    name: "db".into()
                },
                key: "password".into(),
                optional: true
            })
        );
        let config = var(serde_json::json!({"name": "C", "valueFrom":
            {"configMapKeyRef": {"name": "settings", "key": "mode.conf"}}}));
        assert!(matches!(
            config.read().unwrap().source,
            EnvSource::Key(KeyRef {
                object: ObjectName {
                    kind: ObjectKind::ConfigMap,
                    ..
                },
                optional: false,
                ..
            })
        ));
    }

    #[test]
    fn refuses_what_cannot_be_read() {
        let refused = |json| var(json).read().unwrap_err();
        assert!(
            refused(serde_json::json!({"name": "P", "valueFrom": {"secretKeyRef": "db"}}))
                .contains("must be {secretKeyRef")
        );
        assert!(
            refused(serde_json::json!({"name": "P", "valueFrom":
            {"secretKeyRef": {"name": "other/db", "key": "k"}}}))
            .contains("own namespace")
        );
        assert!(
            refused(serde_json::json!({"name": "P", "valueFrom":
            {"secretKeyRef": {"name": "db", "key": "../k"}}}))
            .contains(".key")
        );
        assert!(
            refused(serde_json::json!({"name": "P", "valueFrom":
            {"fieldRef": {"fieldPath": "metadata.name"}}}))
            .contains("fieldRef is not supported")
        );
        assert!(refused(serde_json::json!({"name": "P", "valueFrom": {}})).contains("exactly one"));
        assert!(
            refused(serde_json::json!({"name": "P", "value": "v", "valueFrom":
            {"secretKeyRef": {"name": "db", "key": "k"}}}))
            .contains("both set")
        );
        assert!(refused(serde_json::json!({"name": "A=B", "value": "v"})).contains("'='"));
    }
}
