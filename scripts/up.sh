#!/usr/bin/env bash
# The main job: build wasmless and serve functions/ locally (`wasmless up`).
#   ./scripts/up.sh [extra `wasmless up` flags]
# Then: curl -H 'Host: hello-world.test:8080' http://127.0.0.1:8080/
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_cargo
# functions/ has examples in every source runtime: their compilers first.
scripts/toolchains.sh
cargo build --release --locked -p wasmless-cli -p wasmless-builder
exec "$CARGO_TARGET_DIR/release/wasmless" up --dir functions "$@"
