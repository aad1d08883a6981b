#!/usr/bin/env bash
# The container images of wasmless-host and wasmless-controller, as OCI archives.
#   ./scripts/images.sh [--profile release|debug] [--skip-build] [--out DIR] [--force]
#
# Each image is assembled from scratch with Debian's buildah (installed when missing), in a
# storage of its own under ~/.cache/wasmless/buildah; nothing is ever pulled. It holds the
# binary, stripped of debug info, at /usr/local/bin/, the shared libraries it links (from ldd,
# at their paths) and the dynamic loader, /etc/passwd and /etc/group with the user nonroot
# (65532:65532, which the image runs as), /etc/nsswitch.conf, /tmp (1777) and the binary's
# writable default directory owned by nonroot (/var/cache/wasmless for the host,
# /var/lib/wasmless for the controller). No shell, no CA certificates.
#
# Names: localhost/wasmless/<binary>:<version> and :<version>-<commit>[-dirty], the version from
# the workspace Cargo.toml, the commit from git (-dirty with uncommitted changes to tracked
# files). Both are in the archive DIR/<binary>-<version>.tar, an OCI layout (index.json with
# org.opencontainers.image.ref.name and io.containerd.image.name) plus Docker's manifest.json:
#   ctr -n k8s.io images import FILE | podman load -i FILE | docker load -i FILE
# An archive is rebuilt only when its inputs changed (binary, libraries, names, this script):
# their sha256 is kept in FILE.stamp. On stdout, one line per name: IMAGE ARCHIVE.
#
#   --profile release  (default) cargo build --release --locked -p <package> --bin <binary>
#   --profile debug    the debug binaries: cargo build --locked --workspace --bins, the
#                      command scripts/test.sh runs, so after the suite it builds nothing
#   --skip-build       use the binaries already in $CARGO_TARGET_DIR/<profile>/
#   --out DIR          where the archives go (default ~/.cache/wasmless/images)
#   --force            rebuild the archives even when their inputs did not change
# Environment: CARGO_TARGET_DIR (scripts/lib.sh), WASMLESS_IMAGE_SOURCE (the
# org.opencontainers.image.source label; default: git remote origin), SOURCE_DATE_EPOCH (the
# image's creation time instead of now).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SCRIPT=$REPO/scripts/images.sh

PROFILE=release BUILD=1 FORCE=0 OUT=""
while [ $# -gt 0 ]; do
  case $1 in
    --profile) PROFILE=${2:?--profile needs release or debug}; shift 2 ;;
    --profile=*) PROFILE=${1#*=}; shift ;;
    --skip-build) BUILD=0; shift ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --force) FORCE=1; shift ;;
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

# image BINARY: sets PKG, PORTS, DIRS (owned by nonroot), ENVS (KEY=VALUE) of that image
image() {
  case $1 in
    wasmless-host) PKG=wasmless-runtime PORTS="8080 9090" DIRS=/var/cache/wasmless ENVS=() ;;
    wasmless-controller) PKG=wasmless-controller PORTS=8090 DIRS=/var/lib/wasmless
      ENVS=(WASMLESS_STORE=/var/lib/wasmless) ;;
    *) die "unknown image $1" ;;
  esac
}
BINARIES=(wasmless-host wasmless-controller)

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

# one_image BINARY: builds DIR/BINARY-VERSION.tar unless its stamp says it is up to date
one_image() {
  local bin=$1 src=$CARGO_TARGET_DIR/$PROFILE_DIR/$1 archive=$OUT/$1-$VERSION.tar
  image "$bin"
  local names=("$REGISTRY/$bin:$VERSION" "$REGISTRY/$bin:$VERSION-$COMMIT")
  local libs l key
  libs=$(libraries "$src" | sort -u)
  # the inputs: everything that ends up in the archive, except the creation time
  key=$({
    echo "script $(sha "$SCRIPT")"
    echo "profile $PROFILE"
    echo "binary $(sha "$src")"
    for l in $libs; do echo "lib $l $(sha "$l")"; done
    printf 'name %s\n' "${names[@]}"
    echo "revision $REVISION source $SOURCE license $LICENSE"
  } | sha256sum | cut -d' ' -f1)
  if [ "$FORCE" = 0 ] && [ -f "$archive" ] && [ "$(sed -n 's/^key //p' "$archive.stamp" 2>/dev/null)" = "$key" ]; then
    log "$bin: up to date ($archive)"
    RESULTS+=("${names[@]/%/ $archive}")
    return 0
  fi

  local t=$EPOCHREALTIME root=$WORK/$bin/rootfs layer=$WORK/$bin/layer.tar
  log "$bin: assembling ($PROFILE binary, $(mb "$(stat -c %s "$src")") before stripping)"
  mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/home/nonroot"
  chmod 1777 "$root/tmp"
  objcopy --strip-debug "$src" "$root/usr/local/bin/$bin"
  for l in $libs; do
    mkdir -p "$root$(dirname "$l")"
    cp -L "$l" "$root$l" # a symlink's target, at the path the binary asks for
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' \
    "$NONROOT" "$NONROOT" >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:%s:\n' "$NONROOT" >"$root/etc/group"
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
  local d owned=(./home/nonroot)
  for d in $DIRS; do mkdir -p "$root$d"; owned+=(".$d"); done
  # the libraries are complete: the binary starts in the rootfs alone (needs root for chroot)
  if [ "$(id -u)" = 0 ]; then
    chroot "$root" "/usr/local/bin/$bin" --help >/dev/null ||
      die "$bin does not start in its rootfs (chroot $root /usr/local/bin/$bin --help)"
  fi
  # One layer: everything root's, but nonroot's directories.
  local mtime
  mtime=$(git log -1 --format=%ct)
  local tarflags=(--numeric-owner --mtime="@$mtime" -C "$root")
  tar "${tarflags[@]}" --sort=name --owner=0 --group=0 "${owned[@]/#/--exclude=}" -cf "$layer" .
  tar "${tarflags[@]}" --owner="$NONROOT" --group="$NONROOT" --no-recursion -rf "$layer" "${owned[@]}"
  local rootfs_bytes
  rootfs_bytes=$(du -sb "$root" | cut -f1)

  local desc port cfg=()
  desc=$(sed -n 's/^description = "\(.*\)"$/\1/p' "$(cargo_manifest "$PKG")")
  for port in $PORTS; do cfg+=(--port "$port/tcp"); done
  for l in "${ENVS[@]}"; do cfg+=(--env "$l"); done
  cfg+=(--label "org.opencontainers.image.title=$bin" --label "org.opencontainers.image.description=$desc"
    --label "org.opencontainers.image.version=$VERSION" --label "org.opencontainers.image.revision=$REVISION"
    --label "org.opencontainers.image.created=$CREATED" --label "org.opencontainers.image.licenses=$LICENSE"
    --label "dev.wasmless.build-profile=$PROFILE")
  [ -z "$SOURCE" ] || cfg+=(--label "org.opencontainers.image.source=$SOURCE")
  CONTAINER=$(BUILDAH from --quiet scratch)
  BUILDAH add --quiet "$CONTAINER" "$layer" / >/dev/null
  BUILDAH config --user "$NONROOT:$NONROOT" --entrypoint "[\"/usr/local/bin/$bin\"]" \
    --workingdir / --env PATH=/usr/local/bin:/usr/bin:/bin "${cfg[@]}" \
    --created-by "scripts/images.sh: $bin, its libraries, /etc/passwd, /etc/group" "$CONTAINER"
  local commit_args=(--rm --quiet --format oci --identity-label=false)
  [ -z "${SOURCE_DATE_EPOCH:-}" ] || commit_args+=(--timestamp "$SOURCE_DATE_EPOCH")
  BUILDAH commit "${commit_args[@]}" "$CONTAINER" "${names[0]}" >/dev/null
  CONTAINER=""
  local oci=$OUT/.$bin.tar.oci.$$ tmp=$OUT/.$bin.tar.tmp.$$
  rm -f "$oci" "$tmp"
  BUILDAH push --quiet "${names[0]}" "oci-archive:$oci:${names[0]}"
  BUILDAH rmi -f "${names[0]}" >/dev/null 2>&1 || true
  oci_names "$oci" "$tmp" "${names[@]}"
  rm -f "$oci"
  mv -f "$tmp" "$archive"
  printf 'key %s\nrootfs_bytes %s\n' "$key" "$rootfs_bytes" >"$archive.stamp.tmp"
  mv -f "$archive.stamp.tmp" "$archive.stamp"
  log "$bin: built in $(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
  RESULTS+=("${names[@]/%/ $archive}")
}

# cargo_manifest PACKAGE: its Cargo.toml
cargo_manifest() {
  case $1 in wasmless-runtime) echo runtime/Cargo.toml ;; wasmless-controller) echo controller/Cargo.toml ;; esac
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

RESULTS=()
for b in "${BINARIES[@]}"; do one_image "$b"; done
flock -u 9

for b in "${BINARIES[@]}"; do
  a=$OUT/$b-$VERSION.tar
  log "$b: archive $(mb "$(stat -c %s "$a")") (gzip layers), rootfs $(mb "$(sed -n 's/^rootfs_bytes //p' "$a.stamp")") uncompressed"
done
printf '%s\n' "${RESULTS[@]}"
