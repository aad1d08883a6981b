//! A trigger object as the API server stores it, written by hand as [`crate::function::Function`]
//! is: its `metadata.managedFields` are skipped while reading (a deep `payload` makes them too
//! deep for serde_json), so one object never fails every list and watch of its kind.

/// Defines `$name` (metadata, spec, status) as the Resource `$crd` (kube's derived root, kept for
/// its CRD) describes.
macro_rules! stored_object {
    ($(#[$doc:meta])* $name:ident, $crd:ident, $spec:ty, $status:ty) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct $name {
            /// Its Kubernetes metadata, read without `managedFields`.
            pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
            /// What the trigger asks for.
            pub spec: $spec,
            /// What the controller last did with it; none until it first did.
            pub status: Option<$status>,
        }

        impl $name {
            /// A trigger named `name` in `namespace`, without status.
            pub fn new(namespace: &str, name: &str, spec: $spec) -> Self {
                Self {
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(namespace.to_string()),
                        ..Default::default()
                    },
                    spec,
                    status: None,
                }
            }

            /// `namespace/name`.
            pub fn key(&self) -> $crate::trigger::TriggerKey {
                $crate::trigger::TriggerKey {
                    namespace: self.metadata.namespace.clone().unwrap_or_default(),
                    name: self.metadata.name.clone().unwrap_or_default(),
                }
            }
        }

        impl kube::Resource for $name {
            type DynamicType = ();
            type Scope = kube::core::NamespaceResourceScope;

            fn kind(dt: &()) -> std::borrow::Cow<'_, str> {
                <$crd as kube::Resource>::kind(dt)
            }

            fn group(dt: &()) -> std::borrow::Cow<'_, str> {
                <$crd as kube::Resource>::group(dt)
            }

            fn version(dt: &()) -> std::borrow::Cow<'_, str> {
                <$crd as kube::Resource>::version(dt)
            }

            fn plural(dt: &()) -> std::borrow::Cow<'_, str> {
                <$crd as kube::Resource>::plural(dt)
            }

            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }

            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use kube::Resource;
                use serde::ser::SerializeStruct;
                let fields = 4 + usize::from(self.status.is_some());
                let mut object = serializer.serialize_struct(stringify!($name), fields)?;
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

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                #[derive(serde::Deserialize)]
                struct Stored {
                    #[serde(
                        default,
                        deserialize_with = "crate::function::metadata_without_managed_fields"
                    )]
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
                    #[serde(default)]
                    spec: $spec,
                    #[serde(default)]
                    status: Option<$status>,
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
    };
}

pub(crate) use stored_object;

/// Defines `function()` for a trigger whose spec names one function (`function-name`).
macro_rules! names_one_function {
    ($name:ident) => {
        impl $name {
            /// The Function it invokes: always of its own namespace.
            pub fn function(&self) -> $crate::FunctionKey {
                $crate::FunctionKey::new(
                    self.metadata.namespace.as_deref().unwrap_or_default(),
                    &self.spec.function_name,
                )
            }
        }
    };
}

pub(crate) use names_one_function;
