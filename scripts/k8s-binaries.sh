#!/usr/bin/env bash
# Builds real Kubernetes binaries from the Go module proxy, into a cache outside the repository:
#   ${WASMLESS_K8S_DIR:-$HOME/.cache/wasmless/k8s/<version>-<recipe>}/bin/
#   scripts/k8s-binaries.sh          etcd, kube-apiserver, kube-controller-manager (the API-server suites)
#   scripts/k8s-binaries.sh --node   also what a real node and an install need: kube-scheduler,
#                                    kubelet, kube-proxy, kubectl, CoreDNS, crictl and helm
# The last line of stdout is that bin directory (bin=$(scripts/k8s-binaries.sh | tail -1));
# progress goes to stderr. When every binary asked for is already there it returns at once.
#
# How: one generated go.mod (in the cache, never in the repo) requires k8s.io/kubernetes at a pinned
# v1.N.P, replaces each staging module (the k8s.io/* it lists as v0.0.0) with its v0.N.P release,
# and also requires etcd (go.etcd.io/etcd/server/v3, whose root is the etcd main package), helm and
# CoreDNS at versions built on the same Kubernetes minor: one module graph, so the packages they
# share (client-go, apimachinery, grpc, protobuf, otel: ~1,600 of ~4,500) compile once, and one
# `go build` links every binary. etcd is taken from Debian's etcd-server when the proxy cannot
# serve it. crictl, whose served versions do not build against this client-go, has a module of its
# own with the non-Kubernetes modules pinned at the main build's versions (their packages are
# reused).
#
# Environment:
#   WASMLESS_K8S_VERSION   kubernetes version to build (default: first of K8S_CANDIDATES the proxy serves)
#   WASMLESS_ETCD_VERSION  etcd version (default below)
#   WASMLESS_K8S_DIR       output directory (default ~/.cache/wasmless/k8s/<kubernetes version>-<recipe>)
#   WASMLESS_GOTOOLCHAIN   GOTOOLCHAIN for the builds (default auto: a newer Go is fetched from the
#                          module proxy only when a go.mod asks for one)
set -euo pipefail

# Pinned versions, newest first; later ones are used only if the proxy cannot serve an earlier one.
K8S_CANDIDATES=(v1.35.8 v1.35.4 v1.34.4 v1.33.13)
ETCD_VERSION="${WASMLESS_ETCD_VERSION:-v3.6.16}"
# the newest releases on the Kubernetes minor above (client-go v0.35): helm v3.21 and CoreDNS v1.15
# are on v0.36 and v0.37, and would compile a second Kubernetes client
COREDNS_VERSION=v1.14.7
CRICTL_VERSION=v1.34.0 # v1.35.0 is not served by the proxy
HELM_VERSION=v3.20.2
BINARIES=(etcd kube-apiserver kube-controller-manager)
NODE_K8S=(kube-scheduler kubelet kube-proxy kubectl)
NODE=0
[ "${1:-}" = "--node" ] && { NODE=1; BINARIES+=("${NODE_K8S[@]}" coredns crictl helm); }

if [ -n "${WASMLESS_K8S_VERSION:-}" ]; then K8S_CANDIDATES=("$WASMLESS_K8S_VERSION"); fi

# (the directory is named after every pinned version and the recipe, so a change builds anew)
RECIPE=$(echo "$ETCD_VERSION $COREDNS_VERSION $CRICTL_VERSION $HELM_VERSION one-module" | sha256sum | cut -c1-8)
dir_for() { echo "${WASMLESS_K8S_DIR:-$HOME/.cache/wasmless/k8s/$1-$RECIPE}"; }
complete() { local b; for b in "${BINARIES[@]}"; do [ -x "$1/bin/$b" ] || return 1; done; }

# Fast path: no network, no go command.
for v in "${K8S_CANDIDATES[@]}"; do
  if complete "$(dir_for "$v")"; then echo "$(dir_for "$v")/bin"; exit 0; fi
done

exec 3>&1 1>&2 # everything below is progress on stderr; the result goes to fd 3
. "$(dirname "$0")/lib.sh" # apt_install
log() { echo "k8s-binaries: $*" >&2; }
# quiet CMD...: runs CMD with its output in a log that is shown only when it fails.
quiet() {
  local out rc=0
  out=$(mktemp)
  "$@" >"$out" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || { log "failed ($rc): $*"; tail -n 40 "$out" >&2; }
  rm -f "$out"
  return "$rc"
}
start=$SECONDS

if ! command -v go >/dev/null 2>&1; then
  log "go is missing: installing Debian's golang-go"
  apt_install golang-go
fi
export GOTOOLCHAIN="${WASMLESS_GOTOOLCHAIN:-auto}"
export GOFLAGS="-buildvcs=false" CGO_ENABLED=0 GOWORK=off
export GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"
log "using $(go version)"

# Pick the kubernetes version: the first candidate whose module (and go.mod) the proxy serves.
K8S_VERSION=""
for v in "${K8S_CANDIDATES[@]}"; do
  log "resolving k8s.io/kubernetes@$v"
  if json=$(go mod download -json "k8s.io/kubernetes@$v" 2>&1); then
    K8S_VERSION=$v
    K8S_GOMOD=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p' <<<"$json")
    [ -n "$K8S_GOMOD" ] || K8S_GOMOD="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$v.mod"
    break
  fi
  log "  cannot download k8s.io/kubernetes@$v: $(grep -m1 -E '"Error"|error|go:' <<<"$json" || true)"
done
[ -n "$K8S_VERSION" ] || { log "no kubernetes version of ${K8S_CANDIDATES[*]} could be downloaded"; exit 1; }
STAGING_VERSION="v0.${K8S_VERSION#v1.}" # v1.35.8 -> v0.35.8

OUT=$(dir_for "$K8S_VERSION")
mkdir -p "$OUT/bin" "$OUT/build"
exec 9>"$OUT/.lock"
flock 9 # one build at a time per output directory
if complete "$OUT"; then echo "$OUT/bin" >&3; exit 0; fi

# ---------------------------------------------------------------- the Go module
# gen_gomod DIR: the module every binary but crictl is built in
gen_gomod() {
  local staging
  staging=$(awk '/^require \($/{r=1; next} r && /^\)$/{r=0} r && $1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$K8S_GOMOD")
  [ -n "$staging" ] || { log "found no staging modules in $K8S_GOMOD"; return 1; }
  {
    echo "// Generated by wasmless scripts/k8s-binaries.sh: builds k8s.io/kubernetes $K8S_VERSION binaries and the tools beside them."
    echo "module wasmless.local/k8s-build"
    echo
    grep -E '^(go|godebug) ' "$K8S_GOMOD" # same Go language version and GODEBUG defaults as upstream
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for m in $staging; do echo "	$m => $m $STAGING_VERSION"; done
    echo ")"
  } >"$1/go.mod"
  log "kubernetes $K8S_VERSION with $(wc -w <<<"$staging") staging modules at $STAGING_VERSION (go.mod in $1)"
}

# CoreDNS with only the plugins a test cluster's Corefile uses (tests/realnode/up.sh): the default
# build compiles every cloud provider's SDK (5.5 min here).
coredns_main() {
  mkdir -p "$1/coredns"
  cat >"$1/coredns/main.go" <<'GO'
// Generated by wasmless scripts/k8s-binaries.sh: CoreDNS with the plugins of a test cluster.
package main

import (
	_ "github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/template"
)

func main() { coremain.Run() }
GO
}

etcd_from_debian() {
  log "installing Debian's etcd-server"
  apt_install --no-install-recommends etcd-server
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # The package starts a system etcd on the default ports; a test harness wants its own.
  $sudo systemctl disable --now etcd >/dev/null 2>&1 || true
  cp -f "$(command -v etcd || echo /usr/bin/etcd)" "$OUT/bin/etcd"
}

b="$OUT/build/main"
rm -rf "$b" && mkdir -p "$b/out"
gen_gomod "$b"
cd "$b"
# binary name -> package; `go build -o DIR` names each binary after its package's last element
# (go.etcd.io/etcd/server/v3 -> server)
declare -A pkg=()
for c in kube-apiserver kube-controller-manager; do pkg[$c]=k8s.io/kubernetes/cmd/$c; done
if [ "$NODE" = 1 ]; then
  for c in "${NODE_K8S[@]}"; do pkg[$c]=k8s.io/kubernetes/cmd/$c; done
  pkg[helm]=helm.sh/helm/v3/cmd/helm
  pkg[coredns]=./coredns
  coredns_main "$b"
fi
log "resolving dependencies"
# each command's package (not only its module) so that its own dependencies land in go.sum
gets=()
for c in "${!pkg[@]}"; do
  case $c in
    helm) gets+=("${pkg[$c]}@$HELM_VERSION") ;;
    coredns) gets+=("github.com/coredns/coredns@$COREDNS_VERSION") ;;
    *) gets+=("${pkg[$c]}@$K8S_VERSION") ;;
  esac
done
quiet go get "${gets[@]}"
if [ ! -x "$OUT/bin/etcd" ]; then
  if quiet go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"; then
    pkg[etcd]=go.etcd.io/etcd/server/v3
    echo "etcd: go.etcd.io/etcd/server/v3@$ETCD_VERSION (built from the Go module proxy)" >"$OUT/etcd.source"
  else
    log "etcd $ETCD_VERSION is not served by the module proxy; falling back to Debian"
    etcd_from_debian
    echo "etcd: Debian etcd-server $(dpkg-query -W -f='${Version}' etcd-server 2>/dev/null || echo '?')" >"$OUT/etcd.source"
  fi
fi
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
x="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  x+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  x+=" -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done
missing=()
for c in "${!pkg[@]}"; do [ -x "$OUT/bin/$c" ] || missing+=("$c"); done
if [ "${#missing[@]}" -gt 0 ]; then
  log "building ${missing[*]} (slow on a cold cache: 10-25 minutes)"
  pkgs=()
  for c in "${missing[@]}"; do pkgs+=("${pkg[$c]}"); done
  # (-X of a package a binary does not link is ignored: one set of flags serves them all)
  go build -trimpath -ldflags="-s -w $x" -o out/ "${pkgs[@]}"
  for c in "${missing[@]}"; do
    p=${pkg[$c]}
    [[ ! $p =~ /v[0-9]+$ ]] || p=${p%/*}
    mv -f "out/${p##*/}" "$OUT/bin/$c"
  done
fi

# crictl: v1.34's exec does not build against client-go v0.35 (v1.35 is not served), so it has a
# module of its own; the modules it shares with the main one that are not Kubernetes' own are
# required at the main module's versions, and their compiled packages are reused.
if [ "$NODE" = 1 ] && [ ! -x "$OUT/bin/crictl" ]; then
  mapfile -t shared < <(go list -m -f '{{if not .Main}}-require={{.Path}}@{{.Version}}{{end}}' all |
    grep -E '^-require=(golang\.org/x/|google\.golang\.org/|go\.opentelemetry\.io/|github\.com/(prometheus|gogo|golang|google|spf13|sirupsen|opencontainers|json-iterator|modern-go|fxamacker|cespare|beorn7|davecgh|go-logr|munnerz|pkg|emicklei|moby)/)')
  c="$OUT/build/crictl"
  mkdir -p "$c"
  printf '// Generated by wasmless scripts/k8s-binaries.sh.\nmodule wasmless.local/crictl-build\n\ngo 1.26\n' >"$c/go.mod"
  log "building crictl $CRICTL_VERSION"
  (cd "$c" && go mod edit "${shared[@]}" && quiet go get "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" &&
    go build -trimpath -ldflags="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
      -o out/crictl sigs.k8s.io/cri-tools/cmd/crictl && mv -f out/crictl "$OUT/bin/crictl")
fi
cd /

{
  echo "kubernetes: k8s.io/kubernetes@$K8S_VERSION, staging modules @$STAGING_VERSION"
  cat "$OUT/etcd.source" 2>/dev/null || true
  [ "$NODE" = 0 ] || echo "coredns: $COREDNS_VERSION, crictl: $CRICTL_VERSION, helm: $HELM_VERSION"
  echo "go: $(go version)"
} >"$OUT/VERSIONS"
rm -rf "$OUT/build" # the go.mod files are cheap to regenerate; the Go caches keep the real work
complete "$OUT" || { log "binaries are missing in $OUT/bin"; exit 1; }
log "done in $((SECONDS - start))s:"
sed 's/^/  /' "$OUT/VERSIONS" >&2
echo "$OUT/bin" >&3
