#!/usr/bin/env bash
# Build a Kubeless-style Node.js function into a wasi:http@0.2.10 component.
#
#   build.sh <src-file> <handler> <out.wasm> [package.json]
#
#   src-file      the user's file, CommonJS (module.exports = { foo: (event, context) => ... })
#                 or ESM (named exports / export default { foo })
#   handler       Kubeless handler "file.func" (only the part after the last dot is used)
#   out.wasm      component to write (exports wasi:http/incoming-handler@0.2.10)
#   package.json  optional; its "dependencies" are npm-installed and bundled
#
# Environment:
#   WASMLESS_SRC_DIR         files to put beside src-file (a zip archive's), which may require them
#   WASMLESS_NODE_TOOLCHAIN  toolchain dir   (default ~/.cache/wasmless/toolchains/nodejs)
#   WASMLESS_KEEP_BUILD=1    keep the temporary build dir (its path is printed)
#   NPM                      npm binary      (default npm)
set -euo pipefail

COMPONENTIZE_JS_VERSION=0.23.0
ESBUILD_VERSION=0.25.12
# componentize-js 0.23.0 imports this at run time but lists it only as a devDependency (^0.17.4):
PREVIEW2_SHIM_VERSION=0.17.8
WASI_VERSION=0.2.10            # the version componentize-js 0.23.0's engine is built for
WASMTIME_WASI_HTTP_CRATE=wasmtime-wasi-http-48.0.8

die() { echo "build.sh: error: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }
elapsed() { echo "$(( $(now_ms) - $1 )) ms"; }

# build.sh --prepare: steps 1-2 (install the toolchain and WIT when missing), then steps 3-5 on a
# built-in function once, to record componentize.mjs's cache while the toolchain is writable.
PREPARE=0
if [ "${1:-}" = --prepare ]; then
  PREPARE=1 FUNC=prepare
else
  [ $# -ge 3 ] && [ $# -le 4 ] || die "usage: build.sh <src-file> <handler> <out.wasm> [package.json]"
  SRC=$1 HANDLER=$2 OUT=$3 PKG=${4:-}
  [ -f "$SRC" ] || die "source file not found: $SRC"
  [ -z "$PKG" ] || [ -f "$PKG" ] || die "package.json not found: $PKG"
  FUNC=${HANDLER##*.}
  [[ "$FUNC" =~ ^[A-Za-z_$][A-Za-z0-9_$]*$ ]] || die "handler '$HANDLER' must look like file.func (got function name '$FUNC')"
fi
command -v node >/dev/null || die "node not found on PATH"
NPM=${NPM:-npm}
command -v "$NPM" >/dev/null || die "npm not found on PATH"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GLUE=$HERE/glue.js
[ -f "$GLUE" ] || die "glue.js missing next to build.sh ($GLUE)"
TC=${WASMLESS_NODE_TOOLCHAIN:-${WASMLESS_CACHE:-$HOME/.cache/wasmless}/toolchains/nodejs}
# Where a build's dependencies are installed: the tenant's own directory in the builder.
DEPS_ROOT=${WASMLESS_DEPS_DIR:-$TC/deps}
[ -d "$TC" ] || mkdir -p "$TC"
T_ALL=$(now_ms)

# ---- 1. toolchain (once; serialised with flock) --------------------------------
# toolchain.package.json pins the three direct packages; toolchain.package-lock.json
# (next to this script) pins the whole tree and is installed with `npm ci`.
T=$(now_ms)
LOCKSUM=$(cat "$HERE/toolchain.package.json" "$HERE/toolchain.package-lock.json" 2>/dev/null | sha256sum | cut -c1-12)
STAMP=$TC/.installed-componentize-js-$COMPONENTIZE_JS_VERSION-esbuild-$ESBUILD_VERSION-preview2-shim-$PREVIEW2_SHIM_VERSION-$LOCKSUM
# Locked only to install: builds see the toolchain read-only.
[ -f "$STAMP" ] || { exec 9>"$TC/.lock"; flock 9; }
if [ ! -f "$STAMP" ]; then
  echo "build.sh: installing @bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION esbuild@$ESBUILD_VERSION @bytecodealliance/preview2-shim@$PREVIEW2_SHIM_VERSION into $TC" >&2
  rm -f "$TC"/.installed-*
  if [ -f "$HERE/toolchain.package.json" ] && [ -f "$HERE/toolchain.package-lock.json" ]; then
    cp "$HERE/toolchain.package.json" "$TC/package.json"
    cp "$HERE/toolchain.package-lock.json" "$TC/package-lock.json"
    (cd "$TC" && "$NPM" ci --no-audit --no-fund --loglevel=error >&2) \
      || die "npm ci of the toolchain failed (is https://registry.npmjs.org reachable?)"
  else
    cat >"$TC/package.json" <<EOF
{ "name": "wasmless-nodejs-toolchain", "private": true,
  "dependencies": { "@bytecodealliance/componentize-js": "$COMPONENTIZE_JS_VERSION", "esbuild": "$ESBUILD_VERSION",
    "@bytecodealliance/preview2-shim": "$PREVIEW2_SHIM_VERSION" } }
EOF
    (cd "$TC" && "$NPM" install --no-audit --no-fund --loglevel=error >&2) \
      || die "npm install of the toolchain failed (is https://registry.npmjs.org reachable?)"
  fi
  touch "$STAMP"
fi
CJS=$TC/node_modules/@bytecodealliance/componentize-js
ESBUILD=$TC/node_modules/.bin/esbuild
[ -f "$CJS/src/componentize.js" ] && [ -x "$ESBUILD" ] || die "toolchain in $TC is incomplete; delete $STAMP and retry"
"$ESBUILD" --version >/dev/null 2>&1 || die "esbuild binary does not run (optional dependency @esbuild/<platform> missing?)"

# ---- 2. WIT: wasi:http proxy world at $WASI_VERSION + wasi:cli/environment -----
WIT=$TC/wit-$WASI_VERSION
if [ ! -f "$WIT/world.wit" ]; then
  SRCWIT=""
  for d in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$WASMTIME_WASI_HTTP_CRATE"/wit/deps; do
    [ -f "$d/http.wit" ] && SRCWIT=$d && break
  done
  rm -rf "$WIT.tmp" && mkdir -p "$WIT.tmp/deps"
  if [ -n "$SRCWIT" ]; then
    from=0.2.12; echo "build.sh: WIT from $SRCWIT (rewriting $from -> $WASI_VERSION)" >&2
    for f in "$SRCWIT"/*.wit; do sed "s/$from/$WASI_VERSION/g" "$f" >"$WIT.tmp/deps/$(basename "$f")"; done
  else
    JW=$TC/node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12
    [ -f "$JW/wasi-http/package.wit" ] || die "no WIT source: neither $WASMTIME_WASI_HTTP_CRATE in the cargo registry nor $JW"
    echo "build.sh: WIT from $JW (rewriting 0.2.12 -> $WASI_VERSION)" >&2
    for d in "$JW"/wasi-*; do sed "s/0\.2\.12/$WASI_VERSION/g" "$d/package.wit" >"$WIT.tmp/deps/$(basename "$d").wit"; done
  fi
  cat >"$WIT.tmp/world.wit" <<EOF
package wasmless:nodejs-function;

world function {
  include wasi:http/proxy@$WASI_VERSION;
  import wasi:cli/environment@$WASI_VERSION;
}
EOF
  rm -rf "$WIT" && mv "$WIT.tmp" "$WIT"
fi
{ true >&9; } 2>/dev/null && flock -u 9
echo "build.sh: toolchain+WIT ready in $(elapsed "$T")" >&2
# What componentize.mjs caches: StarlingMonkey with this world's bindings spliced in, and its
# machine code, the same for every function (see componentize.mjs).
CJS_CACHE=$TC/componentize-cache
RECORDED=$CJS_CACHE/.recorded-$LOCKSUM-$WASI_VERSION
RECORD=()
if [ "$PREPARE" = 1 ]; then
  [ ! -f "$RECORDED" ] || exit 0
  RECORD=(--record)
fi

# ---- 3. build dir, user source, dependencies ------------------------------------
BUILD=$(mktemp -d "${TMPDIR:-/tmp}/wasmless-nodejs.XXXXXX")
if [ "${WASMLESS_KEEP_BUILD:-}" = 1 ]; then echo "build.sh: build dir $BUILD" >&2; else trap 'rm -rf "$BUILD"' EXIT; fi
mkdir -p "$BUILD/fn"
# An archive's files (checked by the builder: no links), beside the user's file.
if [ -n "${WASMLESS_SRC_DIR:-}" ]; then
  cp -R "$WASMLESS_SRC_DIR"/. "$BUILD/fn/"
fi
if [ "$PREPARE" = 1 ]; then
  SRC=$BUILD/prepare.js OUT=$BUILD/prepare.wasm PKG=
  echo "module.exports = { prepare: () => 'prepared' };" >"$SRC"
fi
BASE=$(basename "$SRC")
case "$BASE" in *.js|*.cjs|*.mjs) ;; *) BASE=$BASE.js ;; esac
cp "$SRC" "$BUILD/fn/$BASE"

T=$(now_ms)
if [ -n "$PKG" ]; then
  node -e 'const p=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); if(p.dependencies!==undefined && (typeof p.dependencies!=="object"||Array.isArray(p.dependencies))) process.exit(2)' "$PKG" \
    || die "$PKG is not valid JSON or its \"dependencies\" is not an object"
  KEY=$(sha256sum "$PKG" | cut -c1-16)
  DEPS=$DEPS_ROOT/$KEY
  mkdir -p "$DEPS_ROOT"
  exec 8>"$DEPS_ROOT/.deps-$KEY.lock"; flock 8
  if [ ! -f "$DEPS/.ok" ]; then
    rm -rf "$DEPS" && mkdir -p "$DEPS" && cp "$PKG" "$DEPS/package.json"
    echo "build.sh: npm install dependencies of $PKG" >&2
    if ! (cd "$DEPS" && "$NPM" install --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2); then
      rm -rf "$DEPS"
      die "npm install failed for the dependencies in $PKG (see npm's message above)"
    fi
    touch "$DEPS/.ok"
  fi
  flock -u 8
  cp "$PKG" "$BUILD/fn/package.json"
  [ ! -e "$BUILD/fn/node_modules" ] \
    || die "the archive has a node_modules directory and deps are set: use one or the other"
  [ -d "$DEPS/node_modules" ] && ln -s "$DEPS/node_modules" "$BUILD/fn/node_modules"
  echo "build.sh: dependencies ready in $(elapsed "$T")" >&2
fi

# ---- 4. bundle user CommonJS + glue into one ES module ---------------------------
cat >"$BUILD/entry.js" <<EOF
import * as userModule from './fn/$BASE';
import { makeIncomingHandler } from '$GLUE';
export const incomingHandler = makeIncomingHandler(userModule, '$FUNC');
EOF
T=$(now_ms)
if ! (cd "$BUILD" && "$ESBUILD" entry.js --bundle --format=esm --platform=browser --target=es2022 \
      '--external:wasi:*' '--define:process.env.NODE_ENV="production"' \
      --log-level=warning --outfile=bundle.js >&2); then
  die "bundling failed. A 'Could not resolve \"<name>\"' above means a package that is not installed: list it under \"dependencies\" in a package.json passed as the 4th argument (Node built-ins such as fs, net, child_process are not available)"
fi
echo "build.sh: bundled in $(elapsed "$T") ($(stat -c %s "$BUILD/bundle.js") bytes)" >&2

# ---- 5. componentize --------------------------------------------------------------
T=$(now_ms)
mkdir -p "$(dirname "$OUT")"
# componentize-js reads the WIT through a WASI shim that only sees the current
# directory: run it inside the build dir with relative paths and a copy of the WIT.
cp -r "$WIT" "$BUILD/wit"
if ! (cd "$BUILD" && node "$HERE/componentize.mjs" "$CJS" bundle.js wit function out.wasm \
        "$CJS_CACHE" "${RECORD[@]}" >cjs.log 2>&1); then
  cat "$BUILD/cjs.log" >&2
  die "componentize-js failed (an error thrown while the module initialises, e.g. a wrong handler name, shows above)"
fi
grep -v -e '^$' -e 'Detected `incomingHandler` export' "$BUILD/cjs.log" >&2 || true
mv "$BUILD/out.wasm" "$OUT"
echo "build.sh: componentize-js in $(elapsed "$T")" >&2
if [ "$PREPARE" = 1 ]; then
  touch "$RECORDED"
  exit 0
fi
echo "build.sh: wrote $OUT ($(stat -c %s "$OUT") bytes) handler=$FUNC total $(elapsed "$T_ALL")" >&2
