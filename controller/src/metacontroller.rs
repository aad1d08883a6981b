//! wasmless as the sync and finalize webhook of a Metacontroller `CompositeController` whose
//! parent is `functions.wasmless.dev`. Metacontroller makes every API call; the hook only
//! answers, from the parent alone, with the same status and children the native controller
//! writes. Builds run in the background; until one finishes the answer is `Building` with
//! `resyncAfterSeconds`. The same request always gets the same answer.
//!
//! Its Service keeps a selector for the host pods, so Kubernetes fills its endpoints and the hosts
//! must run in the function's namespace. Writing endpoints for hosts elsewhere would need the
//! hosts in the request, and Metacontroller hands a namespaced parent's hooks related objects
//! of the parent's own namespace only.
//!
//! By default the hook handles every Function (Metacontroller alone, no native controller).
//! Beside a native controller (`--share-with-native`) a Function is reconciled by exactly one
//! of them: the native controller skips Functions labelled `wasmless.dev/controller:
//! metacontroller`, and the hook leaves every other Function as it is.
//!
//! Builds go through the [`Driver`], as the native controller's do: in the background, bounded,
//! one per build key, transient failures retried.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http::StatusCode;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use wasmless_api::FunctionKey;
use wasmless_api::function::{Function, Settings};
use wasmless_api::validate::{self, Origin};

use crate::children::{self, ChildConfig, EndpointsBy};
use wasmless_build::driver::{Driver, Next, OriginBuf, Outcome};
use wasmless_build::status;

/// The label that hands a Function to the Metacontroller hook.
pub const MODE_LABEL: &str = "wasmless.dev/controller";
pub const MODE_METACONTROLLER: &str = "metacontroller";
/// Largest hook request accepted (Metacontroller sends the parent and its children).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;
/// How soon Metacontroller should ask again while a build runs.
const RESYNC_WHILE_BUILDING: f64 = 1.0;

/// A sync or finalize request (hook versions v1 and v2 differ only in how `children` are keyed:
/// by name or by namespace/name; both are maps of maps of objects).
#[derive(Debug, Deserialize)]
pub struct HookRequest {
    #[serde(default)]
    pub controller: Value,
    pub parent: Function,
    /// `Kind.version` or `Kind.group/version` → name (or namespace/name) → object.
    #[serde(default)]
    pub children: BTreeMap<String, BTreeMap<String, Value>>,
    #[serde(default)]
    pub related: Value,
    #[serde(default)]
    pub finalizing: bool,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct HookResponse {
    pub status: Value,
    pub children: Vec<Value>,
    #[serde(rename = "resyncAfterSeconds", skip_serializing_if = "Option::is_none")]
    pub resync_after_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finalized: Option<bool>,
}

/// Which Functions the hook handles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every Function: Metacontroller runs without a native controller.
    #[default]
    All,
    /// Only those labelled `wasmless.dev/controller: metacontroller`; a native controller
    /// handles the rest.
    Labelled,
}

/// The hook: stateless but for the driver's builds. Losing them (a restart) only means a build
/// runs again; finished builds live in the artifact store.
pub struct Hook {
    driver: Arc<Driver>,
    children: ChildConfig,
    scope: Scope,
}

impl Hook {
    pub fn new(driver: Arc<Driver>, children: ChildConfig, scope: Scope) -> Arc<Self> {
        Arc::new(Self {
            driver,
            children,
            scope,
        })
    }

    /// Answers one request; `sync` starts a background build when one is needed.
    pub async fn answer(&self, request: &HookRequest) -> HookResponse {
        let parent = &request.parent;
        let previous = parent.status.clone().unwrap_or_default();
        let labelled =
            parent.labels().get(MODE_LABEL).map(String::as_str) == Some(MODE_METACONTROLLER);
        if self.scope == Scope::Labelled && !labelled {
            // Not ours: change nothing (the native controller owns it).
            return HookResponse {
                status: to_value(&previous),
                children: request
                    .children
                    .values()
                    .flat_map(|m| m.values().cloned())
                    .collect(),
                resync_after_seconds: None,
                finalized: request.finalizing.then_some(true),
            };
        }
        if request.finalizing {
            // The Service goes with the Function; artifacts are shared by digest and stay.
            return HookResponse {
                status: to_value(&previous),
                children: Vec::new(),
                resync_after_seconds: None,
                finalized: Some(true),
            };
        }
        let service = children::service(parent, &self.children, EndpointsBy::Selector);
        let url = children::url(parent);
        let generation = parent.metadata.generation;
        if let Err(invalid) = validate::function(parent, Origin::Cluster) {
            // Metacontroller would fail to create a Service with a name it cannot have.
            let children = if invalid.names_unusable() {
                Vec::new()
            } else {
                vec![to_value(&service)]
            };
            let now = status::now();
            return HookResponse {
                status: to_value(&status::invalid(&previous, generation, url, &invalid, &now)),
                children,
                resync_after_seconds: None,
                finalized: None,
            };
        }
        let prior = previous.clone();
        let (status, resync) = match self.driver.next(parent) {
            Next::Keep => (previous, None),
            Next::Build => {
                let key =
                    FunctionKey::new(&parent.namespace().unwrap_or_default(), &parent.name_any());
                let outcome = self
                    .driver
                    .request(&key, &parent.spec, OriginBuf::Cluster, None)
                    .await;
                let now = status::now();
                match outcome {
                    Outcome::Done { result, .. } => (
                        status::built(
                            &previous,
                            generation,
                            url,
                            result.as_ref().map_err(Clone::clone),
                            &now,
                        ),
                        None,
                    ),
                    Outcome::Building { note } => (
                        status::building(&previous, generation, url, note.as_deref(), &now),
                        Some(RESYNC_WHILE_BUILDING),
                    ),
                }
            }
        };
        let ignored = Settings::of(&parent.spec).ignored_message();
        let status = status::with_ignored(status, ignored, &prior, &status::now());
        HookResponse {
            status: to_value(&status),
            children: vec![to_value(&service)],
            resync_after_seconds: resync,
            finalized: None,
        }
    }
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// `POST /metacontroller/sync` and `POST /metacontroller/finalize`.
pub fn router(hook: Arc<Hook>) -> Router {
    Router::new()
        .route("/metacontroller/sync", post(handle))
        .route("/metacontroller/finalize", post(handle))
        .with_state(hook)
}

async fn handle(State(hook): State<Arc<Hook>>, request: Request) -> Response {
    let body = match Limited::new(request.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("hook request is larger than {MAX_REQUEST_BYTES} bytes"),
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request: {e}"),
            );
        }
    };
    let request: HookRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("not a Metacontroller hook request: {e}"),
            );
        }
    };
    Json(hook.answer(&request).await).into_response()
}

fn error(status: StatusCode, message: String) -> Response {
    let body = wasmless_api::admin::ErrorBody::new(message, None);
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;
    use wasmless_build::artifacts::DirStore;
    use wasmless_runtime::EngineConfig;

    const HELLO: &str = r#"(module (func (export "_start")))"#;

    fn hook(dir: &std::path::Path) -> Arc<Hook> {
        hook_for(dir, Scope::All)
    }

    fn hook_for(dir: &std::path::Path, scope: Scope) -> Arc<Hook> {
        let engine = EngineConfig::default().build().unwrap();
        let store = Arc::new(DirStore::new(dir));
        let pipeline = Arc::new(wasmless_build::pipeline::Pipeline::new(
            engine,
            store,
            Arc::new(wasmless_build::pipeline::InProcess),
        ));
        let driver = Driver::new(pipeline, wasmless_build::driver::Settings::default());
        Hook::new(driver, ChildConfig::default(), scope)
    }

    /// A request as Metacontroller sends it; `children` keyed as hook `version` v1 or v2.
    fn request(source: &str, version: u8, with_child: bool, finalizing: bool) -> Value {
        let service_key = if version == 1 { "hello" } else { "test/hello" };
        let children = if with_child {
            serde_json::json!({ "Service.v1": { service_key: {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hello", "namespace": "test"}} } })
        } else {
            serde_json::json!({ "Service.v1": {} })
        };
        serde_json::json!({
            "controller": {"apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "CompositeController", "metadata": {"name": "wasmless"}, "spec": {"hooks": {"sync": {"webhook": {"version": format!("v{version}")}}}}},
            "parent": {
                "apiVersion": "wasmless.dev/v1alpha1", "kind": "Function",
                "metadata": {"name": "hello", "namespace": "test", "uid": "u-1", "generation": 3,
                             "labels": {MODE_LABEL: MODE_METACONTROLLER}},
                "spec": {"runtime": "wat", "function": source}
            },
            "children": children,
            "related": {},
            "finalizing": finalizing
        })
    }

    async fn post(hook: &Arc<Hook>, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let request = http::Request::post(path).body(Body::from(body)).unwrap();
        let response = router(hook.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn sync_until_settled(hook: &Arc<Hook>, body: &Value) -> Value {
        for _ in 0..200 {
            let (status, response) =
                post(hook, "/metacontroller/sync", body.to_string().into_bytes()).await;
            assert_eq!(status, StatusCode::OK, "{response}");
            if response.get("resyncAfterSeconds").is_none() {
                return response;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the build never settled");
    }

    #[tokio::test]
    async fn sync_builds_in_the_background_then_reports_ready() {
        let dir = tempfile::tempdir().unwrap();
        let hook = hook(dir.path());
        for version in [1, 2] {
            for with_child in [false, true] {
                let body = request(HELLO, version, with_child, false);
                let (_, first) =
                    post(&hook, "/metacontroller/sync", body.to_string().into_bytes()).await;
                let settled = sync_until_settled(&hook, &body).await;
                if version == 1 && !with_child {
                    // The very first request starts the build.
                    assert_eq!(first["status"]["phase"], "Building", "{first}");
                    assert_eq!(first["resyncAfterSeconds"], 1.0);
                    assert_eq!(first["children"][0]["kind"], "Service");
                }
                let status = &settled["status"];
                assert_eq!(status["phase"], "Ready", "{settled}");
                assert_eq!(status["observedGeneration"], 3);
                assert_eq!(status["url"], "http://hello.test:8080");
                assert_eq!(status["artifact"]["abi"], "wagi");
                assert!(
                    status["artifact"]["digest"]
                        .as_str()
                        .unwrap()
                        .starts_with("sha256:")
                );
                assert_eq!(status["conditions"][0]["type"], "Built");
                assert_eq!(status["conditions"][1]["type"], "Ready");
                assert_eq!(status["conditions"][1]["status"], "True");
                let children = settled["children"].as_array().unwrap();
                assert_eq!(children.len(), 1);
                let svc = &children[0];
                assert_eq!(
                    (svc["apiVersion"].as_str(), svc["kind"].as_str()),
                    (Some("v1"), Some("Service"))
                );
                assert_eq!(svc["metadata"]["name"], "hello");
                assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
                assert!(settled.get("finalized").is_none());
                // Idempotent: the same request, the same answer (but for timestamps).
                let (_, again) =
                    post(&hook, "/metacontroller/sync", body.to_string().into_bytes()).await;
                assert_eq!(again["status"]["artifact"], status["artifact"]);
                assert_eq!(again["children"], settled["children"]);
            }
        }
    }

    #[tokio::test]
    async fn a_failed_build_is_reported_and_keeps_the_previous_artifact() {
        let dir = tempfile::tempdir().unwrap();
        let hook = hook(dir.path());
        let good = sync_until_settled(&hook, &request(HELLO, 2, true, false)).await;
        let mut bad = request("(module oops", 2, true, false);
        bad["parent"]["metadata"]["generation"] = 4.into();
        bad["parent"]["status"] = good["status"].clone();
        let failed = sync_until_settled(&hook, &bad).await;
        assert_eq!(failed["status"]["phase"], "Failed", "{failed}");
        assert_eq!(failed["status"]["artifact"], good["status"]["artifact"]);
        assert_eq!(failed["status"]["conditions"][0]["reason"], "BuildFailed");
        assert!(
            failed["status"]["conditions"][0]["message"]
                .as_str()
                .unwrap()
                .contains("expected")
        );
        assert_eq!(
            failed["children"].as_array().unwrap().len(),
            1,
            "the Service stays"
        );
    }

    #[tokio::test]
    async fn an_invalid_spec_fails_before_any_build() {
        let dir = tempfile::tempdir().unwrap();
        let hook = hook(dir.path());
        let mut body = request(HELLO, 2, true, false);
        body["parent"]["spec"]["handler"] = "../../x.y".into();
        body["parent"]["spec"]["timeout"] = (-1).into();
        body["parent"]["spec"]["function-content-type"] = "url".into();
        body["parent"]["spec"]["function"] = "/etc/passwd".into();
        let (status, response) =
            post(&hook, "/metacontroller/sync", body.to_string().into_bytes()).await;
        assert_eq!(status, StatusCode::OK, "{response}");
        let built = &response["status"]["conditions"][0];
        assert_eq!(response["status"]["phase"], "Failed", "{response}");
        assert_eq!(built["reason"], "InvalidSpec");
        let message = built["message"].as_str().unwrap_or_default();
        for field in ["spec.handler: ", "spec.timeout: ", "spec.function: "] {
            assert!(message.contains(field), "{field}: {message}");
        }
        assert!(response.get("resyncAfterSeconds").is_none());
        assert_eq!(response["children"][0]["kind"], "Service");
        assert!(!dir.path().join("wasm").exists(), "nothing was built");

        // No Service for a name no Service can have.
        body["parent"]["metadata"]["name"] = "a.b".into();
        let (_, response) =
            post(&hook, "/metacontroller/sync", body.to_string().into_bytes()).await;
        assert_eq!(response["status"]["phase"], "Failed");
        assert_eq!(response["children"], serde_json::json!([]));
    }

    #[tokio::test]
    async fn finalize_releases_the_children() {
        let dir = tempfile::tempdir().unwrap();
        let hook = hook(dir.path());
        let (status, response) = post(
            &hook,
            "/metacontroller/finalize",
            request(HELLO, 1, true, true).to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(response["finalized"], true);
        assert_eq!(response["children"], serde_json::json!([]));
        assert!(response.get("resyncAfterSeconds").is_none());
    }

    #[tokio::test]
    async fn shared_with_native_functions_of_the_native_controller_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let hook = hook_for(dir.path(), Scope::Labelled);
        let mut body = request(HELLO, 2, true, false);
        body["parent"]["metadata"]["labels"] = serde_json::json!({});
        body["parent"]["status"] = serde_json::json!({"phase": "Ready", "url": "x"});
        let (_, response) =
            post(&hook, "/metacontroller/sync", body.to_string().into_bytes()).await;
        assert_eq!(response["status"]["phase"], "Ready");
        assert_eq!(response["status"]["url"], "x");
        assert_eq!(
            response["children"][0]["metadata"]["name"], "hello",
            "existing children are kept"
        );
        assert!(response.get("resyncAfterSeconds").is_none());
        assert!(!dir.path().join("wasm").exists(), "nothing was built");
    }

    #[tokio::test]
    async fn alone_every_function_is_handled() {
        let dir = tempfile::tempdir().unwrap();
        let hook = hook(dir.path());
        let mut body = request(HELLO, 2, true, false);
        body["parent"]["metadata"]["labels"] = serde_json::json!({});
        let settled = sync_until_settled(&hook, &body).await;
        assert_eq!(settled["status"]["phase"], "Ready", "{settled}");
        assert!(dir.path().join("wasm").exists(), "built");
    }

    #[tokio::test]
    async fn bad_requests_get_4xx_json() {
        let dir = tempfile::tempdir().unwrap();
        let hook = hook(dir.path());
        let (status, body) = post(&hook, "/metacontroller/sync", b"{not json".to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("not a Metacontroller hook request")
        );
        let (status, body) = post(
            &hook,
            "/metacontroller/sync",
            br#"{"children": {}}"#.to_vec(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "no parent: {body}");
        let (status, body) = post(
            &hook,
            "/metacontroller/sync",
            vec![b' '; MAX_REQUEST_BYTES + 1],
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body["error"].is_string());
    }
}

#[cfg(test)]
mod chart {
    /// The chart's CompositeController, rendered as Helm would with the default values, names
    /// the hooks this module serves and the parent and child kinds it answers for.
    #[test]
    fn the_composite_controller_matches_the_hook() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../charts/wasmless/templates/metacontroller.yaml"
        );
        let template = std::fs::read_to_string(path).unwrap_or_default();
        let rendered: String = template
            .lines()
            .filter(|l| !l.trim_start().starts_with("{{-"))
            .map(|l| {
                l.replace(
                    "{{ .Values.metacontroller.hookBaseUrl }}",
                    "http://hook:8090",
                )
                .replace("{{ .Values.metacontroller.resyncPeriodSeconds }}", "60")
                .replace(
                    "{{ include \"wasmless.hookTokenSecret\" . }}",
                    "wasmless-hook-token",
                )
                .replace("{{ .Release.Namespace }}", "wasmless")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let cc: serde_yaml::Value = serde_yaml::from_str(&rendered).unwrap_or_default();
        assert_eq!(
            cc["kind"].as_str(),
            Some("CompositeController"),
            "{rendered}"
        );
        assert_eq!(
            cc["spec"]["parentResource"]["resource"].as_str(),
            Some("functions")
        );
        assert_eq!(
            cc["spec"]["parentResource"]["apiVersion"].as_str(),
            Some("wasmless.dev/v1alpha1")
        );
        assert_eq!(
            cc["spec"]["childResources"][0]["resource"].as_str(),
            Some("services")
        );
        let hooks = &cc["spec"]["hooks"];
        assert_eq!(
            hooks["sync"]["webhook"]["url"].as_str(),
            Some("http://hook:8090/metacontroller/sync")
        );
        assert_eq!(
            hooks["finalize"]["webhook"]["url"].as_str(),
            Some("http://hook:8090/metacontroller/finalize")
        );
        // Metacontroller sends the hooks' token from the chart's Secret.
        for hook in ["sync", "finalize"] {
            let auth = &hooks[hook]["webhook"]["authorization"];
            assert_eq!(auth["type"].as_str(), Some("Bearer"), "{hook}");
            assert_eq!(
                auth["secretRef"]["name"].as_str(),
                Some("wasmless-hook-token")
            );
            assert_eq!(auth["secretRef"]["key"].as_str(), Some("token"));
        }
    }
}
