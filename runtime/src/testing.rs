//! What the unit tests at the host's seams share: a host with a small pool, and WAT functions
//! compiled in-process (no toolchain, no API server).

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;

use crate::engine::{self, EngineConfig};
use crate::host::{Host, HostConfig};
use crate::registry::{FunctionDef, LoadedFunction};
use wasmless_api::digest::Sha256Digest;
use wasmless_api::function::{FunctionKey, FunctionSpec};

/// A host whose pool holds a few instances: tests run many hosts at once.
pub fn host(config: HostConfig) -> Arc<Host> {
    let config = HostConfig {
        engine: EngineConfig {
            total_core_instances: 16,
            total_component_instances: 4,
            total_memories: 16,
            total_tables: 16,
            total_stacks: 16,
            ..EngineConfig::default()
        },
        ..config
    };
    Host::new(config).expect("a host with a small pool")
}

/// A WAGI command that answers `body` as text/plain. `$n` counts its own calls in a global, so
/// `{n}` in `body` shows how many requests this instance has served (1 to 9).
pub fn wagi(body: &str) -> String {
    module(body, "_start", None)
}

/// How a reactor's call goes wrong, and at which of its calls.
#[derive(Clone, Copy)]
pub enum Fail {
    Trap(u8),
    /// Loops until its timeout.
    Spin(u8),
}

/// The same as a WAGI reactor ([`crate::abi::reactor`]), which may serve many requests.
pub fn reactor(body: &str, fail: Option<Fail>) -> String {
    module(body, wasmless_api::abi::REACTOR_EXPORT, fail)
}

fn module(body: &str, export: &str, fail: Option<Fail>) -> String {
    let fail = match fail {
        None => String::new(),
        Some(Fail::Trap(at)) => {
            format!("(if (i32.eq (global.get $n) (i32.const {at})) (then unreachable))")
        }
        Some(Fail::Spin(at)) => {
            format!("(if (i32.eq (global.get $n) (i32.const {at})) (then (loop $spin (br $spin))))")
        }
    };
    let escape = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    // With `{n}`: the call count as one digit, then the rest of the body (its own segment).
    let (before, count, rest) = match body.split_once("{n}") {
        Some((before, after)) => (
            before,
            format!(
                "(i32.store8 (i32.const 128) (i32.add (i32.const 48) (global.get $n)))
    (call $write (i32.const 128) (i32.const 1))
    (call $write (i32.const 1024) (i32.const {}))",
                after.len()
            ),
            format!(r#"(data (i32.const 1024) "{}")"#, escape(after)),
        ),
        None => (body, String::new(), String::new()),
    };
    let head = format!("Content-Type: text/plain\n\n{before}");
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 0))
  (data (i32.const 256) "{head_text}")
  {rest}
  (func $write (param $at i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $at))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "{export}")
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    {fail}
    (call $write (i32.const 256) (i32.const {head_len}))
    {count}))"#,
        head_text = escape(&head),
        head_len = head.len(),
    )
}

/// A WAGI command whose `_start` traps.
pub const TRAP: &str = r#"(module (func (export "_start") unreachable))"#;

/// Loads `wat` as `namespace/name` at `revision`, with the default limits.
pub fn load(
    host: &Host,
    key: &FunctionKey,
    revision: &str,
    wat: &str,
) -> Result<Arc<LoadedFunction>, crate::host::HostError> {
    let compiled = engine::compile(host.engine(), wat.as_bytes())?;
    host.load(def(key, revision), &compiled)
}

/// The revision a test names `name`: the digest of that text.
pub fn revision(name: &str) -> Sha256Digest {
    Sha256Digest::of(name.as_bytes())
}

/// What a manifest with only a name asks for.
pub fn def(key: &FunctionKey, revision: &str) -> FunctionDef {
    let spec = FunctionSpec::default();
    FunctionDef::from_spec(
        key.clone(),
        &spec,
        self::revision(revision),
        1 << 30,
        Default::default(),
    )
    .expect("the default limits")
}

/// A response's status and body, as text.
pub async fn text(response: Response<axum::body::Body>) -> (u16, String) {
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map(|b| b.to_bytes());
    let body = body.unwrap_or_else(|_| Bytes::from_static(b"<body error>"));
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// `function` called through [`Host::invoke`] with a GET of `/`.
pub async fn get(host: &Host, function: Arc<LoadedFunction>) -> (u16, String) {
    let (parts, ()) = Request::get("/").body(()).expect("a request").into_parts();
    text(host.invoke(function, parts, Bytes::new(), None).await).await
}
