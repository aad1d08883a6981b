//! `CronJobTrigger`: a schedule on which a function is invoked, as Kubeless's (`function-name`,
//! `schedule`, `payload`) with Kubernetes CronJob's `timeZone`, `startingDeadlineSeconds` and
//! `suspend`. The controller's leader invokes the function with Kubeless's cron event headers;
//! the schedule itself is read by the controller (`controller/src/triggers/schedule.rs`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::object::{names_one_function, stored_object};
use crate::function::{Condition, Preserved};
use crate::validate::{DNS_1035_PATTERN, MAX_NAME_LEN};

/// Kubeless's `event-namespace` of cron invocations.
pub const EVENT_NAMESPACE: &str = "cronjobtrigger.kubeless.io";
/// Longest `schedule` and `timeZone`.
pub const MAX_SCHEDULE_LEN: usize = 200;
/// Largest `payload`, as JSON.
pub const MAX_PAYLOAD_BYTES: usize = 64 << 10;

/// Invokes a function of the trigger's namespace on a schedule.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[kube(
    group = "wasmless.dev",
    version = "v1alpha1",
    kind = "CronJobTrigger",
    root = "CronJobTriggerCrd",
    attr = "doc(hidden)",
    namespaced,
    status = "CronJobTriggerStatus",
    category = "wasmless",
    printcolumn = r#"{"name":"Function","type":"string","jsonPath":".spec.function-name"}"#,
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Last Schedule","type":"string","jsonPath":".status.lastScheduleTime"}"#,
    printcolumn = r#"{"name":"Last Status","type":"integer","jsonPath":".status.lastResult.statusCode"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct CronJobTriggerSpec {
    /// The Function invoked, in the trigger's own namespace.
    #[serde(rename = "function-name")]
    #[schemars(pattern(DNS_1035_PATTERN), length(max = MAX_NAME_LEN))]
    pub function_name: String,
    /// When: a cron expression of 5 fields (minute hour day-of-month month day-of-week), or 6
    /// with seconds first; @yearly, @monthly, @weekly, @daily, @hourly; or @every <duration>
    /// such as @every 5s or @every 1h30m (ticks at whole multiples of it since the Unix epoch).
    #[schemars(length(min = 1, max = MAX_SCHEDULE_LEN))]
    pub schedule: String,
    /// The IANA time zone the schedule is read in, such as Europe/Berlin (default UTC).
    #[serde(rename = "timeZone", default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = MAX_SCHEDULE_LEN))]
    pub time_zone: String,
    /// Kubeless's payload: sent as the request body (POST, application/json). Without it the
    /// function gets a GET, as Kubeless's cron jobs sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "payload_schema")]
    pub payload: Option<Preserved>,
    /// A tick missed while no controller led (at most the latest one is run late) is run only
    /// if it is at most this many seconds old; unset: however old.
    #[serde(
        rename = "startingDeadlineSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,
    /// No invocations while true; ticks passed meanwhile are missed ticks.
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn payload_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true,
        "description": "Kubeless's payload: any JSON value, sent as the request body (POST, application/json)."
    })
}

/// What the controller last did with a CronJobTrigger.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronJobTriggerStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: True (Scheduled) or False with why (InvalidSpec,
    /// FunctionNotFound, Suspended).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last tick the function was invoked for (RFC 3339). Written before the call, so a
    /// tick is claimed once across controller replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
    /// The last tick whose call answered 2xx (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<String>,
    /// How the last call went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<CronResult>,
}

/// One invocation's outcome.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronResult {
    /// The tick it was for (RFC 3339).
    pub schedule_time: String,
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
    /// A `CronJobTrigger` as stored (see [`CronJobTriggerSpec`]).
    CronJobTrigger,
    CronJobTriggerCrd,
    CronJobTriggerSpec,
    CronJobTriggerStatus
);
names_one_function!(CronJobTrigger);

/// The CRD, generated from [`CronJobTriggerSpec`] and [`CronJobTriggerStatus`].
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = CronJobTriggerCrd::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema.title = Some("CronJobTrigger".into());
            schema.description = Some("Kubeless's CronJobTrigger: a function of the trigger's namespace invoked on a schedule.".into());
        }
    }
    crd
}

impl CronJobTriggerSpec {
    /// Every problem with the fields read here, each naming its field (the schedule and time
    /// zone are the controller's to read).
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Err(e) = super::http::function_name(&self.function_name) {
            problems.push(format!("spec.function-name: {e}"));
        }
        if self.schedule.trim().is_empty() || self.schedule.len() > MAX_SCHEDULE_LEN {
            problems.push(format!(
                "spec.schedule: required, at most {MAX_SCHEDULE_LEN} characters"
            ));
        }
        if self.time_zone.len() > MAX_SCHEDULE_LEN {
            problems.push(format!(
                "spec.timeZone: at most {MAX_SCHEDULE_LEN} characters"
            ));
        }
        if self.starting_deadline_seconds.is_some_and(|s| s < 0) {
            problems.push("spec.startingDeadlineSeconds: must not be negative".into());
        }
        if let Some(payload) = &self.payload {
            if payload.too_deep {
                problems.push(format!(
                    "spec.payload: nested more than {} levels",
                    crate::function::MAX_PRESERVED_DEPTH
                ));
            } else if payload.value.to_string().len() > MAX_PAYLOAD_BYTES {
                problems.push(format!(
                    "spec.payload: larger than {MAX_PAYLOAD_BYTES} bytes as JSON"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_kubeless_wrote_and_refuses_the_rest() {
        let text = r#"{"apiVersion":"wasmless.dev/v1alpha1","kind":"CronJobTrigger",
            "metadata":{"name":"tick","namespace":"test"},
            "spec":{"function-name":"hello","schedule":"*/5 * * * *","payload":{"a":[1,2]}}}"#;
        let t: CronJobTrigger = serde_json::from_str(text).unwrap();
        assert_eq!(t.function(), crate::FunctionKey::new("test", "hello"));
        assert_eq!(t.spec.check(), Ok(()));
        assert_eq!(
            serde_json::to_value(&t).unwrap()["spec"]["payload"],
            serde_json::json!({"a": [1, 2]})
        );

        let mut deep = "1".to_string();
        for _ in 0..100 {
            deep = format!("[{deep}]");
        }
        let text = format!(
            r#"{{"metadata":{{"name":"deep"}},"spec":{{"function-name":"a.b","schedule":"","payload":{deep},"startingDeadlineSeconds":-1}}}}"#
        );
        let t: CronJobTrigger = serde_json::from_str(&text).unwrap();
        let problems = t.spec.check().unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
    }
}
