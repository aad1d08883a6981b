#!/usr/bin/env bash
# The container images of wasmless-host and wasmless-controller (and, with --builder,
# wasmless-builder: the builder with the source runtimes' toolchains), as OCI archives.
#   ./scripts/images.sh [--profile release|debug] [--skip-build] [--out DIR] [--force] [--builder]
#
# Each image is assembled from scratch with Debian's buildah (installed when missing), in a
# storage of its own under ~/.cache/wasmless/buildah; nothing is ever pulled. The two slim ones
# hold the binary, stripped of debug info, at /usr/local/bin/, the shared libraries it links
# (from ldd, at their paths) and the dynamic loader, /etc/passwd and /etc/group with the user
# nonroot (65532:65532, which the image runs as), /etc/nsswitch.conf, /tmp (1777) and the
# binary's writable default directory owned by nonroot (/var/cache/wasmless for the host,
# /var/lib/wasmless for the controller). No shell, no CA certificates.
#
# wasmless-builder (--builder; needs root and the package registries): a Debian root filesystem
# made by mmdebstrap from this machine's Debian sources (essential packages plus clang-16,
# lld-16, wasi-libc, libclang-rt-16-dev-wasm32, nodejs, npm, python3, python3-venv; no
# recommends, docs, man pages or locales), Go from the Go module proxy
# (golang.org/toolchain@v0.0.1-<GO_TOOLCHAIN>.<os>-<arch>) as /usr/local/go, and the same
# wasmless-builder binary. Its toolchains are installed by the builder itself: it builds the
# first example of functions/{c,go,nodejs,python}/functions.yaml in a chroot, online, so that
# componentize-py (PyPI), componentize-js and esbuild (npm, the builder's lockfile) and Go's
# standard library for wasip1 land in /opt/wasmless, read-only at run time ($WASMLESS_CACHE,
# $WASMLESS_NODE_TOOLCHAIN, $GOCACHE in the image's environment). Then it builds the second
# example of each as nonroot, on a read-only root, with no network, and fails if one does not
# build. No rust: bookworm's rustc 1.63 cannot compile the builder's glue crate (edition 2024).
# Node 18 is Debian's: npm leaves out native packages of componentize-js's tree that declare
# node >= 20, so the script adds the ones the builder's lockfile pins (see node_toolchain).
# The Debian root filesystem and Go are kept in ~/.cache/wasmless/builder/base (rebuilt when
# the package list, the sources or Go's version change; Debian updates need --force), npm's and
# pip's downloads in ~/.cache/wasmless/builder/{npm,pip}.
#
# Names: localhost/wasmless/<image>:<version> and :<version>-<commit>[-dirty], the version from
# the workspace Cargo.toml, the commit from git (-dirty with uncommitted changes to tracked
# files). Both are in the archive DIR/<image>-<version>.tar, an OCI layout (index.json with
# org.opencontainers.image.ref.name and io.containerd.image.name) plus Docker's manifest.json:
#   ctr -n k8s.io images import FILE | podman load -i FILE | docker load -i FILE
# An archive is rebuilt only when its inputs changed (binary, libraries or root filesystem,
# names, this script): their sha256 is kept in FILE.stamp. On stdout, one line per name:
# IMAGE ARCHIVE.
#
#   --profile release  (default) cargo build --release --locked -p <package> --bin <binary>
#   --profile debug    the debug binaries: cargo build --locked --workspace --bins, the
#                      command scripts/test.sh runs, so after the suite it builds nothing
#   --skip-build       use the binaries already in $CARGO_TARGET_DIR/<profile>/
#   --out DIR          where the archives go (default ~/.cache/wasmless/images)
#   --force            rebuild the archives (and the builder's Debian root) even when their
#                      inputs did not change
#   --builder          also build wasmless-builder (~10 min the first time, ~1.5 GB uncompressed)
#   --builder-base     only the builder's Debian root filesystem and Go (no binary needed:
#                      scripts/test.sh starts it before any Rust build, beside the Go builds)
#   --check-builds     with --builder: when its toolchains are installed, also build a second
#                      example of each runtime offline, as nonroot, on a read-only root (as in a
#                      pod; the real-node suite builds in a pod instead, so it does not ask)
# Environment: CARGO_TARGET_DIR (scripts/lib.sh), WASMLESS_IMAGE_SOURCE (the
# org.opencontainers.image.source label; default: git remote origin), SOURCE_DATE_EPOCH (the
# image's creation time instead of now).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SCRIPT=$REPO/scripts/images.sh

PROFILE=release BUILD=1 FORCE=0 OUT="" BUILDER=0 CHECK_BUILDS=0 BASE_ONLY=0
while [ $# -gt 0 ]; do
  case $1 in
    --profile) PROFILE=${2:?--profile needs release or debug}; shift 2 ;;
    --profile=*) PROFILE=${1#*=}; shift ;;
    --skip-build) BUILD=0; shift ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --force) FORCE=1; shift ;;
    --builder) BUILDER=1; shift ;;
    --builder-base) BASE_ONLY=1 BUILD=0; shift ;;
    --check-builds) CHECK_BUILDS=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed -E 's/^# ?//'; exit 0 ;;
    *) echo "images.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case $PROFILE in release|debug) ;; *) echo "images.sh: --profile is release or debug, not $PROFILE" >&2; exit 2 ;; esac

. scripts/lib.sh
CACHE=$HOME/.cache/wasmless
OUT=$(realpath -m "${OUT:-$CACHE/images}")
BUILDAH_DIR=$CACHE/buildah
REGISTRY=localhost/wasmless
NONROOT=65532

log() { printf '[images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
BUILDAH() { buildah --root "$BUILDAH_DIR/root" --runroot "$BUILDAH_DIR/runroot" --storage-driver vfs "$@"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }

# ---------------------------------------------------------------------------------- tools, names
command -v buildah >/dev/null || { log "installing buildah (Debian)"; apt_install buildah; }
{ command -v objcopy && command -v readelf; } >/dev/null || apt_install binutils
command -v python3 >/dev/null || apt_install python3
command -v ldd >/dev/null || die "ldd is missing (Debian's libc-bin)"

VERSION=$(awk '/^\[workspace\.package\]/ { p = 1; next } /^\[/ { p = 0 }
  p && $1 == "version" { gsub(/"/, "", $3); print $3; exit }' Cargo.toml)
LICENSE=$(awk '/^\[workspace\.package\]/ { p = 1; next } /^\[/ { p = 0 }
  p && $1 == "license" { gsub(/"/, "", $3); print $3; exit }' Cargo.toml)
[ -n "$VERSION" ] || die "no version in [workspace.package] of Cargo.toml"
REVISION=$(git rev-parse HEAD)
COMMIT=$(git rev-parse --short HEAD)
# Tracked files only (untracked ones are not built); no index refresh written (shared tree).
[ -z "$(GIT_OPTIONAL_LOCKS=0 git status --porcelain --untracked-files=no)" ] || COMMIT=$COMMIT-dirty
SOURCE=${WASMLESS_IMAGE_SOURCE:-$(git remote get-url origin 2>/dev/null | sed -E 's#://[^/@]+@#://#' || true)}
[ -n "$SOURCE" ] || log "no git remote origin: label org.opencontainers.image.source left out (set WASMLESS_IMAGE_SOURCE)"
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
  CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
else
  CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
fi

# ------------------------------------------------------------------------- the builder's toolchains
# Debian's suite and packages (the suite must be the one this machine's apt sources name).
DEBIAN_SUITE=bookworm
BUILDER_PACKAGES=(mawk ca-certificates clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32
  nodejs npm python3 python3-venv)
# Go from the Go module proxy, as GOTOOLCHAIN would fetch it (bookworm's golang is 1.19; wasip1
# needs 1.21).
GO_TOOLCHAIN=go1.26.8
# The runtimes whose toolchains the image carries (rust: bookworm's rustc 1.63 predates edition
# 2024, which the glue crate builder/src/builders/rust/wasmless uses, and wasm32-wasip1).
BUILDER_RUNTIMES=(c go nodejs python)
# Pre-installed toolchains, read-only, under no path the chart mounts over: Python's venv and
# WIT under $WASMLESS_CACHE/toolchains/python, Node's packages and WIT in
# $WASMLESS_NODE_TOOLCHAIN, Go's standard library compiled for wasip1 in $GOCACHE (Go builds
# when it cannot write there, but fails with "package fmt is not in std" when it cannot add to
# its package index there: goindex=0 turns that index off). HOME is /tmp, the one directory a
# read-only pod can write: the tools keep caches of their own there (npm's, pip's).
BUILDER_TOOLCHAINS=/opt/wasmless
BUILDER_ENV=(
  PATH=/usr/local/go/bin:/usr/local/bin:/usr/bin:/bin
  GOROOT=/usr/local/go
  GOCACHE=$BUILDER_TOOLCHAINS/toolchains/go-build
  GODEBUG=goindex=0
  WASMLESS_CACHE=$BUILDER_TOOLCHAINS
  WASMLESS_NODE_TOOLCHAIN=$BUILDER_TOOLCHAINS/toolchains/nodejs
  HOME=/tmp
  TMPDIR=/tmp
)
BUILDER_CACHE=$CACHE/builder
# where wasmless-controller lives in the builder's root filesystem while it checks the builds
WARM_BIN=/opt/wasmless-warm
# The builders: their build scripts and lockfiles pin what the toolchains install.
BUILDERS_DIR=builder/src/builders

# image IMAGE: sets BIN (the binary, the entrypoint), PKG (its package), BASE (scratch: the
# binary and its libraries; debian: the builder's root filesystem), PORTS, DIRS (owned by
# nonroot), ENVS (KEY=VALUE, PATH among them) of that image
image() {
  local path_env=PATH=/usr/local/bin:/usr/bin:/bin
  DESC="" CREATED_BY="scripts/images.sh: $1, its libraries, /etc/passwd, /etc/group"
  case $1 in
    wasmless-host) BIN=wasmless-host PKG=wasmless-host BASE=scratch PORTS="8080 9090"
      DIRS=/var/cache/wasmless ENVS=("$path_env") ;;
    wasmless-controller) BIN=wasmless-controller PKG=wasmless-controller BASE=scratch PORTS=8090
      DIRS=/var/lib/wasmless ENVS=("$path_env" WASMLESS_STORE=/var/lib/wasmless) ;;
    wasmless-builder) BIN=wasmless-builder PKG=wasmless-builder BASE=debian PORTS=8091
      DIRS=/var/lib/wasmless-builder ENVS=(WASMLESS_BUILDER_STATE=/var/lib/wasmless-builder "${BUILDER_ENV[@]}")
      DESC="wasmless-builder with the toolchains of its $(IFS=,; echo "${BUILDER_RUNTIMES[*]}" | sed 's/,/, /g') runtimes (Debian $DEBIAN_SUITE, Go ${GO_TOOLCHAIN#go})"
      CREATED_BY="scripts/images.sh: Debian $DEBIAN_SUITE (mmdebstrap), Go $GO_TOOLCHAIN, wasmless-builder, the builders' toolchains" ;;
    *) die "unknown image $1" ;;
  esac
}
# the binaries (each image is named after its binary); the builder image's toolchains are
# installed through `wasmless-controller build`, which runs the builder as `wasmless up` does
BINARIES=(wasmless-host wasmless-controller)
IMAGES=("${BINARIES[@]}")
[ "$BUILDER" = 0 ] || { IMAGES+=(wasmless-builder); BINARIES+=(wasmless-builder); }

# ---------------------------------------------------------------------------------------- build
PROFILE_DIR=$PROFILE
if [ "$BUILD" = 1 ]; then
  require_cargo
  if [ "$PROFILE" = release ]; then
    args=(--release)
    for b in "${BINARIES[@]}"; do image "$b"; args+=(-p "$PKG" --bin "$b"); done
  else
    args=(--workspace --bins)
  fi
  log "cargo build --locked ${args[*]} (cold: ~9 min in release, ~4 min in debug, on 2 cores)"
  nice -n 10 cargo build --locked "${args[@]}" >&2
fi
for b in "${BINARIES[@]}"; do
  [ "$BASE_ONLY" = 0 ] || break
  [ -x "$CARGO_TARGET_DIR/$PROFILE_DIR/$b" ] ||
    die "$CARGO_TARGET_DIR/$PROFILE_DIR/$b is missing: run without --skip-build"
done

# ------------------------------------------------------------------------------------- assemble
mkdir -p "$OUT" "$BUILDAH_DIR"
exec 9>"$BUILDAH_DIR/.lock"
flock 9
WORK=$(mktemp -d "$BUILDAH_DIR/work.XXXXXX")
CONTAINER=""
cleanup() {
  [ -z "$CONTAINER" ] || BUILDAH rm "$CONTAINER" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  rm -f "$OUT"/.*.tar.tmp.$$ "$OUT"/.*.tar.oci.$$
}
trap cleanup EXIT
# leftovers of an interrupted run (this storage is ours alone, and we hold its lock)
BUILDAH rm --all >/dev/null 2>&1 || true

# libraries BINARY: the dynamic loader and every shared library ldd resolves, one path a line
libraries() {
  local out
  out=$(ldd "$1" 2>&1) || { grep -q 'not a dynamic executable' <<<"$out" && return 0; die "ldd $1: $out"; }
  ! grep -q 'not found' <<<"$out" || die "ldd $1: a library is missing: $out"
  readelf -lW "$1" | sed -n 's/.*Requesting program interpreter: \(.*\)]$/\1/p'
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"
}

# ------------------------------------------------------------------------------ the builder image
# debian_sources: this machine's enabled apt sources of $DEBIAN_SUITE and its -updates and
# -security suites, one-line format (other repositories are left out)
debian_sources() {
  python3 - "$DEBIAN_SUITE" /etc/apt/sources.list /etc/apt/sources.list.d/* <<'PY'
import re, sys

suite, files = sys.argv[1], sys.argv[2:]
ours = re.compile(r"^%s(-updates|-security)?$" % re.escape(suite))
out = []
def add(uri, suites, components, signed_by):
    for s in suites:
        if ours.match(s):
            opt = f"[signed-by={signed_by}] " if signed_by else ""
            out.append(f"deb {opt}{uri} {s} {' '.join(components)}")
for path in files:
    try:
        text = open(path).read()
    except (IsADirectoryError, FileNotFoundError):
        continue
    if path.endswith(".sources"):
        for para in re.split(r"\n\s*\n", text):
            f = {}
            for line in para.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                k, v = line.split(":", 1)
                f[k.strip().lower()] = v.strip()
            if f.get("enabled", "yes").lower() == "no" or "deb" not in f.get("types", "").split():
                continue
            for uri in f.get("uris", "").split():
                add(uri, f.get("suites", "").split(), f.get("components", "").split(), f.get("signed-by"))
    elif path.endswith(".list"):
        for line in text.splitlines():
            m = re.match(r"^\s*deb\s+(\[(?P<opts>[^\]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)\s+(?P<comp>.*)$", line)
            if m:
                opts = dict(o.split("=", 1) for o in (m["opts"] or "").split() if "=" in o)
                add(m["uri"], [m["suite"]], m["comp"].split(), opts.get("signed-by"))
if not out:
    sys.exit(f"no apt source of {suite} in /etc/apt/sources.list*")
print("\n".join(dict.fromkeys(out)))
PY
}

# builder_base: the Debian root filesystem with Go as /usr/local/go, kept in $BUILDER_BASE and
# made again when its inputs change (they are hashed into $BUILDER_BASE_KEY)
builder_base() {
  [ -z "${BUILDER_BASE_KEY:-}" ] || return 0
  [ "$(id -u)" = 0 ] || die "wasmless-builder needs root (mmdebstrap and chroot)"
  command -v mmdebstrap >/dev/null || { log "installing mmdebstrap (Debian)"; apt_install mmdebstrap; }
  local arch sources
  arch=$(dpkg --print-architecture)
  sources=$(debian_sources) || die "no Debian $DEBIAN_SUITE apt source on this machine"
  BUILDER_BASE=$BUILDER_CACHE/base
  BUILDER_BASE_KEY=$({
    declare -f builder_base debian_sources
    echo "suite $DEBIAN_SUITE arch $arch packages ${BUILDER_PACKAGES[*]} go $GO_TOOLCHAIN"
    echo "$sources"
    mmdebstrap --version
  } | sha256sum | cut -d' ' -f1)
  if [ "$FORCE" = 0 ] && [ -d "$BUILDER_BASE" ] && [ "$(cat "$BUILDER_BASE.key" 2>/dev/null)" = "$BUILDER_BASE_KEY" ]; then
    log "wasmless-builder: Debian root filesystem up to date ($BUILDER_BASE)"
    return 0
  fi
  local t=$EPOCHREALTIME tmp=$BUILDER_CACHE/base.tmp logfile=$BUILDER_CACHE/logs/mmdebstrap.log
  mkdir -p "$BUILDER_CACHE/logs"
  rm -rf "$tmp" "$BUILDER_BASE" "$BUILDER_BASE.key"
  log "wasmless-builder: Debian $DEBIAN_SUITE root filesystem (mmdebstrap --variant=essential --include=${BUILDER_PACKAGES[*]})"
  local includes
  includes=$(IFS=,; echo "${BUILDER_PACKAGES[*]}")
  # merged /usr the debootstrap way (usr-is-merged): the usrmerge package would pull in Perl
  nice -n 10 mmdebstrap --mode=root --variant=essential --format=directory --quiet \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='APT::Install-Recommends "false"' --aptopt='APT::Install-Suggests "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --include="$includes" "$DEBIAN_SUITE" "$tmp" - <<<"$sources" >"$logfile" 2>&1 ||
    { tail -n 40 "$logfile" >&2; die "mmdebstrap failed (above; all of it in $logfile)"; }
  # what a container runtime provides, and what only the making of the root filesystem left
  rm -rf "$tmp/etc/hostname" "$tmp/etc/resolv.conf" "$tmp/var/log/apt" "$tmp"/var/log/*.log \
    "$tmp"/var/cache/debconf/*-old "$tmp"/var/lib/dpkg/*-old "$tmp"/var/cache/apt/* "$tmp"/var/lib/apt/lists/*

  # Go: the golang.org/toolchain module (what GOTOOLCHAIN downloads), its directory is a GOROOT
  command -v go >/dev/null || { log "installing Debian's golang-go (to download Go modules)"; apt_install golang-go; }
  local module=golang.org/toolchain@v0.0.1-$GO_TOOLCHAIN.linux-$arch godir
  log "wasmless-builder: $module (Go module proxy)"
  godir=$(GOMODCACHE=$BUILDER_CACHE/gomodcache GOFLAGS=-modcacherw GOTOOLCHAIN=local GO111MODULE=on \
    go mod download -json "$module" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') ||
    die "go mod download $module failed"
  cp -r "$godir" "$tmp/usr/local/go"
  chown -R 0:0 "$tmp/usr/local/go"
  chmod -R u+w,go-w,a+rX "$tmp/usr/local/go"
  # module zips keep no execute bits: set them as the go command does on a downloaded toolchain
  find "$tmp/usr/local/go/pkg/tool" "$tmp/usr/local/go/bin" -type f -exec chmod a+x {} +
  find "$tmp/usr/local/go/lib" -type f -name 'go_?*_?*_exec' -exec chmod a+x {} +
  [ "$(chroot "$tmp" /usr/bin/env -i GOROOT=/usr/local/go HOME=/nonexistent /usr/local/go/bin/go env GOVERSION 2>/dev/null)" = "$GO_TOOLCHAIN" ] ||
    die "$module: not $GO_TOOLCHAIN"

  mv "$tmp" "$BUILDER_BASE"
  echo "$BUILDER_BASE_KEY" >"$BUILDER_BASE.key"
  log "wasmless-builder: root filesystem in $(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s, $(mb "$(du -sb "$BUILDER_BASE" | cut -f1)")"
}

# example RUNTIME N: the Nth manifest of functions/RUNTIME/functions.yaml
example() {
  awk -v n="$2" 'BEGIN { d = 1 } /^---/ { d++; next } d == n' "functions/$1/functions.yaml"
}

# builder_run ROOT online|offline COMMAND...: COMMAND in the root filesystem ROOT, in a mount
# namespace of its own (/proc, /dev, the examples at /mnt). online: as root, with the network,
# HOME and the package managers' caches under /tmp/warm. offline: as nonroot, no network (a
# network namespace with nothing in it), the root read-only and a tmpfs /tmp, as in a pod.
builder_run() {
  local root=$1 mode=$2; shift 2
  local ns=(--mount --propagation private --fork) env=("${BUILDER_ENV[@]}") user=""
  if [ "$mode" = online ]; then
    env+=(HOME=/tmp/warm/home TMPDIR=/tmp/warm/tmp CARGO_HOME=/tmp/warm/cargo
      npm_config_cache=/tmp/warm/npm PIP_CACHE_DIR=/tmp/warm/pip
      WASMLESS_BUILDER_STATE=/tmp/warm/state)
    # the machine's certificate authorities (stand in for the image's while it installs: a
    # TLS-inspecting proxy this machine trusts), and its proxy settings
    local ca=/etc/ssl/certs/ca-certificates.crt v
    env+=(SSL_CERT_FILE=$ca NODE_EXTRA_CA_CERTS=$ca PIP_CERT=$ca REQUESTS_CA_BUNDLE=$ca)
    for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
      [ -z "${!v:-}" ] || env+=("$v=${!v}")
    done
  else
    ns+=(--net) user=--userspec=$NONROOT:$NONROOT
    env+=(WASMLESS_BUILDER_STATE=/tmp/state)
  fi
  nice -n 10 unshare "${ns[@]}" bash -euo pipefail -c '
    root=$1 mode=$2 examples=$3 caches=$4 user=$5; shift 5
    if [ "$mode" = offline ]; then
      mount --bind "$root" "$root"
      mount -o remount,bind,ro "$root"
      mount -t tmpfs -o mode=1777,size=2g tmpfs "$root/tmp"
      # loopback only: wasmless-controller build reaches its wasmless-builder child there
      ip link set lo up
    else
      mount --bind "$caches/npm" "$root/tmp/warm/npm"
      mount --bind "$caches/pip" "$root/tmp/warm/pip"
      mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
      [ ! -f /etc/ssl/certs/ca-certificates.crt ] ||
        mount --bind /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    fi
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --bind "$examples" "$root/mnt"
    mount -o remount,bind,ro "$root/mnt"
    umask 022
    exec chroot $user "$root" /usr/bin/env -i "$@"
  ' _ "$root" "$mode" "$WORK/examples" "$BUILDER_CACHE" "$user" "${env[@]}" "$@"
}

# script_var RUNTIME NAME: a variable's value in $BUILDERS_DIR/RUNTIME/build.sh
script_var() { sed -n "s/^$2=//p" "$BUILDERS_DIR/$1/build.sh"; }

# wit_dir CRATE: the WIT directory of CRATE in the cargo registry
wit_dir() { ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$1"/wit 2>/dev/null | head -n 1; }

# node_toolchain ROOT: what nodejs/build.sh installs on its first build (npm ci of its lockfile
# into $WASMLESS_NODE_TOOLCHAIN, and its stamp), plus the native packages the lockfile pins for
# this platform that npm leaves out on Debian's Node 18: optional, they declare engines node >= 20
# (the oxc-parser, oxc-minify, rolldown and jco-node-fs bindings), and componentize-js fails
# without them ("Cannot find module '@oxc-parser/binding-linux-x64-gnu'"); on 18 they work.
node_toolchain() {
  local root=$1 tc=$BUILDER_TOOLCHAINS/toolchains/nodejs src=$BUILDERS_DIR/nodejs missing stamp
  stamp=.installed-componentize-js-$(script_var nodejs COMPONENTIZE_JS_VERSION)-esbuild-$(script_var nodejs ESBUILD_VERSION)-preview2-shim-$(script_var nodejs PREVIEW2_SHIM_VERSION)-$(cat "$src/toolchain.package.json" "$src/toolchain.package-lock.json" | sha256sum | cut -c1-12)
  mkdir -p "$root$tc"
  cp "$src/toolchain.package.json" "$root$tc/package.json"
  cp "$src/toolchain.package-lock.json" "$root$tc/package-lock.json"
  local npmlog=$BUILDER_CACHE/logs/nodejs-npm.log
  builder_run "$root" online /bin/sh -c "cd $tc && npm ci --no-audit --no-fund --loglevel=error" >"$npmlog" 2>&1 ||
    { cat "$npmlog" >&2; die "wasmless-builder: npm ci of $src/toolchain.package-lock.json failed"; }
  missing=$(python3 - "$root$tc" "$(dpkg --print-architecture)" <<'PY'
import json, os, sys

tc, arch = sys.argv[1], sys.argv[2]
cpu = {"amd64": "x64", "arm64": "arm64"}.get(arch, arch)
lock = json.load(open(os.path.join(tc, "package-lock.json")))
for path, p in lock["packages"].items():
    if path.count("node_modules/") != 1 or not p.get("optional") or not ("os" in p or "cpu" in p):
        continue
    if "linux" in p.get("os", ["linux"]) and cpu in p.get("cpu", [cpu]) and "glibc" in p.get("libc", ["glibc"]) \
            and not os.path.isdir(os.path.join(tc, path)):
        print(path.removeprefix("node_modules/") + "@" + p["version"])
PY
  )
  if [ -n "$missing" ]; then
    log "wasmless-builder: nodejs: adding what npm left out on Node 18: $(echo $missing)"
    builder_run "$root" online /bin/sh -c "cd $tc && npm install --no-save --no-audit --no-fund --loglevel=error $(echo $missing)" >>"$npmlog" 2>&1 ||
      { cat "$npmlog" >&2; die "wasmless-builder: npm install $missing failed"; }
  fi
  touch "$root$tc/$stamp"
  NODE_STAMP=$root$tc/$stamp
}

# whole_seconds ROOT: every modification time in ROOT cut to the second, as the image's layer
# keeps them, so that the offline check sees the files as a container will (what the
# toolchains cache about their files may be keyed by their times: the go command's package
# index is, hence GODEBUG=goindex=0 as well).
whole_seconds() {
  python3 - "$1" <<'PY'
import os, sys

for top, dirs, files in os.walk(sys.argv[1]):
    for name in dirs + files + ([] if top != sys.argv[1] else ["."]):
        path = os.path.join(top, name)
        st = os.lstat(path)
        if st.st_mtime_ns % 1_000_000_000:
            s = st.st_mtime_ns // 1_000_000_000 * 1_000_000_000
            os.utime(path, ns=(s, s), follow_symlinks=False)
PY
}

# builder_toolchains ROOT: installs the toolchains into ROOT by building the first example of
# each runtime there, online (the builders install what they pin); then, with --check-builds,
# builds the second example of each offline, as in a pod. Sets labels.
builder_toolchains() {
  local root=$1 rt t out crate wit
  # the WIT both scripts copy from the wasmtime-wasi-http crate (the one the host links)
  crate=$(script_var python WASI_HTTP_CRATE)
  wit=$(wit_dir "$crate")
  if [ -z "$wit" ]; then
    log "wasmless-builder: cargo fetch (for the WIT files of $crate)"
    cargo fetch --locked >&2
    wit=$(wit_dir "$crate")
  fi
  [ -n "$wit" ] || die "no WIT files of $crate in the cargo registry"
  mkdir -p "$root/tmp/warm/cargo/registry/src/crates.io/$crate" "$root/tmp/warm"/{home,tmp,npm,pip} \
    "$BUILDER_CACHE/npm" "$BUILDER_CACHE/pip" "$WORK/examples"
  cp -r "$wit" "$root/tmp/warm/cargo/registry/src/crates.io/$crate/"
  for rt in "${BUILDER_RUNTIMES[@]}"; do
    example "$rt" 1 >"$WORK/examples/$rt-1.yaml"
    example "$rt" 2 >"$WORK/examples/$rt-2.yaml"
  done

  whole_seconds "$root"
  : >"$root/etc/resolv.conf"
  mkdir -p "$BUILDER_CACHE/logs"
  # `wasmless-controller build` drives the image's wasmless-builder (on PATH) for the checks
  # below, from a directory removed before the layer is made.
  mkdir -p "$root$WARM_BIN"
  cp "$CARGO_TARGET_DIR/$PROFILE_DIR/wasmless-controller" "$root$WARM_BIN/"
  for rt in "${BUILDER_RUNTIMES[@]}"; do
    t=$EPOCHREALTIME
    out=$BUILDER_CACHE/logs/$rt-online.log
    [ "$rt" != nodejs ] || node_toolchain "$root"
    builder_run "$root" online "$WARM_BIN/wasmless-controller" build \
      -f "/mnt/$rt-1.yaml" --store /tmp/warm/store >"$out" 2>&1 ||
      { cat "$out" >&2; die "wasmless-builder: the $rt toolchain did not install (above)"; }
    [ "$rt" != nodejs ] || [ -f "$NODE_STAMP" ] ||
      die "wasmless-builder: nodejs/build.sh installed its toolchain again (its stamp is no longer $(basename "$NODE_STAMP")): update node_toolchain"
    log "wasmless-builder: $rt: toolchain installed, $(example "$rt" 1 | sed -n 's/^  name: //p') built in $(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
  done
  # (wizer's compiled engine is in the Node.js toolchain: nodejs/componentize.mjs)
  rm -rf "$root/tmp/warm" "$root/etc/resolv.conf" "${root:?}"/tmp/* "$root/root/.cache"
  # Node's build script locks its toolchain directory (read-only here) through $TC/.lock: a
  # link to a file in the writable /tmp
  ln -sfn /tmp/.wasmless-nodejs-toolchain.lock "$root$BUILDER_TOOLCHAINS/toolchains/nodejs/.lock"
  chmod -R a+rX "$root$BUILDER_TOOLCHAINS"
  whole_seconds "$root"

  for rt in "${BUILDER_RUNTIMES[@]}"; do
    [ "$CHECK_BUILDS" = 1 ] || break
    t=$EPOCHREALTIME
    out=$BUILDER_CACHE/logs/$rt-offline.log
    builder_run "$root" offline "$WARM_BIN/wasmless-controller" build \
      -f "/mnt/$rt-2.yaml" --store /tmp/store >"$out" 2>&1 ||
      { cat "$out" >&2; die "wasmless-builder: $rt does not build offline as nonroot on a read-only root (above)"; }
    log "wasmless-builder: $rt: $(example "$rt" 2 | sed -n 's/^  name: //p') built offline, as nonroot, read-only root, in $(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
  done
  rm -rf "${root:?}$WARM_BIN"

  local clang node python
  clang=$(chroot "$root" dpkg-query -W -f '${Version}' clang-16)
  node=$(chroot "$root" dpkg-query -W -f '${Version}' nodejs)
  python=$(chroot "$root" dpkg-query -W -f '${Version}' python3)
  labels=(
    "dev.wasmless.runtimes=${BUILDER_RUNTIMES[*]}"
    "dev.wasmless.toolchains=clang-16 $clang, $(head -n 1 "$root/usr/local/go/VERSION"), nodejs $node with componentize-js $(script_var nodejs COMPONENTIZE_JS_VERSION), python3 $python with componentize-py $(script_var python COMPONENTIZE_PY_VERSION)"
  )
}

# toolchains_layer ROOT: the installed toolchains ($BUILDER_TOOLCHAINS) into ROOT, from
# $BUILDER_CACHE/toolchains when that was installed from the same base and builders (a new
# binary alone does not install them again: ~8 minutes), else by builder_toolchains, kept there.
# Sets labels.
toolchains_layer() {
  local root=$1 key cached=$BUILDER_CACHE/toolchains
  key=$({
    echo "base $BUILDER_BASE_KEY runtimes ${BUILDER_RUNTIMES[*]} env ${BUILDER_ENV[*]}"
    declare -f builder_toolchains node_toolchain builder_run whole_seconds
    (cd "$BUILDERS_DIR" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -d' ' -f1)
  if [ "$FORCE" = 0 ] && [ -d "$cached" ] && [ "$(cat "$cached.key" 2>/dev/null)" = "$key" ]; then
    mkdir -p "$root$BUILDER_TOOLCHAINS"
    cp -a "$cached/." "$root$BUILDER_TOOLCHAINS/"
    mapfile -t labels <"$cached.labels"
    log "wasmless-builder: toolchains up to date ($cached; installed by the builders of then)"
    return 0
  fi
  # (fd 9, this script's lock, closed for the builds: a build script that unlocks an fd 9 it
  # inherited, as nodejs/build.sh does its own, would let a second images.sh in meanwhile;
  # bash keeps a close-on-exec copy, so the lock stays held.)
  builder_toolchains "$root" 9>&-
  rm -rf "$cached" "$cached.key"
  cp -a "$root$BUILDER_TOOLCHAINS" "$cached"
  printf '%s\n' "${labels[@]}" >"$cached.labels"
  echo "$key" >"$cached.key"
}

# one_image IMAGE: builds DIR/IMAGE-VERSION.tar unless its stamp says it is up to date
one_image() {
  local name=$1 archive=$OUT/$1-$VERSION.tar
  image "$name"
  local bin=$BIN src=$CARGO_TARGET_DIR/$PROFILE_DIR/$BIN
  local names=("$REGISTRY/$name:$VERSION" "$REGISTRY/$name:$VERSION-$COMMIT")
  local libs="" l key
  if [ "$BASE" = scratch ]; then
    libs=$(libraries "$src" | sort -u)
  else
    builder_base # the Debian root filesystem and Go: $BUILDER_BASE, keyed by $BUILDER_BASE_KEY
  fi
  # the inputs: everything that ends up in the archive, except the creation time
  key=$({
    echo "script $(sha "$SCRIPT")"
    echo "profile $PROFILE"
    echo "binary $(sha "$src")"
    for l in $libs; do echo "lib $l $(sha "$l")"; done
    [ "$BASE" = scratch ] || echo "base $BUILDER_BASE_KEY"
    printf 'name %s\n' "${names[@]}"
    echo "revision $REVISION source $SOURCE license $LICENSE"
  } | sha256sum | cut -d' ' -f1)
  if [ "$FORCE" = 0 ] && [ -f "$archive" ] && [ "$(sed -n 's/^key //p' "$archive.stamp" 2>/dev/null)" = "$key" ]; then
    log "$name: up to date ($archive)"
    RESULTS+=("${names[@]/%/ $archive}")
    return 0
  fi

  local t=$EPOCHREALTIME root=$WORK/$name/rootfs layer=$WORK/$name/layer.tar
  log "$name: assembling ($PROFILE binary, $(mb "$(stat -c %s "$src")") before stripping)"
  mkdir -p "$root"
  [ "$BASE" = scratch ] || cp -a "$BUILDER_BASE/." "$root/"
  mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/home/nonroot"
  chmod 1777 "$root/tmp"
  objcopy --strip-debug "$src" "$root/usr/local/bin/$bin"
  for l in $libs; do
    mkdir -p "$root$(dirname "$l")"
    cp -L "$l" "$root$l" # a symlink's target, at the path the binary asks for
  done
  if [ "$BASE" = scratch ]; then
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' \
      "$NONROOT" "$NONROOT" >"$root/etc/passwd"
    printf 'root:x:0:\nnonroot:x:%s:\n' "$NONROOT" >"$root/etc/group"
    printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
  else
    # componentize-js runs wizer with an empty environment, so wasmtime finds its cache
    # directory through the password database, and fails when it cannot make it (Landlock lets
    # a build write nowhere but its scratch and tenant directories): a home for the image's user
    # and the chart's builder user (65533) where that directory already is, read-only (wasmtime
    # then caches nothing)
    printf 'nonroot:x:%s:%s:nonroot:/home/wasmless:/usr/sbin/nologin\n' "$NONROOT" "$NONROOT" >>"$root/etc/passwd"
    printf 'builder:x:65533:65533:builder:/home/wasmless:/usr/sbin/nologin\n' >>"$root/etc/passwd"
    printf 'nonroot:x:%s:\nbuilder:x:65533:\n' "$NONROOT" >>"$root/etc/group"
    mkdir -p "$root/home/wasmless/.cache/wasmtime"
  fi
  local d owned=(./home/nonroot)
  for d in $DIRS; do mkdir -p "$root$d"; owned+=(".$d"); done
  # the libraries are complete: the binary starts in the rootfs alone (needs root for chroot)
  if [ "$(id -u)" = 0 ]; then
    chroot "$root" "/usr/local/bin/$bin" --help >/dev/null ||
      die "$bin does not start in its rootfs (chroot $root /usr/local/bin/$bin --help)"
  fi
  local labels=() cfg=()
  [ "$BASE" = scratch ] || toolchains_layer "$root" # sets labels
  # One layer: everything root's (the builder's: as Debian installed it), but nonroot's directories.
  local mtime tarflags
  mtime=$(git log -1 --format=%ct)
  if [ "$BASE" = scratch ]; then
    tarflags=(--numeric-owner --mtime="@$mtime" -C "$root")
    tar "${tarflags[@]}" --sort=name --owner=0 --group=0 "${owned[@]/#/--exclude=}" -cf "$layer" .
  else
    # a root filesystem's mount points stay empty; modification times are kept (Python's .pyc
    # files are checked against their sources' times)
    tarflags=(--numeric-owner -C "$root")
    tar "${tarflags[@]}" --sort=name "${owned[@]/#/--exclude=}" --exclude='./dev/*' --exclude='./proc/*' \
      --exclude='./sys/*' --exclude='./run/*' --exclude='./tmp/*' -cf "$layer" .
  fi
  tar "${tarflags[@]}" --owner="$NONROOT" --group="$NONROOT" --no-recursion -rf "$layer" "${owned[@]}"
  local rootfs_bytes
  rootfs_bytes=$(du -sb "$root" | cut -f1)

  local desc=$DESC port
  [ -n "$desc" ] || desc=$(sed -n 's/^description = "\(.*\)"$/\1/p' "$(cargo_manifest "$PKG")")
  for port in $PORTS; do cfg+=(--port "$port/tcp"); done
  for l in "${ENVS[@]}"; do cfg+=(--env "$l"); done
  cfg+=(--label "org.opencontainers.image.title=$name" --label "org.opencontainers.image.description=$desc"
    --label "org.opencontainers.image.version=$VERSION" --label "org.opencontainers.image.revision=$REVISION"
    --label "org.opencontainers.image.created=$CREATED" --label "org.opencontainers.image.licenses=$LICENSE"
    --label "dev.wasmless.build-profile=$PROFILE")
  for l in "${labels[@]}"; do cfg+=(--label "$l"); done
  [ -z "$SOURCE" ] || cfg+=(--label "org.opencontainers.image.source=$SOURCE")
  CONTAINER=$(BUILDAH from --quiet scratch)
  BUILDAH add --quiet "$CONTAINER" "$layer" / >/dev/null
  rm -f "$layer"
  BUILDAH config --user "$NONROOT:$NONROOT" --entrypoint "[\"/usr/local/bin/$bin\"]" \
    --workingdir / "${cfg[@]}" --created-by "$CREATED_BY" "$CONTAINER"
  local commit_args=(--rm --quiet --format oci --identity-label=false)
  [ -z "${SOURCE_DATE_EPOCH:-}" ] || commit_args+=(--timestamp "$SOURCE_DATE_EPOCH")
  BUILDAH commit "${commit_args[@]}" "$CONTAINER" "${names[0]}" >/dev/null
  CONTAINER=""
  rm -rf "$root"
  local oci=$OUT/.$name.tar.oci.$$ tmp=$OUT/.$name.tar.tmp.$$
  rm -f "$oci" "$tmp"
  BUILDAH push --quiet "${names[0]}" "oci-archive:$oci:${names[0]}"
  BUILDAH rmi -f "${names[0]}" >/dev/null 2>&1 || true
  oci_names "$oci" "$tmp" "${names[@]}"
  rm -f "$oci"
  mv -f "$tmp" "$archive"
  printf 'key %s\nrootfs_bytes %s\n' "$key" "$rootfs_bytes" >"$archive.stamp.tmp"
  mv -f "$archive.stamp.tmp" "$archive.stamp"
  log "$name: built in $(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
  RESULTS+=("${names[@]/%/ $archive}")
}

# cargo_manifest PACKAGE: its Cargo.toml
cargo_manifest() {
  case $1 in wasmless-host) echo host/Cargo.toml ;; wasmless-controller) echo controller/Cargo.toml ;; esac
}

# oci_names IN OUT NAME...: IN (buildah's oci-archive, one manifest) rewritten as OUT with one
# index.json entry per NAME, each annotated with org.opencontainers.image.ref.name (podman,
# skopeo) and io.containerd.image.name (ctr, Docker >= 25), and with Docker's manifest.json
# (docker load before 25, and podman load, whose oci-archive reader takes one entry only).
oci_names() {
  python3 - "$@" <<'PY'
import io, json, sys, tarfile

src, dst, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with tarfile.open(src) as t:
    index = json.load(t.extractfile("index.json"))
    [desc] = index["manifests"]
    blob = lambda d: "blobs/" + d["digest"].replace(":", "/", 1)
    manifest = json.load(t.extractfile(blob(desc)))
    mtime = t.getmember("index.json").mtime
    entry = {k: v for k, v in desc.items() if k != "annotations"}
    index["manifests"] = [
        dict(entry, annotations={"io.containerd.image.name": n, "org.opencontainers.image.ref.name": n})
        for n in names
    ]
    docker = [{
        "Config": blob(manifest["config"]),
        "RepoTags": names,
        "Layers": [blob(layer) for layer in manifest["layers"]],
    }]
    new = {"index.json": index, "manifest.json": docker}
    with tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as o:
        for m in t:
            if m.name.removeprefix("./") in new:
                continue
            o.addfile(m, t.extractfile(m) if m.isfile() else None)
        for name, doc in new.items():
            data = json.dumps(doc, separators=(",", ":")).encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, mtime
            o.addfile(info, io.BytesIO(data))
PY
}

if [ "$BASE_ONLY" = 1 ]; then builder_base; exit 0; fi
RESULTS=()
for i in "${IMAGES[@]}"; do one_image "$i"; done
flock -u 9

for b in "${IMAGES[@]}"; do
  a=$OUT/$b-$VERSION.tar
  log "$b: archive $(mb "$(stat -c %s "$a")") (gzip layers), rootfs $(mb "$(sed -n 's/^rootfs_bytes //p' "$a.stamp")") uncompressed"
done
printf '%s\n' "${RESULTS[@]}"
