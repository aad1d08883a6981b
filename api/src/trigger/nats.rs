//! `NATSTrigger`: messages on a NATS subject invoke functions, as Kubeless's (`topic`,
//! `functionSelector`), plus `function-name` (one function by name) and `queueGroup`. The
//! controller's leader subscribes and invokes (`controller/src/triggers/nats.rs`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::object::stored_object;
use crate::function::Condition;
use crate::validate::{DNS_1035_PATTERN, MAX_NAME_LEN};

/// Kubeless's `event-namespace` of NATS invocations.
pub const EVENT_NAMESPACE: &str = "natstriggers.kubeless.io";
/// Longest `topic` and `queueGroup`.
pub const MAX_SUBJECT_LEN: usize = 255;
/// A subject of plain tokens: no wildcard (`*`, `>`), no system (`$…`) or reply-inbox
/// (`_INBOX.…`) subject, so a trigger only ever reads the one subject it names.
pub const SUBJECT_PATTERN: &str = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$";

/// Invokes functions of the trigger's namespace with each message on a subject.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "wasmless.dev",
    version = "v1alpha1",
    kind = "NATSTrigger",
    root = "NatsTriggerCrd",
    attr = "doc(hidden)",
    namespaced,
    status = "NatsTriggerStatus",
    category = "wasmless",
    printcolumn = r#"{"name":"Topic","type":"string","jsonPath":".spec.topic"}"#,
    printcolumn = r#"{"name":"Delivered","type":"integer","jsonPath":".status.delivered"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.failed"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.topic != '_INBOX' && !self.topic.startsWith('_INBOX.') && (!has(self.queueGroup) || (self.queueGroup != '_INBOX' && !self.queueGroup.startsWith('_INBOX.')))",
    "message": "an _INBOX subject is some client's reply inbox, never a trigger's topic or queue group"
}, {
    "rule": "!(has(self.functionSelector) && has(self.function__dash__name))",
    "message": "set functionSelector or function-name, not both"
}]))]
pub struct NatsTriggerSpec {
    /// The NATS subject whose messages invoke the functions (Kubeless's topic): plain tokens
    /// separated by dots, no wildcards, not a $ system subject or an _INBOX one.
    #[schemars(pattern(SUBJECT_PATTERN), length(min = 1, max = MAX_SUBJECT_LEN))]
    pub topic: String,
    /// Kubeless's: every Function of the trigger's namespace whose labels match gets each
    /// message. Not with function-name.
    #[serde(
        rename = "functionSelector",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub function_selector: Option<LabelSelector>,
    /// One Function of the trigger's namespace, by name. Not with functionSelector.
    #[serde(
        rename = "function-name",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    #[schemars(pattern(DNS_1035_PATTERN), length(max = MAX_NAME_LEN))]
    pub function_name: String,
    /// The NATS queue group of the subscription (default: the trigger's name). Always within
    /// the trigger's namespace (subscribed as <namespace>.<queueGroup>): triggers of one
    /// namespace naming the same group and topic share its messages, each message going to one
    /// of them; another namespace's group is never joined.
    #[serde(
        rename = "queueGroup",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    #[schemars(pattern(SUBJECT_PATTERN), length(max = MAX_SUBJECT_LEN))]
    pub queue_group: String,
}

/// What the controller last did with a NATSTrigger.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NatsTriggerStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: True (Subscribed) or False with why (InvalidSpec, FunctionNotFound,
    /// NATSUnavailable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The Functions each message goes to, by name (always written: a merge patch clears it).
    #[serde(default)]
    pub functions: Vec<String>,
    /// Invocations answered 2xx, since the trigger was made (written every few seconds; a
    /// leader that stops loses its last seconds' counts).
    #[serde(default)]
    pub delivered: u64,
    /// Invocations that failed: a non-2xx answer, or the function not reached. Not retried.
    #[serde(default)]
    pub failed: u64,
    /// The last invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<NatsResult>,
}

/// One invocation's outcome.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NatsResult {
    /// When the message was received (RFC 3339).
    pub time: String,
    /// The Function invoked.
    pub function: String,
    /// The HTTP status the function answered with, when it answered (null: not reached).
    // Written even when empty (as null and ""): status is merge-patched, and an omitted field
    // would keep the previous result's value.
    #[serde(default)]
    pub status_code: Option<u16>,
    /// Why it failed: the answer's error (trimmed), or why the function could not be reached.
    #[serde(default)]
    pub error: String,
}

stored_object!(
    /// A `NATSTrigger` as stored (see [`NatsTriggerSpec`]).
    NatsTrigger,
    NatsTriggerCrd,
    NatsTriggerSpec,
    NatsTriggerStatus
);

/// The CRD, generated from [`NatsTriggerSpec`] and [`NatsTriggerStatus`].
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = NatsTriggerCrd::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema.title = Some("NATSTrigger".into());
            schema.description = Some(
                "Kubeless's NATSTrigger: functions of the trigger's namespace invoked with each message on a NATS subject."
                    .into(),
            );
        }
    }
    crd
}

/// Which functions a trigger invokes.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// One, by name.
    Named(String),
    /// Those whose labels match.
    Selected(kube::core::Selector),
}

impl NatsTriggerSpec {
    /// The functions invoked, or every problem with the fields, each naming its field.
    pub fn check(&self) -> Result<Target, Vec<String>> {
        let mut problems = Vec::new();
        if let Err(e) = subject(&self.topic) {
            problems.push(format!("spec.topic: {e}"));
        }
        if !self.queue_group.is_empty()
            && let Err(e) = subject(&self.queue_group)
        {
            problems.push(format!("spec.queueGroup: {e}"));
        }
        let target = match (&self.function_selector, self.function_name.as_str()) {
            (Some(_), name) if !name.is_empty() => {
                problems.push("spec: functionSelector and function-name: set one, not both".into());
                None
            }
            (None, "") => {
                problems.push(
                    "spec: no function: set functionSelector (Kubeless's) or function-name".into(),
                );
                None
            }
            (None, name) => match super::http::function_name(name) {
                Ok(()) => Some(Target::Named(name.to_string())),
                Err(e) => {
                    problems.push(format!("spec.function-name: {e}"));
                    None
                }
            },
            (Some(selector), _) => match kube::core::Selector::try_from(selector.clone()) {
                Ok(selector) => Some(Target::Selected(selector)),
                Err(e) => {
                    problems.push(format!("spec.functionSelector: {}", e.0));
                    None
                }
            },
        };
        match target {
            Some(target) if problems.is_empty() => Ok(target),
            _ => Err(problems),
        }
    }
}

/// A subject or queue group a trigger may use (see [`SUBJECT_PATTERN`]).
pub fn subject(text: &str) -> Result<(), String> {
    let token_ok = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if text.is_empty() || text.len() > MAX_SUBJECT_LEN {
        Err(format!("required, at most {MAX_SUBJECT_LEN} characters"))
    } else if text.starts_with("_INBOX.") || text == "_INBOX" {
        Err(format!("{text:?} is a reply inbox"))
    } else if !text.split('.').all(token_ok) {
        Err(format!(
            "{text:?} must be tokens of letters, digits, _ and - separated by single dots (no wildcards * or >, no $ subjects)"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> NatsTriggerSpec {
        serde_json::from_str::<NatsTrigger>(text).unwrap().spec
    }

    #[test]
    fn reads_kubeless_selectors_and_refuses_what_reads_other_subjects() {
        // Kubeless's own manifest, apiVersion changed.
        let kubeless = spec(
            r#"{"apiVersion":"wasmless.dev/v1alpha1","kind":"NATSTrigger","metadata":{"name":"t","namespace":"test"},
               "spec":{"functionSelector":{"matchLabels":{"created-by":"kubeless","topic":"orders"}},"topic":"orders.new"}}"#,
        );
        match kubeless.check() {
            Ok(Target::Selected(selector)) => {
                use kube::core::SelectorExt;
                let labels = |pairs: &[(&str, &str)]| {
                    pairs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                };
                assert!(selector.matches(&labels(&[
                    ("created-by", "kubeless"),
                    ("topic", "orders"),
                    ("x", "y")
                ])));
                assert!(!selector.matches(&labels(&[("created-by", "kubeless")])));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            spec(r#"{"spec":{"function-name":"hello","topic":"a.b-c._d"}}"#).check(),
            Ok(Target::Named("hello".into()))
        );

        for topic in [
            "orders.*",
            ">",
            "a.>",
            "$SYS.x",
            "_INBOX.abc",
            "a..b",
            "a b",
            "",
        ] {
            let problems = NatsTriggerSpec {
                topic: topic.into(),
                function_name: "hello".into(),
                ..Default::default()
            }
            .check()
            .unwrap_err();
            assert_eq!(problems.len(), 1, "{topic:?}: {problems:?}");
            assert!(problems[0].starts_with("spec.topic"), "{problems:?}");
        }
        let problems = spec(
            r#"{"spec":{"topic":"t","function-name":"a","functionSelector":{},"queueGroup":"x.*"}}"#,
        )
        .check()
        .unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        let problems = spec(r#"{"spec":{"topic":"t"}}"#).check().unwrap_err();
        assert!(problems[0].contains("no function"), "{problems:?}");
        let problems = spec(
            r#"{"spec":{"topic":"t","functionSelector":{"matchExpressions":[{"key":"a","operator":"Near"}]}}}"#,
        )
        .check()
        .unwrap_err();
        assert!(
            problems[0].starts_with("spec.functionSelector"),
            "{problems:?}"
        );
    }
}
