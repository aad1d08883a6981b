#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and the end-to-end suites.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_cargo
prune_stale_builds
step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings
step "Kubernetes binaries: etcd, kube-apiserver, kube-controller-manager, a node's, kubectl, helm (built once from the Go module proxy, cached)"
apt_install openssl
WASMLESS_K8S_BIN=$(scripts/k8s-binaries.sh --node | tail -n 1)
export WASMLESS_K8S_BIN
command -v kubectl >/dev/null || { echo "kubectl is missing: the Kubernetes suite drives the real kubectl" >&2; exit 1; }
step "toolchains of the source runtimes (go, nodejs, python, rust, c)"
scripts/toolchains.sh
step "cargo build: the binaries the end-to-end suites start"
# `cargo test` builds a package's binaries only for that package's own integration tests, and the
# suites in tests/ start the controller's, the runtime's and the CLI's.
cargo build --locked --workspace --bins
step "cargo test (unit and end-to-end)"
cargo test --locked --workspace 2>&1 | tee "${TMPDIR:-/tmp}/wasmless-test.log"
# The closing line counts every suite's tests.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' \
  "${TMPDIR:-/tmp}/wasmless-test.log"
