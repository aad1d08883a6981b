//! The build's check of a Python function: the interpreter started as a host starts it, with the
//! function's files at `/kubeless`, asked to import the handler (`wasmless:python/function`'s
//! `load`). An import error, a syntax error or a missing function fails the build with Python's
//! own message. The module's code runs here as it will in each instance: within the build's
//! limits, with no outbound HTTP.

use std::path::Path;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::super::toolchain::{MAX_MESSAGE, compiled_path};
use super::BuildError;

/// The interface and function the interpreter exports for the check (`python/function.wit`).
const INTERFACE: &str = "wasmless:python/function";
const LOAD: &str = "load";

/// The engine the check compiles for (the interpreter is precompiled with it once).
pub fn engine() -> Engine {
    Engine::default()
}

struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: NoOutbound,
}

/// A build sends no request anywhere.
struct NoOutbound;

impl WasiHttpHooks for NoOutbound {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Whether `handler` imports from `files` in the interpreter (`interpreter`, read from
/// `interpreter_file`, beside which `prepare` wrote its compiled form).
pub fn handler(
    interpreter_file: &Path,
    interpreter: &[u8],
    files: &[u8],
    handler: &str,
) -> Result<(), BuildError> {
    let internal = |what: &str, e: wasmtime::Error| BuildError::Internal(format!("{what}: {e:?}"));
    let engine = engine();
    let compiled = compiled_path(interpreter_file, &engine);
    // SAFETY: `prepare` wrote this file with this builder's wasmtime, in the toolchain directory
    // no tenant's build can write; wasmtime refuses one of another version or configuration
    // (then the check compiles its own).
    let component = match unsafe { Component::deserialize_file(&engine, &compiled) } {
        Ok(component) => component,
        Err(_) => Component::new(&engine, interpreter)
            .map_err(|e| internal("compiling the interpreter", e))?,
    };
    let dir = tempfile::tempdir().map_err(|e| BuildError::Internal(e.to_string()))?;
    std::fs::write(dir.path().join(wasmless_api::files::ARCHIVE), files)
        .map_err(|e| BuildError::Internal(format!("writing the function's files: {e}")))?;
    let module = handler.rsplit_once('.').map_or(handler, |(m, _)| m);
    let mut wasi = WasiCtxBuilder::new();
    wasi.env("FUNC_HANDLER", handler).env("MOD_NAME", module);
    wasi.preopened_dir(dir.path(), wasmless_api::files::DIR, FsPerms::ReadOnly)
        .map_err(|e| internal("preopening the function's files", e))?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker))
        .map_err(|e| internal("linking the interpreter", e))?;
    let mut store = Store::new(
        &engine,
        State {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: NoOutbound,
        },
    );
    let instance = linker
        .instantiate(&mut store, &component)
        .map_err(|e| internal("starting the interpreter", e))?;
    let load = instance
        .get_export_index(&mut store, None, INTERFACE)
        .and_then(|i| instance.get_export_index(&mut store, Some(&i), LOAD))
        .ok_or_else(|| BuildError::Internal(format!("the interpreter exports no {INTERFACE}")))?;
    let load = instance
        .get_typed_func::<(), (Result<(), String>,)>(&mut store, &load)
        .map_err(|e| internal("the interpreter's load", e))?;
    let loaded = load.call(&mut store, ()).map_err(|e| {
        // What stops the interpreter (exit, a trap) while the module loads is the source's.
        let text = format!("{e:#}");
        let last = text.lines().rev().map(str::trim).find(|l| !l.is_empty());
        BuildError::Compile(format!(
            "the function's module stopped the interpreter while loading: {}",
            last.unwrap_or_default()
        ))
    })?;
    match loaded {
        (Ok(()),) => Ok(()),
        (Err(message),) => Err(BuildError::Compile(
            message.chars().take(MAX_MESSAGE).collect(),
        )),
    }
}
