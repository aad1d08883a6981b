//! WASI HTTP: a component exporting `wasi:http/incoming-handler`, which is what componentize-py,
//! componentize-js and Rust's `wasip2` produce. Modelled on wasmtime's own `wasi-http` example:
//! the handler runs in its own task so it can keep streaming the body after the head is sent.
//! An instance whose handler returned cleanly may serve the function's next request
//! ([`crate::warm`]).

use std::sync::Arc;

use axum::body::Body;
use http::Response;
use http_body_util::{BodyExt, Full};
use prometheus_client::metrics::counter::Counter;
use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use super::pipes::LogPipe;
use super::{CallError, Invocation, LiveGuard};
use crate::admission::Permit;
use crate::limits::MemoryLimiter;
use crate::logs::LogBuffer;
use crate::outbound::OutboundPolicy;
use crate::warm::{Pool, WarmBudget};
use wasmless_api::outbound::Target;

pub struct HttpState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    hooks: Outbound,
    /// stdout and stderr, taken into the function's log after each request.
    output: LogPipe,
    /// The admission slot of the request the instance serves now (none while idle).
    permit: Option<Permit>,
    _live: LiveGuard,
}

/// An instance kept between requests, in its store.
struct Warm {
    store: Store<HttpState>,
    proxy: Proxy,
}

/// Sends a function's outgoing requests, only where its policy allows.
struct Outbound {
    policy: Arc<OutboundPolicy>,
    logs: Arc<LogBuffer>,
    refused: Counter,
}

type Sent = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Sent {
        let (policy, logs, refused) =
            (self.policy.clone(), self.logs.clone(), self.refused.clone());
        Box::new(async move {
            let Some(target) = Target::of_uri(request.uri()) else {
                return Err(wasmtime_wasi_http::Error::HttpRequestUriInvalid);
            };
            let addrs = match policy.check(&target).await {
                Ok(addrs) => addrs,
                Err(why) => {
                    refused.inc();
                    // The guest only sees HTTP-request-denied: say why where its owner looks.
                    logs.record(format!("wasmless: outbound request refused: {why}\n").as_bytes());
                    return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
                }
            };
            // Plain HTTP connects to the address just checked, so the name cannot be
            // re-resolved elsewhere in between; TLS needs the name (the Host header keeps it).
            if !target.https
                && let Some(addr) = addrs.first()
            {
                let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
                if let Ok(uri) = format!("http://{addr}{path}").parse() {
                    *request.uri_mut() = uri;
                }
            }
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

impl WasiView for HttpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

pub(super) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HttpState>> {
    let mut linker = Linker::new(engine);
    // The CLI interfaces too: componentize-py and Rust's wasip2 import `wasi:cli/environment`.
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

pub struct WasiHttp {
    pre: ProxyPre<HttpState>,
    /// This loaded function's warm instances: a new definition (code, env, limits, outbound
    /// policy) is a new `WasiHttp`, so none outlives the definition it was made for.
    warm: Arc<Pool<Warm>>,
}

impl WasiHttp {
    pub(super) fn new(
        linker: &Linker<HttpState>,
        component: &Component,
        keep_warm: usize,
        budget: Arc<WarmBudget>,
    ) -> wasmtime::Result<Self> {
        Ok(Self {
            pre: ProxyPre::new(linker.instantiate_pre(component)?)?,
            warm: Arc::new(Pool::new(keep_warm, budget)),
        })
    }

    /// A store for a new instance of this function.
    fn store(&self, call: &Invocation) -> Store<HttpState> {
        let output = LogPipe::new(call.max_log_bytes);
        let wasi = super::wasi_builder(call)
            .stdout(output.clone())
            .stderr(output.clone())
            .build();
        let mut store = Store::new(
            self.pre.engine(),
            HttpState {
                wasi,
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                limiter: MemoryLimiter::new(call.memory_bytes),
                hooks: Outbound {
                    policy: call.outbound.clone(),
                    logs: call.logs.clone(),
                    refused: call.outbound_refused.clone(),
                },
                output,
                permit: None,
                _live: LiveGuard::new(call.instances_live.clone()),
            },
        );
        store.limiter(|s| &mut s.limiter);
        store
    }

    pub(super) async fn call(&self, call: Invocation) -> Result<Response<Body>, CallError> {
        let mut turn = tokio::time::timeout_at(call.deadline, self.warm.turn())
            .await
            .map_err(|_| CallError::Timeout)?;
        let (mut store, proxy) = match turn.warm.take() {
            Some(Warm { store, proxy }) => (store, Some(proxy)),
            None => (self.store(&call), None),
        };
        store.data_mut().permit = Some(call.permit);
        super::yield_on_epoch(&mut store);

        let request = http::Request::from_parts(call.parts, Full::new(call.body));
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let prepared = (|| {
            let req = store
                .data_mut()
                .http()
                .new_incoming_request(Scheme::Http, request)?;
            let out = store.data_mut().http().new_response_outparam(sender)?;
            Ok::<_, wasmtime::Error>((req, out))
        })()
        .map_err(CallError::Trap)?;
        let (req, out) = prepared;

        let pre = self.pre.clone();
        let warm = self.warm.clone();
        let deadline = call.deadline;
        let logs = call.logs;
        let task = tokio::spawn(async move {
            let run = async {
                let proxy = match proxy {
                    Some(proxy) => proxy,
                    None => pre.instantiate_async(&mut store).await?,
                };
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await?;
                Ok::<_, wasmtime::Error>(proxy)
            };
            // The deadline covers the body the handler streams after the head, too.
            let outcome = tokio::time::timeout_at(deadline, run).await;
            logs.record(&store.data().output.take());
            match outcome {
                Ok(Ok(proxy)) => {
                    // Only an instance that ended cleanly serves again: a trap, a timeout or a
                    // refused grow drops it, whatever state it was left in.
                    store.data_mut().permit = None;
                    let bytes = store.data().limiter.memory_bytes();
                    warm.put(Warm { store, proxy }, bytes, turn);
                    Ok(())
                }
                Ok(Err(e)) => Err(CallError::from_trap(e, &store.data().limiter)),
                Err(_) => Err(CallError::Timeout),
            }
        });

        match tokio::time::timeout_at(deadline, receiver).await {
            // The task stops at the same deadline; wait for it so the instance is gone before
            // the 408 leaves.
            Err(_) => {
                let _ = task.await;
                Err(CallError::Timeout)
            }
            Ok(Ok(Ok(response))) => {
                Ok(response.map(|body| Body::new(body.map_err(axum::Error::new))))
            }
            Ok(Ok(Err(code))) => Err(CallError::BadResponse(format!("{code:?}"))),
            // The handler returned (or failed) without setting a response.
            Ok(Err(_)) => match task.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Err(CallError::BadResponse(
                    "the handler returned without setting a response".into(),
                )),
                Err(join) => Err(CallError::Trap(wasmtime::format_err!(
                    "handler task: {join}"
                ))),
            },
        }
    }
}
