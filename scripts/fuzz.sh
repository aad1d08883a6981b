#!/usr/bin/env bash
# Long fuzz runs of tests/tests/fuzz.rs: each target for SECONDS (default 600), two at a time.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     logs and figures in ${FUZZ_LOGS:-/tmp/wasmless-fuzz}
# A failure prints the seed and the input; WASMLESS_FUZZ_SEED=<seed> replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_cargo
seconds="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(host_header_and_path_routing wagi_response_parser
  manifest_decoding stored_function_decoding metacontroller_hook_decoding)
logs="${FUZZ_LOGS:-${TMPDIR:-/tmp}/wasmless-fuzz}"
mkdir -p "$logs"
# One build, then the binary itself: later edits and builds do not disturb the runs.
bin=$(cargo test --locked -p wasmless-e2e --test fuzz --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
cp "$bin" "$logs/fuzz-bin"
seed="${WASMLESS_FUZZ_SEED:-$(date +%s)}"
run() {
  WASMLESS_FUZZ_SECONDS="$seconds" WASMLESS_FUZZ_SEED="$seed" \
    "$logs/fuzz-bin" --exact "$1" --nocapture >"$logs/$1.log" 2>&1
}
status=0
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  pids=()
  for t in "${targets[@]:i:2}"; do run "$t" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || status=1; done
done
grep -h -E '^fuzz |panicked' "$logs"/*.log
exit "$status"
