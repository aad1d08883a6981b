//! The reconciler against a mock API server: each test plays the API server, answering the
//! reconciler's requests one by one in the order it must send them, and checks what it writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle, SendResponse};

use wasmless_api::FunctionKey;
use wasmless_api::function::{Function, Runtime};
use wasmless_build::artifacts::DirStore;
use wasmless_build::driver::{Driver, Settings};
use wasmless_build::pipeline::{InProcess, Pipeline};
use wasmless_builder::{Build, BuildError, Source};
use wasmless_runtime::EngineConfig;

use super::{Context, Error, MANAGER, ReadyWhen, Term, reconcile};
use crate::applied::Applied;
use crate::children::ChildConfig;
use crate::endpoints::Hosts;
use crate::own_writes::OwnWrites;

const HELLO: &str = r#"(module (func (export "_start")))"#;
const FUNCTION: &str = "/apis/wasmless.dev/v1alpha1/namespaces/test/functions/hello";
const SERVICE: &str = "/api/v1/namespaces/test/services/hello";
const ENDPOINTS: &str = "/api/v1/namespaces/test/endpoints/hello";
/// The one slice of the one IPv4 host pod's port.
const SLICE: &str = "/apis/discovery.k8s.io/v1/namespaces/test/endpointslices/hello-ipv4-8080";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/test/events";
/// The host pod's address: what the Service's endpoints must point at.
const HOST_IP: &str = "192.0.2.7";
/// A bound on every wait, so that a reconcile that stops short fails its test instead of
/// hanging it; each request follows the previous at once.
const PATIENCE: Duration = Duration::from_secs(10);
const HOUR: Duration = Duration::from_secs(3600);

/// The API server's side of the mock.
struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
    /// The last resourceVersion handed out.
    version: u64,
}

/// One request received, to be answered.
struct Call {
    request: http::request::Parts,
    body: Value,
    reply: SendResponse<Response<Body>>,
}

impl Call {
    fn header(&self, name: header::HeaderName) -> &str {
        self.request
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn ok(self, body: &Value) {
        self.respond(StatusCode::OK, body);
    }

    fn not_found(self) {
        let status = json!({
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "reason": "NotFound", "code": 404, "message": "not found"
        });
        self.respond(StatusCode::NOT_FOUND, &status);
    }

    fn respond(self, status: StatusCode, body: &Value) {
        let body = Body::from(serde_json::to_vec(body).unwrap());
        let response = Response::builder().status(status).body(body).unwrap();
        self.reply.send_response(response);
    }
}

/// The children as a first reconcile applied them, and as the API server returned them.
struct Children {
    service: Value,
    endpoints: Value,
    slice: Value,
}

impl ApiServer {
    /// The next request, which must be `method` on `path`.
    async fn expect(&mut self, method: Method, path: &str) -> Call {
        let next = tokio::time::timeout(PATIENCE, self.handle.next_request()).await;
        let Ok(Some((request, reply))) = next else {
            panic!("expected {method} {path}, got no request");
        };
        let (request, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        assert_eq!(
            (&request.method, request.uri.path()),
            (&method, path),
            "unexpected request, body: {body}"
        );
        Call {
            request,
            body,
            reply,
        }
    }

    fn next_version(&mut self) -> String {
        self.version += 1;
        self.version.to_string()
    }

    /// The next request, this controller's forced server-side apply of `path`; answered with
    /// what it applied and a new resourceVersion, which it returns.
    async fn expect_apply(&mut self, path: &str) -> Value {
        let call = self.expect(Method::PATCH, path).await;
        assert_eq!(
            call.header(header::CONTENT_TYPE),
            "application/apply-patch+yaml"
        );
        let query = call.request.uri.query().unwrap_or_default();
        assert!(
            query.contains(&format!("fieldManager={MANAGER}")) && query.contains("force=true"),
            "{query}"
        );
        let mut written = call.body.clone();
        written["metadata"]["resourceVersion"] = self.next_version().into();
        call.ok(&written);
        written
    }

    /// A first reconcile's writes: the Service (looked for, not found, applied), its Endpoints
    /// and its slice (new with the Service: applied without looking).
    async fn expect_children_created(&mut self) -> Children {
        self.expect(Method::GET, SERVICE).await.not_found();
        Children {
            service: self.expect_apply(SERVICE).await,
            endpoints: self.expect_apply(ENDPOINTS).await,
            slice: self.expect_apply(SLICE).await,
        }
    }

    /// A later reconcile's reads, the children found as applied: nothing is written again.
    async fn expect_children_unchanged(&mut self, children: &Children) {
        self.expect(Method::GET, SERVICE)
            .await
            .ok(&children.service);
        for (path, object) in [(ENDPOINTS, &children.endpoints), (SLICE, &children.slice)] {
            let call = self.expect(Method::GET, path).await;
            assert!(
                call.header(header::ACCEPT)
                    .contains("as=PartialObjectMetadata")
            );
            let metadata = json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": object["metadata"]
            });
            call.ok(&metadata);
        }
    }

    /// The next request, a status write (a merge patch); answered with `function` so written
    /// (which it updates). The status written.
    async fn expect_status(&mut self, function: &mut Function) -> Value {
        let call = self
            .expect(Method::PATCH, &format!("{FUNCTION}/status"))
            .await;
        assert_eq!(
            call.header(header::CONTENT_TYPE),
            "application/merge-patch+json"
        );
        let status = call.body["status"].clone();
        function.status = Some(serde_json::from_value(status.clone()).unwrap());
        function.metadata.resource_version = Some(self.next_version());
        call.ok(&serde_json::to_value(&*function).unwrap());
        status
    }

    /// The next request, an Event about the Function; answered as created. The Event.
    async fn expect_event(&mut self) -> Value {
        let call = self.expect(Method::POST, EVENTS).await;
        let event = call.body.clone();
        assert_eq!(
            (&event["regarding"]["kind"], &event["regarding"]["name"]),
            (&json!("Function"), &json!("hello"))
        );
        assert_eq!(event["reportingController"], MANAGER);
        call.respond(StatusCode::CREATED, &event);
        event
    }
}

/// The in-process WAT builder, counting the builds it is asked for.
#[derive(Default)]
struct Counting(AtomicUsize);

impl Build for Counting {
    fn build(
        &self,
        runtime: Runtime,
        tenant: &str,
        source: &Source,
    ) -> Result<Vec<u8>, BuildError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        InProcess.build(runtime, tenant, source)
    }
}

/// A leadership term over the mock API server: one ready host pod, `--ready-when built`, an
/// artifact store in a tempdir.
struct Fixture {
    api: ApiServer,
    term: Arc<Term>,
    /// Where the driver tells of finished builds.
    woken: mpsc::UnboundedReceiver<FunctionKey>,
    builder: Arc<Counting>,
    _store: tempfile::TempDir,
    _leading: watch::Sender<bool>,
}

fn fixture() -> Fixture {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let store = tempfile::tempdir().unwrap();
    let builder = Arc::new(Counting::default());
    let pipeline = Pipeline::new(
        EngineConfig::default().build().unwrap(),
        Arc::new(DirStore::new(store.path())),
        builder.clone(),
    );
    let driver = Driver::new(Arc::new(pipeline), Settings::default());
    let children = ChildConfig::default();
    let hosts = Hosts::listed(&children, vec![host_pod()]);
    let ctx = Context::new(
        client,
        driver,
        children,
        ReadyWhen::Built,
        "controller-0".into(),
    );
    let (wake, woken) = mpsc::unbounded_channel();
    let (leading_tx, leading) = watch::channel(true);
    let term = Term {
        ctx: Arc::new(ctx),
        hosts,
        own: OwnWrites::default(),
        applied: Applied::default(),
        wake,
        leading,
    };
    Fixture {
        api: ApiServer {
            handle,
            version: 10,
        },
        term: Arc::new(term),
        woken,
        builder,
        _store: store,
        _leading: leading_tx,
    }
}

impl Fixture {
    fn reconcile(&self, function: &Function) -> JoinHandle<Result<Action, Error>> {
        tokio::spawn(reconcile(Arc::new(function.clone()), self.term.clone()))
    }

    fn builds(&self) -> usize {
        self.builder.0.load(Ordering::SeqCst)
    }

    /// What the reconcile returned, once it has; failing on any request it sends meanwhile.
    async fn done(&mut self, run: JoinHandle<Result<Action, Error>>) -> Action {
        tokio::select! {
            result = run => result.unwrap().unwrap(),
            request = self.api.handle.next_request() => match request {
                Some((request, _)) => panic!("unexpected {} {}", request.method(), request.uri()),
                None => panic!("the client is gone"),
            },
            () = tokio::time::sleep(PATIENCE) => panic!("the reconcile did not end"),
        }
    }

    /// Ends the term and checks that nothing was sent beyond what the test answered: with the
    /// term gone, the client is, and the mock's request stream ends.
    async fn finish(self) {
        let Fixture { mut api, term, .. } = self;
        drop(term);
        match tokio::time::timeout(PATIENCE, api.handle.next_request()).await {
            Ok(None) => {}
            Ok(Some((request, _))) => {
                panic!("unexpected {} {}", request.method(), request.uri())
            }
            Err(_) => panic!("the client outlived the term"),
        }
    }
}

fn function(runtime: &str, source: &str) -> Function {
    serde_json::from_value(json!({
        "apiVersion": "wasmless.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "hello", "namespace": "test", "uid": "uid-1",
                     "generation": 1, "resourceVersion": "1"},
        "spec": {"runtime": runtime, "function": source}
    }))
    .unwrap()
}

/// A ready host pod, elsewhere than the Function's namespace.
fn host_pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "host-0", "namespace": "wasmless", "uid": "uid-host-0"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "host"}]},
        "status": {"phase": "Running", "podIP": HOST_IP, "podIPs": [{"ip": HOST_IP}],
                   "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .unwrap()
}

/// The `Built` condition of a status: (status, reason, message).
fn built_condition(status: &Value) -> (&str, &str, &str) {
    let built = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Built")
        .unwrap();
    let field = |name| built[name].as_str().unwrap();
    (field("status"), field("reason"), field("message"))
}

#[tokio::test]
async fn an_invalid_spec_fails_before_any_build_and_its_service_is_still_applied() {
    let mut f = fixture();
    let mut function = function("cobol", HELLO);

    let run = f.reconcile(&function);
    let children = f.api.expect_children_created().await;
    let service = &children.service;
    assert_eq!(service["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(
        service["metadata"]["ownerReferences"][0]["controller"],
        true
    );
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
    assert!(
        service["spec"].get("selector").is_none(),
        "the controller writes the endpoints"
    );
    assert_eq!(
        children.endpoints["subsets"][0]["addresses"][0]["ip"],
        HOST_IP
    );
    assert_eq!(children.slice["endpoints"][0]["addresses"][0], HOST_IP);
    let status = f.api.expect_status(&mut function).await;
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["observedGeneration"], 1);
    let (ok, reason, message) = built_condition(&status);
    assert_eq!((ok, reason), ("False", "InvalidSpec"));
    assert!(
        message.contains("spec.runtime") && message.contains("\"cobol\""),
        "{message}"
    );
    let event = f.api.expect_event().await;
    assert_eq!(
        (&event["type"], &event["reason"]),
        (&json!("Warning"), &json!("InvalidSpec"))
    );
    assert!(event["note"].as_str().unwrap().contains("cobol"), "{event}");
    assert_eq!(f.done(run).await, Action::requeue(HOUR));

    // Once recorded, the same verdict writes nothing: no status, no second Event.
    let run = f.reconcile(&function);
    f.api.expect_children_unchanged(&children).await;
    assert_eq!(f.done(run).await, Action::requeue(HOUR));

    assert_eq!(f.builds(), 0, "nothing was built");
    assert!(f.woken.try_recv().is_err(), "no build to wait for");
    f.finish().await;
}

#[tokio::test]
async fn a_name_no_service_can_have_fails_with_no_service() {
    let mut f = fixture();
    let mut function = function("wat", HELLO);
    // A DNS subdomain: a Function's name may hold dots, a Service's may not.
    function.metadata.name = Some("hello.v2".into());

    let run = f.reconcile(&function);
    let call = f
        .api
        .expect(
            Method::PATCH,
            "/apis/wasmless.dev/v1alpha1/namespaces/test/functions/hello.v2/status",
        )
        .await;
    let status = call.body["status"].clone();
    assert_eq!(status["phase"], "Failed");
    let (_, reason, message) = built_condition(&status);
    assert_eq!(reason, "InvalidSpec");
    assert!(message.contains("metadata.name"), "{message}");
    call.ok(&serde_json::to_value(&function).unwrap());
    let event = f.api.expect(Method::POST, EVENTS).await;
    assert_eq!(event.body["reason"], "InvalidSpec");
    event.respond(StatusCode::CREATED, &json!({}));
    assert_eq!(f.done(run).await, Action::requeue(HOUR));
    assert_eq!(f.builds(), 0);
    f.finish().await;
}

#[tokio::test]
async fn a_service_of_its_name_that_is_not_its_own_is_left_alone() {
    let mut f = fixture();
    let mut function = function("wat", HELLO);
    let theirs = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "hello", "namespace": "test", "resourceVersion": "7",
                     "labels": {"app": "hello"}},
        "spec": {"selector": {"app": "hello"}, "ports": [{"port": 80}]}
    });

    let run = f.reconcile(&function);
    f.api.expect(Method::GET, SERVICE).await.ok(&theirs);
    // No apply of the Service nor of its endpoints: the status write comes next.
    let status = f.api.expect_status(&mut function).await;
    assert_eq!(status["phase"], "Failed");
    let (ok, reason, message) = built_condition(&status);
    assert_eq!((ok, reason), ("False", "ServiceConflict"));
    assert!(
        message.contains("Service test/hello exists and is not this Function's"),
        "{message}"
    );
    let event = f.api.expect_event().await;
    assert_eq!(event["reason"], "ServiceConflict");
    // Looked at again soon: that Service is not watched.
    assert_eq!(f.done(run).await, Action::requeue(Duration::from_secs(30)));

    assert_eq!(f.builds(), 0, "not built while it cannot be served");
    f.finish().await;
}

#[tokio::test]
async fn a_wat_function_builds_in_the_background_then_is_ready() {
    let mut f = fixture();
    let mut function = function("wat", HELLO);

    // The first reconcile starts the build and says so; it does not wait for it.
    let run = f.reconcile(&function);
    let children = f.api.expect_children_created().await;
    let status = f.api.expect_status(&mut function).await;
    assert_eq!(status["phase"], "Building");
    assert_eq!(built_condition(&status).1, "Building");
    assert!(status.get("artifact").is_none(), "{status}");
    assert_eq!(status["url"], "http://hello.test:8080");
    assert_eq!(f.done(run).await, Action::requeue(HOUR));

    // The build's end brings the Function back.
    let woken = tokio::time::timeout(PATIENCE, f.woken.recv()).await;
    assert_eq!(woken.unwrap(), Some(FunctionKey::new("test", "hello")));
    let run = f.reconcile(&function);
    f.api.expect_children_unchanged(&children).await;
    let event = f.api.expect_event().await;
    assert_eq!(
        (&event["type"], &event["reason"]),
        (&json!("Normal"), &json!("Built"))
    );
    let status = f.api.expect_status(&mut function).await;
    assert_eq!(status["phase"], "Ready");
    assert_eq!(status["observedGeneration"], 1);
    let digest = status["artifact"]["digest"].as_str().unwrap();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert!(
        event["note"].as_str().unwrap().starts_with(digest),
        "{event}"
    );
    let (ok, reason, message) = built_condition(&status);
    assert_eq!((ok, reason), ("True", "Built"));
    assert_eq!(message, format!("built {digest}"));
    assert_eq!(f.done(run).await, Action::requeue(HOUR));

    // Settled: a reconcile of the Ready generation neither builds nor writes.
    let run = f.reconcile(&function);
    f.api.expect_children_unchanged(&children).await;
    assert_eq!(f.done(run).await, Action::requeue(HOUR));
    assert_eq!(f.builds(), 1);
    f.finish().await;
}
