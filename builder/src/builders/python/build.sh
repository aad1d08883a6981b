#!/usr/bin/env bash
# build.sh --prepare <interpreter.wasm>
#   Installs componentize-py and the WIT files when missing, and builds the interpreter every
#   Python function shares (CPython, the standard library imported, wasmless_app.py and its
#   glue) into <interpreter.wasm> unless it exists.
# build.sh <src-file> <handler> <out.zip> [requirements.txt]
#   The function's files: its module as <MOD_NAME>.py, the files beside it (WASMLESS_SRC_DIR: a
#   zip archive's, checked by the builder) and its requirements (pure-Python wheels), zipped.
#
# See README.md next to this script.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1
WASI_HTTP_CRATE=wasmtime-wasi-http-48.0.8
WORLD=wasmless:python/interpreter

die() { echo "build.sh: error: $*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2fs", b - a }'; }
log() { echo "build.sh: $*" >&2; }

PREPARE=0
if [ "${1:-}" = --prepare ]; then
  PREPARE=1
  [ $# -eq 2 ] || die "usage: build.sh --prepare <interpreter.wasm>"
  INTERPRETER=$2
  set -- /dev/null wasmless_prepare.prepare /dev/null
fi
[ $# -ge 3 ] && [ $# -le 4 ] || die "usage: build.sh <src-file> <handler> <out.zip> [requirements.txt]"
SRC=$1 HANDLER=$2 OUT=$3 REQS=${4:-}
[ "$PREPARE" = 1 ] || [ -f "$SRC" ] || die "source file not found: $SRC"
[ -z "$REQS" ] || [ -f "$REQS" ] || die "requirements file not found: $REQS"

# handler "file.func": MOD_NAME is everything before the last dot's function part.
case "$HANDLER" in
  *.*) MOD=${HANDLER%.*} FUNC=${HANDLER##*.} ;;
  *) die "handler must be <module>.<function>, got '$HANDLER'" ;;
esac
ident='^[A-Za-z_][A-Za-z0-9_]*$'
[[ "$MOD" =~ $ident ]] || die "handler module '$MOD' is not a Python identifier (handler '$HANDLER')"
[[ "$FUNC" =~ $ident ]] || die "handler function '$FUNC' is not a Python identifier (handler '$HANDLER')"
case "$MOD" in
  wasmless_glue|wasmless_app|wasmless_stdlib|wit_world|componentize_py_types|componentize_py_runtime|componentize_py_async_support|poll_loop)
    die "handler module name '$MOD' is reserved by the build; rename the file" ;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${WASMLESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmless}
TOOLS=$CACHE/toolchains/python
T_ALL=$(now)

# (a) toolchain: componentize-py in a cached venv
T=$(now)
VENV=$TOOLS/venv-componentize-py-$COMPONENTIZE_PY_VERSION
CPY=$VENV/bin/componentize-py
if ! [ -x "$CPY" ] || ! "$CPY" --version 2>/dev/null | grep -qx "componentize-py $COMPONENTIZE_PY_VERSION"; then
  PY=${PYTHON:-python3}
  command -v "$PY" >/dev/null || die "python3 not found (needed to install componentize-py)"
  log "installing componentize-py $COMPONENTIZE_PY_VERSION into $VENV"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV" || die "could not create venv $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION" \
    || die "pip could not install componentize-py==$COMPONENTIZE_PY_VERSION"
fi
log "toolchain: $("$CPY" --version) ($(elapsed "$T"))"

# Preparing: (b) and (c). Nothing of a tenant's is in what they make.
if [ "$PREPARE" = 1 ]; then
# (b) WIT files: wasi:http 0.2.12 and deps, from the wasmtime-wasi-http crate the host links,
# and the interpreter's world (function.wit: wasi:http's proxy, and the build's check)
T=$(now)
WIT=$TOOLS/wit/interpreter-$WASI_HTTP_CRATE-$(sha256sum "$HERE/function.wit" | cut -c1-12)
if ! [ -f "$WIT/deps/http.wit" ]; then
  SRC_WIT=${WASMLESS_WIT_DIR:-}
  if [ -z "$SRC_WIT" ]; then
    for d in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$WASI_HTTP_CRATE"/wit; do
      [ -f "$d/deps/http.wit" ] && SRC_WIT=$d && break
    done
  fi
  [ -n "$SRC_WIT" ] && [ -f "$SRC_WIT/deps/http.wit" ] \
    || die "WIT files not found: no ${CARGO_HOME:-$HOME/.cargo}/registry/src/*/$WASI_HTTP_CRATE/wit (run 'cargo fetch' in the workspace, or set WASMLESS_WIT_DIR to a dir with deps/http.wit)"
  mkdir -p "$WIT.tmp.$$/deps"
  cp "$SRC_WIT"/deps/*.wit "$WIT.tmp.$$/deps/"
  cp "$HERE/function.wit" "$WIT.tmp.$$/"
  mkdir -p "$(dirname "$WIT")"
  rm -rf "$WIT" && mv "$WIT.tmp.$$" "$WIT"
  log "WIT: copied $SRC_WIT -> $WIT"
fi
grep -q "^package wasi:http@0.2.12;" "$WIT/deps/http.wit" || die "unexpected wasi:http version in $WIT/deps/http.wit"
log "WIT: $WORLD from $WIT ($(elapsed "$T"))"

# (c) the interpreter, once: componentize-py imports the standard library and the glue and
# snapshots the result.
  if ! [ -f "$INTERPRETER" ]; then
    T=$(now)
    BUILD=$(mktemp -d "${TMPDIR:-/tmp}/wasmless-py-interpreter.XXXXXX")
    trap 'rm -rf "$BUILD"' EXIT
    mkdir -p "$BUILD/app"
    cp "$HERE/wasmless_glue.py" "$HERE/wasmless_app.py" "$HERE/wasmless_stdlib.py" "$BUILD/app/"
    mkdir -p "$(dirname "$INTERPRETER")"
    ( cd "$BUILD" && env -i PATH="$PATH" HOME="$HOME" TMPDIR="${TMPDIR:-/tmp}" \
        "$CPY" -d "$WIT" -w "$WORLD" componentize -p app -o "$INTERPRETER.tmp.$$" wasmless_app ) \
        >"$BUILD/cpy.log" 2>&1 || {
      sed 's/^/  componentize-py: /' "$BUILD/cpy.log" >&2
      rm -f "$INTERPRETER.tmp.$$"
      die "componentize-py could not build the interpreter"
    }
    mv "$INTERPRETER.tmp.$$" "$INTERPRETER"
    log "interpreter: $INTERPRETER ($(stat -c %s "$INTERPRETER") bytes, $(elapsed "$T"))"
  fi
  exit 0
fi

BUILD=$(mktemp -d "${TMPDIR:-/tmp}/wasmless-py-build.XXXXXX")
trap 'rm -rf "$BUILD"' EXIT
mkdir -p "$BUILD/app"

# (d) dependencies: pip install --target, cached by the digest of the requirements file
DEPS=
if [ -n "$REQS" ] && grep -qvE '^\s*(#|$)' "$REQS"; then
  T=$(now)
  DIGEST=$(sha256sum "$REQS" | cut -c1-32)
  # The tenant's own directory in the builder; the toolchain is read-only to builds.
  DEPS=${WASMLESS_DEPS_DIR:-$TOOLS/deps}/$DIGEST
  if ! [ -f "$DEPS/.complete" ]; then
    log "installing requirements from $REQS into $DEPS"
    rm -rf "$DEPS" "$DEPS.tmp.$$"
    mkdir -p "$DEPS.tmp.$$"
    # Pure-Python only: no sdists (they'd build native code for the build host), no wheels for
    # a platform other than "any".
    if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-compile \
         --only-binary=:all: --platform any --python-version 3.14 --implementation py \
         --target "$DEPS.tmp.$$" -r "$REQS" 2>"$BUILD/pip.err"; then
      sed 's/^/  pip: /' "$BUILD/pip.err" >&2
      rm -rf "$DEPS.tmp.$$"
      die "could not install the requirements in $REQS as pure-Python wheels (a package that is missing, misspelt, or has no pure-Python wheel can't be used; see pip's message above)"
    fi
    touch "$DEPS.tmp.$$/.complete"
    mv "$DEPS.tmp.$$" "$DEPS"
  fi
  log "deps: $DEPS ($(elapsed "$T"))"
fi

# (e) the function's files, zipped: its requirements, then the files beside its module, then the
# module itself (later ones win a name). Entries are sorted and dated 1980-01-01, so the same
# files give the same archive.
ZIPDIR=$BUILD/app
if [ -n "$DEPS" ]; then
  cp -R "$DEPS"/. "$ZIPDIR/"
  rm -f "$ZIPDIR/.complete"
fi
if [ -n "${WASMLESS_SRC_DIR:-}" ]; then
  cp -R "$WASMLESS_SRC_DIR"/. "$ZIPDIR/"
fi
cp "$SRC" "$ZIPDIR/$MOD.py"
T=$(now)
mkdir -p "$(dirname "$OUT")"
"$VENV/bin/python" - "$ZIPDIR" "$OUT.tmp" <<'PY' || die "could not zip the function's files"
import os, sys, zipfile
root, out = sys.argv[1], sys.argv[2]
names = []
for d, dirs, files in os.walk(root):
    dirs[:] = [x for x in dirs if x != "__pycache__"]
    names += [os.path.join(d, f) for f in files if not f.endswith(".pyc")]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for path in sorted(names):
        info = zipfile.ZipInfo(os.path.relpath(path, root), (1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        with open(path, "rb") as f:
            z.writestr(info, f.read())
PY
mv "$OUT.tmp" "$OUT"
log "wrote $OUT ($(stat -c %s "$OUT") bytes, zipped in $(elapsed "$T")) in $(elapsed "$T_ALL")"
