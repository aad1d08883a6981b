//! The `Function` object as the API server stores it. Written by hand rather than derived, so
//! that reading one never fails on what nothing here reads (`metadata.managedFields`, see
//! [`super::lenient`]): one malformed Function must not fail every list and watch.

use std::borrow::Cow;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, ValidationRule,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::NamespaceResourceScope;
use kube::{CustomResourceExt, Resource};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lenient::metadata_without_managed_fields;
use super::{FunctionCrd, FunctionSpec, FunctionStatus};
use crate::validate::{self, MAX_NAME_LEN};

/// A Function as the API server stores it: metadata, spec and status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Function {
    /// Its Kubernetes metadata, read without `managedFields`.
    pub metadata: ObjectMeta,
    /// What the function is.
    pub spec: FunctionSpec,
    /// What the controller last did with it; none until it first did.
    pub status: Option<FunctionStatus>,
}

impl Function {
    /// A Function named `name`, without namespace or status.
    pub fn new(name: &str, spec: FunctionSpec) -> Self {
        Self {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }
}

impl Resource for Function {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        FunctionCrd::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        FunctionCrd::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        FunctionCrd::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        FunctionCrd::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl Serialize for Function {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = 4 + usize::from(self.status.is_some());
        let mut object = serializer.serialize_struct("Function", fields)?;
        object.serialize_field("apiVersion", &Self::api_version(&()))?;
        object.serialize_field("kind", &Self::kind(&()))?;
        object.serialize_field("metadata", &self.metadata)?;
        object.serialize_field("spec", &self.spec)?;
        if let Some(status) = &self.status {
            object.serialize_field("status", status)?;
        }
        object.end()
    }
}

impl<'de> Deserialize<'de> for Function {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Stored {
            #[serde(default, deserialize_with = "metadata_without_managed_fields")]
            metadata: ObjectMeta,
            spec: FunctionSpec,
            #[serde(default)]
            status: Option<FunctionStatus>,
        }
        let Stored {
            metadata,
            spec,
            status,
        } = Stored::deserialize(deserializer)?;
        Ok(Self {
            metadata,
            spec,
            status,
        })
    }
}

/// The Function CRD: the schema derived from [`FunctionSpec`] and [`FunctionStatus`], plus the
/// rule on names, which only the root of a schema can state.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = FunctionCrd::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema.title = Some(Function::kind(&()).into_owned());
            schema.x_kubernetes_validations = Some(vec![name_rule()]);
        }
    }
    crd
}

/// A Service is named after each Function. Names cannot change, so the rule is checked on
/// create only (`oldSelf` is absent then): status writes to an object stored before the rule
/// existed still pass.
fn name_rule() -> ValidationRule {
    ValidationRule {
        rule: format!(
            "oldSelf.hasValue() || (size(self.metadata.name) <= {MAX_NAME_LEN} && self.metadata.name.matches('{}'))",
            validate::DNS_1035_PATTERN
        ),
        message: Some(format!(
            "metadata.name must be a DNS-1035 label (a Service is named after the function): {}",
            validate::DNS_1035_RULE
        )),
        optional_old_self: Some(true),
        ..ValidationRule::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_what_a_list_holds() {
        let mut f = Function::new("f", FunctionSpec::default());
        f.metadata.namespace = Some("t".into());
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["apiVersion"], "wasmless.dev/v1alpha1");
        assert_eq!(json["kind"], "Function");
        assert!(json.get("status").is_none());
        let back: Function = serde_json::from_value(json).unwrap();
        assert_eq!(back, f);

        // What made every list fail: a negative timeout, managed fields 300 levels deep.
        let mut deep = "{}".to_string();
        for _ in 0..300 {
            deep = format!("{{\"f:a\":{deep}}}");
        }
        let list = format!(
            r#"{{"items":[{{"apiVersion":"wasmless.dev/v1alpha1","kind":"Function",
                "metadata":{{"name":"neg","managedFields":[{{"fieldsV1":{deep}}}]}},
                "spec":{{"runtime":"wat","timeout":-1}}}}]}}"#
        );
        let read: kube::core::ObjectList<Function> = serde_json::from_str(&list).unwrap();
        assert_eq!(
            read.items[0].spec.timeout,
            Some(super::super::IntOrString::Int(-1))
        );

        // A valueFrom of any shape is read, for the validator to refuse.
        let list = r#"{"items":[{"apiVersion":"wasmless.dev/v1alpha1","kind":"Function",
            "metadata":{"name":"odd"},"spec":{"runtime":"wat","env":[
            {"name":"A","valueFrom":{"secretKeyRef":[1]}},
            {"name":"B","valueFrom":{"configMapKeyRef":{"name":"c","key":"k"}}}]}}]}"#;
        let read: kube::core::ObjectList<Function> = serde_json::from_str(list).unwrap();
        let env = &read.items[0].spec.env;
        assert!(matches!(
            env[0].value_from,
            Some(super::super::Lenient::Other(_))
        ));
        assert!(matches!(
            env[1].value_from,
            Some(super::super::Lenient::Read(_))
        ));
    }
}
