//! WAGI reactors: a core module that starts once (`_initialize`) and then answers requests
//! through its export `wasmless_wagi_handle`, each as a WAGI command would (stdout: header lines,
//! a blank line, the body), so one instance can answer many requests ([`crate::warm`]). The CGI
//! variables cannot travel in the environment (a guest reads it once, when it starts), so each
//! request arrives on stdin: the variables as `NAME=VALUE` entries, each ended by a NUL byte, an
//! empty entry (one more NUL), then the body. The environment holds the function's own variables
//! only. Go functions build so (`-buildmode=c-shared`, `//go:wasmexport`): Go's runtime starts
//! once per instance, not once per request.

use std::sync::Arc;

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use http::Response;
use wasmtime::{InstancePre, Linker, Module, Store, TypedFunc};
use wasmtime_wasi::I32Exit;

use super::pipes::{InputPipe, LogPipe};
use super::wagi::{self, WagiState};
use super::{CallError, Invocation};
use crate::warm::{Pool, WarmBudget};
use wasmless_api::abi::REACTOR_EXPORT;

/// An instance and its stdio, kept between requests.
struct Instance {
    store: Store<WagiState>,
    handle: Option<TypedFunc<(), ()>>,
    stdin: InputPipe,
    stdout: LogPipe,
    stderr: LogPipe,
}

pub struct Reactor {
    pre: InstancePre<WagiState>,
    /// This loaded function's warm instances (see [`super::http::WasiHttp`]'s).
    warm: Pool<Instance>,
}

impl Reactor {
    pub(super) fn new(
        linker: &Linker<WagiState>,
        module: &Module,
        keep_warm: usize,
        budget: Arc<WarmBudget>,
    ) -> wasmtime::Result<Self> {
        Ok(Self {
            pre: linker.instantiate_pre(module)?,
            warm: Pool::new(keep_warm, budget),
        })
    }

    /// A store for a new instance, not instantiated yet.
    fn instance(&self, call: &Invocation) -> Instance {
        let (stdin, stdout, stderr) = (
            InputPipe::default(),
            // One byte more than allowed, so that a response cut at the limit can be told apart.
            LogPipe::new(call.max_stdout_bytes.saturating_add(1)),
            LogPipe::new(call.max_log_bytes),
        );
        let wasi = super::wasi_builder(call)
            .stdin(stdin.clone())
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build_p1();
        Instance {
            store: WagiState::store(self.pre.module().engine(), call, wasi),
            handle: None,
            stdin,
            stdout,
            stderr,
        }
    }

    pub(super) async fn call(&self, call: Invocation) -> Result<Response<Body>, CallError> {
        let mut turn = tokio::time::timeout_at(call.deadline, self.warm.turn())
            .await
            .map_err(|_| CallError::Timeout)?;
        let mut instance = turn.warm.take().unwrap_or_else(|| self.instance(&call));
        instance.stdin.set(frame(&call));
        let store = &mut instance.store;
        store.data_mut().permit = Some(call.permit);
        super::yield_on_epoch(store);

        let (pre, handle) = (&self.pre, instance.handle.take());
        let run = async {
            let handle = match handle {
                Some(handle) => handle,
                None => {
                    let started = pre.instantiate_async(&mut *store).await?;
                    if let Ok(init) = started.get_typed_func::<(), ()>(&mut *store, "_initialize") {
                        init.call_async(&mut *store, ()).await?;
                    }
                    started.get_typed_func::<(), ()>(&mut *store, REACTOR_EXPORT)?
                }
            };
            handle.call_async(&mut *store, ()).await?;
            Ok::<_, wasmtime::Error>(handle)
        };
        let outcome = tokio::time::timeout_at(call.deadline, run).await;
        call.logs.record(&instance.stderr.take());
        let out = instance.stdout.take();
        let reusable = match outcome {
            Err(_) => return Err(CallError::Timeout),
            Ok(Ok(handle)) => {
                instance.handle = Some(handle);
                true
            }
            // An instance that exited answers with what it wrote, and is never used again.
            Ok(Err(e)) => match e.downcast_ref::<I32Exit>() {
                Some(I32Exit(0)) => false,
                Some(I32Exit(code)) => return Err(CallError::Exit(*code)),
                None => return Err(CallError::from_trap(e, &instance.store.data().limiter)),
            },
        };
        if reusable {
            instance.store.data_mut().permit = None;
            let bytes = instance.store.data().limiter.memory_bytes();
            self.warm.put(instance, bytes, turn);
        }
        wagi::response(out, call.max_stdout_bytes)
    }
}

/// A request as a reactor reads it on stdin.
fn frame(call: &Invocation) -> Bytes {
    let mut frame = BytesMut::new();
    wagi::cgi_variables(call, |name, value| {
        // A NUL ends an entry: none can be inside one (hyper refuses them in headers).
        if name.contains('\0') || value.contains('\0') {
            return;
        }
        frame.put_slice(name.as_bytes());
        frame.put_u8(b'=');
        frame.put_slice(value.as_bytes());
        frame.put_u8(0);
    });
    frame.put_u8(0);
    frame.put_slice(&call.body);
    frame.freeze()
}
