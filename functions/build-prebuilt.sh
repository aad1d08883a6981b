#!/usr/bin/env bash
# Rebuilds the prebuilt examples checked in next to this script (hello-http.wasm).
# Needs rustup's wasm32-wasip2 target; the host and the tests only need the checked-in binary.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rustup target add wasm32-wasip2 >/dev/null
cargo build --manifest-path "$here/src/hello-http/Cargo.toml" --release --target wasm32-wasip2 \
  --target-dir "${CARGO_TARGET_DIR:-$HOME/.cache/wasmless/functions-target}"
cp "${CARGO_TARGET_DIR:-$HOME/.cache/wasmless/functions-target}/wasm32-wasip2/release/hello_http.wasm" "$here/hello-http.wasm"
echo "wrote $here/hello-http.wasm ($(stat -c %s "$here/hello-http.wasm") bytes)"
