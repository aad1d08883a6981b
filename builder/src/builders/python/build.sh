#!/usr/bin/env bash
# build.sh <src-file> <handler> <out.wasm> [requirements.txt]
#
# WASMLESS_SRC_DIR: a directory of modules to put beside <src-file> (a zip archive's files).
#
# Turns a Kubeless-style Python function (handler "module.func") into a WASI HTTP
# component (exports wasi:http/incoming-handler@0.2.12) with componentize-py.
# See README.md next to this script.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1
WASI_HTTP_CRATE=wasmtime-wasi-http-48.0.8
WORLD=wasi:http/proxy@0.2.12

die() { echo "build.sh: error: $*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2fs", b - a }'; }
log() { echo "build.sh: $*" >&2; }

# build.sh --prepare: only (a) and (b), installing the toolchain and WIT when missing.
PREPARE=0
if [ "${1:-}" = --prepare ]; then
  PREPARE=1
  set -- /dev/null wasmless_prepare.prepare /dev/null
fi
[ $# -ge 3 ] && [ $# -le 4 ] || die "usage: build.sh <src-file> <handler> <out.wasm> [requirements.txt]"
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
  wasmless_glue|wasmless_app|wit_world|componentize_py_types|componentize_py_runtime|componentize_py_async_support|poll_loop)
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

# (b) WIT files: wasi:http 0.2.12 and deps, from the wasmtime-wasi-http crate the host links
T=$(now)
WIT=$TOOLS/wit/$WASI_HTTP_CRATE
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
  # A root package of our own that only includes the proxy world.
  printf 'package wasmless:python;\n\nworld function {\n  include %s;\n}\n' "$WORLD" > "$WIT.tmp.$$/world.wit"
  mkdir -p "$(dirname "$WIT")"
  rm -rf "$WIT" && mv "$WIT.tmp.$$" "$WIT"
  log "WIT: copied $SRC_WIT -> $WIT"
fi
grep -q "^package wasi:http@0.2.12;" "$WIT/deps/http.wit" || die "unexpected wasi:http version in $WIT/deps/http.wit"
log "WIT: $WORLD from $WIT ($(elapsed "$T"))"
[ "$PREPARE" = 0 ] || exit 0

BUILD=$(mktemp -d "${TMPDIR:-/tmp}/wasmless-py-build.XXXXXX")
trap 'rm -rf "$BUILD"' EXIT
mkdir -p "$BUILD/app"

# (c) dependencies: pip install --target, cached by the digest of the requirements file
PYPATH_DEPS=()
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
  PYPATH_DEPS=(-p "$DEPS")
  log "deps: $DEPS ($(elapsed "$T"))"
fi

# (d) sources: an archive's files (WASMLESS_SRC_DIR, checked by the builder: no links, no
# reserved names) beside the user module as <MOD>.py, the glue, and a generated entry module
if [ -n "${WASMLESS_SRC_DIR:-}" ]; then
  cp -R "$WASMLESS_SRC_DIR"/. "$BUILD/app/"
fi
cp "$SRC" "$BUILD/app/$MOD.py"
cp "$HERE/wasmless_glue.py" "$BUILD/app/"
cat > "$BUILD/app/wasmless_app.py" <<PY
# generated by build.sh: the entry module componentize-py wraps
import $MOD as _user_module
from wasmless_glue import make_incoming_handler

try:
    _func = _user_module.$FUNC
except AttributeError:
    raise ImportError("handler '$HANDLER': module '$MOD' has no function '$FUNC'") from None
if not callable(_func):
    raise TypeError("handler '$HANDLER' is not callable")

IncomingHandler = make_incoming_handler(_func, "$HANDLER")
PY

T=$(now)
mkdir -p "$(dirname "$OUT")"
OUT_ABS=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")
# Keep the build host's environment out of the snapshot: module-level code runs here.
( cd "$BUILD" && env -i PATH="$PATH" HOME="$HOME" TMPDIR="${TMPDIR:-/tmp}" \
    "$CPY" -d "$WIT" -w "$WORLD" componentize -p app "${PYPATH_DEPS[@]}" \
    -o "$OUT_ABS.tmp" wasmless_app ) >"$BUILD/cpy.log" 2>&1 || {
  sed 's/^/  componentize-py: /' "$BUILD/cpy.log" >&2
  rm -f "$OUT_ABS.tmp"
  die "componentize-py failed for handler '$HANDLER' (source $SRC)"
}
mv "$OUT_ABS.tmp" "$OUT_ABS"
log "componentize: $(elapsed "$T")"
log "wrote $OUT ($(stat -c %s "$OUT_ABS") bytes) in $(elapsed "$T_ALL")"
