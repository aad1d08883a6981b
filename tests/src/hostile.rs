//! Functions and clients that behave as a hostile tenant or client would: memory hogs, sleepers
//! that hold their slot, a wasi:http probe that calls where it is told, connections that never
//! finish their headers.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A WAGI function that grows its memory to `memory_pages` pages of 64 KiB (its whole cap when
/// that is its `memory`), writes to every page, sleeps `sleep_ms`, then answers `ok`.
pub fn hog_manifest(
    namespace: &str,
    name: &str,
    memory: &str,
    pages: u32,
    sleep_ms: u64,
) -> String {
    let nanos = sleep_ms * 1_000_000;
    format!(
        r#"apiVersion: wasmless.dev/v1alpha1
kind: Function
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  runtime: wat
  memory: {memory}
  timeout: 20
  function: |
    (module
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 512) "Content-Type: text/plain\n\nok")
      (func (export "_start")
        (local $page i32)
        (if (i32.lt_s (memory.grow (i32.const {grow})) (i32.const 0)) (then unreachable))
        (loop $touch
          (i32.store8 (i32.mul (local.get $page) (i32.const 65536)) (i32.const 1))
          (local.set $page (i32.add (local.get $page) (i32.const 1)))
          (br_if $touch (i32.lt_u (local.get $page) (memory.size))))
        ;; one relative monotonic-clock subscription at 0, its event at 64
        (i64.store (i32.const 24) (i64.const {nanos}))
        (i32.store8 (i32.const 8) (i32.const 0))
        (i32.store (i32.const 16) (i32.const 1))
        (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
        (i32.store (i32.const 256) (i32.const 512))
        (i32.store (i32.const 260) (i32.const 28))
        (drop (call $write (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 264)))))
"#,
        grow = pages.saturating_sub(1),
    )
}

/// A WAGI function that writes `stderr_lines` lines of 64 bytes to stderr, one write each,
/// then `stdout` bytes of response.
pub fn noisy_manifest(namespace: &str, name: &str, stdout: u32, stderr_lines: u32) -> String {
    format!(
        r#"apiVersion: wasmless.dev/v1alpha1
kind: Function
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  runtime: wat
  memory: 8Mi
  function: |
    (module
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 64)
      (data (i32.const 512) "Content-Type: text/plain\n\n")
      (func (export "_start")
        (local $i i32)
        ;; 1 MiB of 'x' from 4096, every 64th byte a newline
        (loop $fill
          (i32.store8 (i32.add (i32.const 4096) (local.get $i))
            (select (i32.const 10) (i32.const 120)
              (i32.eq (i32.rem_u (local.get $i) (i32.const 64)) (i32.const 63))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $fill (i32.lt_u (local.get $i) (i32.const 1048576))))
        (local.set $i (i32.const 0))
        (block $done
          (loop $lines
            (br_if $done (i32.ge_u (local.get $i) (i32.const {stderr_lines})))
            (i32.store (i32.const 256) (i32.const 4096))
            (i32.store (i32.const 260) (i32.const 64))
            (drop (call $write (i32.const 2) (i32.const 256) (i32.const 1) (i32.const 300)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $lines)))
        (i32.store (i32.const 256) (i32.const 512))
        (i32.store (i32.const 260) (i32.const 26))
        (drop (call $write (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 300)))
        (i32.store (i32.const 256) (i32.const 4096))
        (i32.store (i32.const 260) (i32.const {stdout}))
        (drop (call $write (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 300)))))
"#
    )
}

/// The outbound probe ([`probe.wat`](../src/probe.wat)) as a wasi:http component.
pub fn probe_component() -> anyhow::Result<Vec<u8>> {
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("wit");
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(&wit).context("the probe's WIT")?;
    let world = resolve.select_world(&[package], Some("probe"))?;
    let mut module = wat::parse_str(include_str!("probe.wat"))?;
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )?;
    wit_component::ComponentEncoder::default()
        .module(&module)?
        .validate(true)
        .encode()
        .context("encode the probe component")
}

/// A manifest of the probe, from `probe.wasm` beside it, allowed to call `allowed`.
pub fn probe_manifest(namespace: &str, name: &str, allowed: &[String]) -> String {
    let list: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"apiVersion: wasmless.dev/v1alpha1
kind: Function
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  runtime: wasm
  function-content-type: url
  function: probe.wasm
  timeout: 10
  allowedOutboundHosts: [{}]
"#,
        list.join(", ")
    )
}

/// The case number of `HTTP-request-denied` in wasi:http's `error-code`, as the probe answers it.
pub const DENIED: u16 = 515;

/// Sends raw bytes and reads until the server closes or `limit` passes: what came back, and
/// whether the server closed.
pub async fn raw_exchange(
    addr: std::net::SocketAddr,
    request: &[u8],
    limit: Duration,
) -> anyhow::Result<(String, bool)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    };
    Ok((String::from_utf8_lossy(&got).into_owned(), closed))
}

/// The soft limit on open files of this process (children inherit it).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The `q` quantile of `samples` (sorted in place).
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples.get(i).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_probe_is_a_component() {
        let probe = super::probe_component().expect("the probe encodes");
        // `\0asm`, then a component's layer and version.
        assert_eq!(probe.get(..8), Some(&b"\0asm\x0d\0\x01\0"[..]));
    }
}
