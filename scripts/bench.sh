#!/usr/bin/env bash
# Benchmarks (see BENCHMARKS.md): requests/s of a WAT hello through the host against a plain
# axum hello in the same run (wrk, both on loopback), each source runtime's hello (warm and with a
# fresh instance per request), µs per instantiation in-process, and per source runtime: build
# times, compile-cache speed-up, artifact size, request latency.
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
hellos=$(mktemp -d); log2=$(mktemp); store2=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$store" "$served" "$hellos" "$store2" "$log2"; }
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

# Each source runtime's hello (the first example of functions/<runtime>/functions.yaml) through
# a second `wasmless up`, and for python and nodejs, kept warm by default, the same hello with
# `warmInstances: 0`: a fresh instance per request, as every request paid before warm instances.
scripts/toolchains.sh >/dev/null
first() { awk 'BEGIN { d = 1 } /^---/ { d++; next } d == 1' "functions/$1/functions.yaml"; }
for rt in c go nodejs python rust; do first "$rt" >"$hellos/$rt.yaml"; done
for rt in nodejs python; do
  first "$rt" | sed -e 's/^\(  name: .*-hello\)$/\1-fresh/' -e 's/^spec:$/spec:\n  warmInstances: 0/' >"$hellos/$rt-fresh.yaml"
done
# 64 connections hold up to 64 instances of 256Mi (the default cap): a budget for all of them, so
# that what is measured is the instances, not the admission control's 503s.
WASMLESS_LOG=warn "$bin/wasmless" up --dir "$hellos" --listen 127.0.0.1:18082 --admin 127.0.0.1:19092 --store "$store2" \
  --memory-budget 16Gi >"$log2" 2>&1 &
for _ in $(seq 1 4500); do # their first builds: minutes
  curl -fs http://127.0.0.1:19092/readyz >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fs http://127.0.0.1:19092/readyz >/dev/null || { cat "$log2" >&2; echo "the source runtimes' hellos never became ready" >&2; exit 1; }
echo "source runtimes' hellos, wrk -t2 -c64 -d${secs}s (goals: python 2000, nodejs 5000, go 10000 req/s)" >&2
printf '%-36s %12s %10s %10s\n' "function" "req/s" "p50" "p99" >&2
for f in c-hello:c go-hello:go rs-hello:rust js-hello:nodejs js-hello-fresh:nodejs py-hello:python py-hello-fresh:python; do
  name=${f%%:*}
  case $name in
    *-fresh) how="fresh instance per request" ;;
    js-hello | py-hello | go-hello) how="warm" ;;
    *) how="fresh" ;;
  esac
  run "${f#*:} hello ($how)" http://127.0.0.1:18082/ "$name.test" >/dev/null
done
echo >&2
"$bin/wasmless-bench" instantiate --functions functions 2>/dev/null
echo
# Per runtime: build times, the incremental compile cache, size and request latency.
WASMLESS_LOG=warn "$bin/wasmless-bench" runtimes --functions functions
