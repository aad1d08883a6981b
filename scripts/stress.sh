#!/usr/bin/env bash
# The leader-election and shutdown tests, run again and again while busy loops keep every core
# occupied beside them: a leader starved of CPU once lost its Lease, led again, and outlived the
# SIGTERM that followed (issue 11).
#   ./scripts/stress.sh [-n RUNS] [-b BUSY] [TEST...]
# RUNS: 10; BUSY: one loop per core (nproc); TEST: tests of tests/tests/kubernetes.rs
# (functions_on_a_real_api_server: a standby waits, SIGTERM releases the Lease, kill -9).
# Prints each run's result and the counts; exits 1 if a run failed. Each run's output is kept
# in a directory it names.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_cargo

runs=10
busy=$(nproc)
while getopts n:b: opt; do
  case $opt in
    n) runs=$OPTARG ;;
    b) busy=$OPTARG ;;
    *) sed -n '5,9p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(functions_on_a_real_api_server)

# Built before the loops start: the figures are about the tests, not the compiler.
cargo build --locked --workspace --bins
cargo test --locked -p wasmless-e2e --test kubernetes --no-run

logs=$(mktemp -d -t wasmless-stress.XXXXXX)
loops=()
stop_loops() {
  for pid in "${loops[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_loops EXIT
for _ in $(seq "$busy"); do
  sh -c 'while :; do :; done' &
  loops+=("$!")
done
echo "stress: $busy busy loops beside ${tests[*]}, $runs runs; logs in $logs"

passed=0
failed=0
for run in $(seq "$runs"); do
  started=$(date +%s)
  if cargo test --locked -p wasmless-e2e --test kubernetes -- --exact --test-threads 1 "${tests[@]}" \
    >"$logs/run-$run.log" 2>&1; then
    passed=$((passed + 1)); result=pass
  else
    failed=$((failed + 1)); result=FAIL
  fi
  echo "run $run: $result in $(($(date +%s) - started)) s"
done
echo "stress: $passed/$runs passed, $failed failed (logs in $logs)"
[ "$failed" -eq 0 ]
