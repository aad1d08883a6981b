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
# Clippy lints inside the builds below rather than in a pass of its own: every cargo command here
# compiles the workspace's crates with clippy-driver (what `cargo clippy` sets), -D warnings, so
# `cargo build --bins` and `cargo test --no-run` cover `cargo clippy --all-targets` (there are no
# benches or examples) without checking every dependency a second time (~10 min on a new machine).
RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
export RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
# Incremental compilation only costs here: prune_stale_builds drops its cache at each start.
export CARGO_INCREMENTAL=0
step "the crate graph: no Kubernetes client in api, runtime or build; no wasmtime in api"
# A workspace build unifies features (the controller's kube has a client), so the layers are
# checked on their own: their manifests, then their code compiled without the client (~1 min
# the first time, cached after).
for pkg in wasmless-api wasmless-runtime wasmless-build; do
  if cargo tree --locked -e normal -p "$pkg" --prefix none | grep -E '^kube-(client|runtime) '; then
    echo "$pkg depends on a Kubernetes client (above)" >&2
    exit 1
  fi
done
if cargo tree --locked -e normal -p wasmless-api --prefix none | grep -E '^wasmtime '; then
  echo "wasmless-api depends on wasmtime (above)" >&2
  exit 1
fi
cargo check --locked -p wasmless-api -p wasmless-runtime -p wasmless-build
# The Go builds (~10 min on a new machine, nothing once cached) run beside the Rust ones: each
# leaves the cores idle at times (cargo's serial crates and links, Go's module downloads).
step "Kubernetes binaries, in the background: etcd, kube-apiserver, kube-controller-manager, a node's, kubectl, helm (built once from the Go module proxy, cached)"
k8s_log="${TMPDIR:-/tmp}/wasmless-k8s-binaries.log"
scripts/k8s-binaries.sh --node >"$k8s_log" 2>&1 &
k8s_pid=$!
# The real-node suite's builder image starts from a Debian root filesystem (mmdebstrap, ~2.5 min
# alone on a new machine, mostly waiting on disk and network): made beside the Go builds, at low
# priority; the images step below waits on its lock.
step "the builder image's Debian root filesystem, in the background"
base_log="${TMPDIR:-/tmp}/wasmless-builder-base.log"
scripts/images.sh --builder-base >"$base_log" 2>&1 &
step "toolchains of the source runtimes (go, nodejs, python, rust, c)"
apt_install openssl
scripts/toolchains.sh
command -v kubectl >/dev/null || { echo "kubectl is missing: the Kubernetes suite drives the real kubectl" >&2; exit 1; }
step "cargo build, with clippy -D warnings: the binaries the end-to-end suites start"
# `cargo test` builds a package's binaries only for that package's own integration tests, and the
# suites in tests/ start the controller's, the runtime's and the CLI's.
cargo build --locked --workspace --bins
# The real-node suite's first step, ~20 min of toolchain installs on a new machine: started here,
# beside the Go builds, it is done (or under way) when that suite asks for the same images
# (scripts/images.sh holds a lock: the suite's call waits, then finds them built). Its own call
# reports any failure.
step "images for the real-node suite, in the background (host, controller, builder)"
images_log="${TMPDIR:-/tmp}/wasmless-images.log"
scripts/images.sh --profile debug --skip-build --builder >"$images_log" 2>&1 &
images_pid=$!
step "cargo test, with clippy -D warnings: building the unit and end-to-end suites"
cargo test --locked --workspace --no-run
step "Kubernetes binaries: waiting for the background build"
if ! wait "$k8s_pid"; then
  cat "$k8s_log" >&2
  echo "scripts/k8s-binaries.sh --node failed (above)" >&2
  exit 1
fi
WASMLESS_K8S_BIN=$(tail -n 1 "$k8s_log")
export WASMLESS_K8S_BIN
logs=${TMPDIR:-/tmp}
# The real-node suite mostly waits (on pods, and on builds inside the node): it runs beside the
# other suites, which listen on free loopback ports, never the node's fixed ones
# (tests/realnode/up.sh) or its addresses.
step "cargo test: the real-node suite, in the background (its output follows the others')"
# (--workspace in every invocation: the features cargo unifies, hence the builds, stay the ones
# --no-run made.)
cargo test --locked --workspace --test realnode >"$logs/wasmless-test-realnode.log" 2>&1 &
realnode_pid=$!
step "cargo test: every other suite"
suites=()
for f in tests/tests/*.rs; do
  name=$(basename "$f" .rs)
  [ "$name" = realnode ] || suites+=(--test "$name")
done
rc=0
{
  cargo test --locked --workspace --lib --bins &&
    cargo test --locked --workspace "${suites[@]}" &&
    cargo test --locked --workspace --doc
} 2>&1 | tee "$logs/wasmless-test.log" || rc=$?
step "cargo test: waiting for the real-node suite"
# Waited for even when a suite failed: it takes the node down (and undoes its host changes) itself.
realnode_rc=0
wait "$realnode_pid" || realnode_rc=$?
wait "$images_pid" || true # (its failure is the suite's: it ran the same command)
cat "$logs/wasmless-test-realnode.log"
# The closing line counts every suite's tests.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' \
  "$logs/wasmless-test.log" "$logs/wasmless-test-realnode.log"
[ "$rc" = 0 ] || { echo "a suite failed (above)" >&2; exit "$rc"; }
[ "$realnode_rc" = 0 ] || { echo "the real-node suite failed (above)" >&2; exit "$realnode_rc"; }
