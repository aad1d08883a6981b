//! Field types that read any stored value, so that one malformed Function can never make a whole
//! list fail to deserialize: the validator ([`crate::validate`]) decides what they mean.

use std::cell::Cell;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// Deepest nesting kept in a [`Preserved`] field. A Kubeless Deployment goes about 12 levels
/// deep; serde_json refuses documents deeper than 128 levels in all, list and event included.
pub const MAX_PRESERVED_DEPTH: usize = 32;

/// A field Kubernetes lets be an integer or a string (`x-kubernetes-int-or-string`), as written
/// (and displayed):
/// `timeout: "180"` (Kubeless), `timeout: 180`, or anything else (`-1`, `2^64`, `1.5`), which
/// the validator refuses.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum IntOrString {
    /// An integer, not yet checked (`-1` reads too).
    Int(i64),
    /// A string, such as `"180"` (Kubeless) or `64Mi`.
    String(String),
    /// Anything else (a fraction, an integer beyond `i64`, an object), which the validator refuses.
    Other(Value),
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(n) => write!(f, "{n}"),
            IntOrString::String(s) => f.write_str(s),
            IntOrString::Other(v) => write!(f, "{v}"),
        }
    }
}

/// A list of strings as written (`allowedOutboundHosts`), or anything else, which the validator
/// refuses instead of failing the whole list or watch.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum StringList {
    /// A list of strings.
    List(Vec<String>),
    /// Anything else, which the validator refuses.
    Other(Value),
}

impl Default for StringList {
    fn default() -> Self {
        StringList::List(Vec::new())
    }
}

impl StringList {
    /// Whether it is a list with no strings (anything else is not empty).
    pub fn is_empty(&self) -> bool {
        matches!(self, StringList::List(l) if l.is_empty())
    }

    /// The strings, when it is a list of them.
    pub fn strings(&self) -> Option<&[String]> {
        match self {
            StringList::List(l) => Some(l),
            StringList::Other(_) => None,
        }
    }
}

/// A typed field as written, or anything else, which the validator refuses instead of failing
/// the whole list or watch (`env[].valueFrom`). Its schema is `T`'s.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Lenient<T> {
    /// A `T`.
    Read(T),
    /// Anything else, which the validator refuses.
    Other(Value),
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Lenient<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// A Kubeless pod-level setting (`deployment`, `service`, `horizontalPodAutoscaler`): accepted and
/// ignored. Kept as written up to [`MAX_PRESERVED_DEPTH`]; anything deeper is dropped while
/// reading (never failing) and `too_deep` makes the spec invalid.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Preserved {
    /// The value as written, with anything deeper than [`MAX_PRESERVED_DEPTH`] read as null.
    pub value: Value,
    /// Whether anything was deeper than [`MAX_PRESERVED_DEPTH`] (and so dropped).
    pub too_deep: bool,
}

impl From<Value> for Preserved {
    fn from(value: Value) -> Self {
        Self {
            value,
            too_deep: false,
        }
    }
}

impl Serialize for Preserved {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Preserved {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let too_deep = Cell::new(false);
        let value = Bounded {
            depth: 0,
            too_deep: &too_deep,
        }
        .deserialize(deserializer)?;
        Ok(Self {
            value,
            too_deep: too_deep.get(),
        })
    }
}

/// Reads a value down to [`MAX_PRESERVED_DEPTH`]; deeper parts are skipped with `IgnoredAny`,
/// which serde_json walks without recursing.
#[derive(Clone, Copy)]
struct Bounded<'a> {
    depth: usize,
    too_deep: &'a Cell<bool>,
}

impl Bounded<'_> {
    fn deeper(self) -> Self {
        Self {
            depth: self.depth + 1,
            ..self
        }
    }
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.depth > MAX_PRESERVED_DEPTH {
            self.too_deep.set(true);
            IgnoredAny::deserialize(deserializer)?;
            return Ok(Value::Null);
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.deeper())? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.deeper())?;
            fields.insert(key, value);
        }
        Ok(Value::Object(fields))
    }
}

/// `metadata` without `managedFields`: they mirror the nesting of the fields they track, so a
/// deep preserved field makes them too deep to read, and nothing here uses them.
pub fn metadata_without_managed_fields<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<ObjectMeta, D::Error> {
    struct Fields;
    impl<'de> Visitor<'de> for Fields {
        type Value = Map<String, Value>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("object metadata")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut fields = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if key == "managedFields" {
                    map.next_value::<IgnoredAny>()?;
                } else {
                    fields.insert(key, map.next_value()?);
                }
            }
            Ok(fields)
        }
    }
    let fields = deserializer.deserialize_map(Fields)?;
    ObjectMeta::deserialize(Value::Object(fields)).map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        let mut text = "\"x\"".to_string();
        for _ in 0..depth {
            text = format!("{{\"a\":{text}}}");
        }
        text
    }

    #[test]
    fn int_or_string_reads_anything() {
        let read = |json: &str| serde_json::from_str::<IntOrString>(json).ok();
        assert_eq!(read("180"), Some(IntOrString::Int(180)));
        assert_eq!(read("-1"), Some(IntOrString::Int(-1)));
        assert_eq!(read("\"180\""), Some(IntOrString::String("180".into())));
        assert_eq!(
            read("18446744073709551615"),
            Some(IntOrString::Other(u64::MAX.into()))
        );
        assert!(matches!(read("1.5"), Some(IntOrString::Other(_))));
        assert_eq!(IntOrString::String("64Mi".into()).to_string(), "64Mi");
    }

    #[test]
    fn preserved_keeps_shallow_values_and_drops_deep_ones() {
        let shallow: Preserved = serde_json::from_str(&nested(MAX_PRESERVED_DEPTH)).unwrap();
        assert!(!shallow.too_deep);
        assert_eq!(
            serde_json::to_string(&shallow).unwrap(),
            nested(MAX_PRESERVED_DEPTH)
        );
        // Deeper than serde_json's own limit of 128: still read, and marked.
        let deep: Preserved = serde_json::from_str(&nested(500)).unwrap();
        assert!(deep.too_deep);
        // From a `Value` too, as manifests are read.
        let value = serde_json::json!({"spec": [1, {"b": null}]});
        let from_value: Preserved = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(from_value, Preserved::from(value));
    }

    #[test]
    fn metadata_skips_managed_fields_of_any_depth() {
        let json = format!(
            r#"{{"name":"f","namespace":"t","labels":{{"a":"b"}},"managedFields":[{{"fieldsV1":{}}}]}}"#,
            nested(300)
        );
        let mut de = serde_json::Deserializer::from_str(&json);
        let meta = metadata_without_managed_fields(&mut de).unwrap();
        assert_eq!(meta.name.as_deref(), Some("f"));
        assert_eq!(meta.labels.unwrap_or_default()["a"], "b");
        assert!(meta.managed_fields.is_none());
    }
}
