#!/usr/bin/env bash
# Benchmarks (see BENCHMARKS.md): requests/s of a WAT hello through the host against a plain
# axum hello in the same run (wrk, both on loopback), µs per instantiation in-process, and per
# source runtime: build times, compile-cache speed-up, artifact size, request latency.
#   ./scripts/bench.sh [seconds per wrk run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_cargo
apt_install wrk
secs="${1:-10}"
cargo build --release --locked -p wasmless-cli -p wasmless-builder -p wasmless-bench
bin="$CARGO_TARGET_DIR/release"
store=$(mktemp -d); log=$(mktemp); served=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$store" "$served"; }
trap cleanup EXIT
# The top-level examples only (WAT and the prebuilt component): the source runtimes' examples
# are measured by `wasmless-bench runtimes` below.
cp functions/*.yaml functions/*.wasm "$served"/

"$bin/wasmless-bench" plain --listen 127.0.0.1:18081 >/dev/null &
WASMLESS_LOG=warn "$bin/wasmless" up --dir "$served" --listen 127.0.0.1:18080 --admin 127.0.0.1:19090 --store "$store" >"$log" 2>&1 &
for _ in $(seq 1 100); do
  curl -fs http://127.0.0.1:19090/readyz >/dev/null 2>&1 && curl -fs http://127.0.0.1:18081/ >/dev/null 2>&1 && break
  sleep 0.2
done

run() { # name url host
  local out rps p50 p99
  out=$(wrk -t2 -c64 -d"${secs}s" --latency -H "Host: $3" "$2")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
  printf '%-36s %12s %10s %10s  %s\n' "$1" "$rps" "$p50" "$p99" "$errors" >&2
  echo "$rps"
}
echo "wrk -t2 -c64 -d${secs}s, server and wrk sharing $(nproc) cores" >&2
printf '%-36s %12s %10s %10s\n' "server" "req/s" "p50" "p99" >&2
plain=$(run "plain axum hello" http://127.0.0.1:18081/ localhost)
wagi=$(run "wasmless, WAT hello (WAGI)" http://127.0.0.1:18080/ hello-world.test)
http=$(run "wasmless, Rust hello (wasi:http)" http://127.0.0.1:18080/ hello-http.test)
awk -v p="$plain" -v w="$wagi" -v h="$http" 'BEGIN {
  printf "ratio vs plain axum: WAGI %.2f, wasi:http %.2f\n", w / p, h / p }' >&2
echo >&2
"$bin/wasmless-bench" instantiate --functions functions 2>/dev/null
echo
# Per runtime: build times, the incremental compile cache, size and request latency.
scripts/toolchains.sh >/dev/null
WASMLESS_LOG=warn "$bin/wasmless-bench" runtimes --functions functions
