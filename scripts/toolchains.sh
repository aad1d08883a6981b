#!/usr/bin/env bash
# The compilers the source runtimes build with, checked and installed where a script can:
#   c       Debian's clang-16, lld-16, wasi-libc, libclang-rt-16-dev-wasm32 (apt)
#   rust    rustup's wasm32-wasip1 standard library
#   go      Go 1.21+ (must be on PATH: Debian's golang-go, or go.dev)
#   nodejs  Node.js 18+ and npm (componentize-js installs itself on the first build, cached)
#   python  Python 3 with venv (componentize-py installs itself on the first build, cached)
#   ruby    npm (the first build fetches @ruby/3.4-wasm-wasi's interpreter, cached)
#   java    Debian's openjdk-17-jdk-headless and maven (apt; TeaVM installs itself on the first
#           build, cached)
# Prints one line per runtime; exits non-zero with how to fix it when one is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

missing=0
ok() { printf '  %-7s %s\n' "$1" "$2"; }
fail() { printf '  %-7s MISSING: %s\n' "$1" "$2" >&2; missing=1; }

apt_install clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32
ok c "$(clang-16 --version | head -n 1)"

if command -v rustup >/dev/null 2>&1; then
  rustup target add wasm32-wasip1 >/dev/null 2>&1 || true
fi
if [ -d "$(rustc --print target-libdir --target wasm32-wasip1 2>/dev/null)" ]; then
  ok rust "$(rustc --version), target wasm32-wasip1"
else
  fail rust "install Rust with rustup (https://rustup.rs), then: rustup target add wasm32-wasip1"
fi

go_minor=$(go env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
if [ -n "$go_minor" ] && [ "$go_minor" -ge 21 ]; then
  ok go "$(go env GOVERSION) (GOOS=wasip1)"
else
  fail go "Go 1.21 or newer: apt-get install golang-go (bookworm-backports has 1.21+) or https://go.dev/dl"
fi

node_major=$(node --version 2>/dev/null | sed -n 's/^v\([0-9]*\).*/\1/p')
if [ -n "$node_major" ] && [ "$node_major" -ge 18 ] && command -v npm >/dev/null; then
  ok nodejs "node $(node --version), npm $(npm --version)"
else
  fail nodejs "Node.js 18+ with npm: apt-get install nodejs npm"
fi

if python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  ok python "$(python3 --version)"
else
  fail python "Python 3 with venv: apt-get install python3 python3-venv"
fi
if command -v npm >/dev/null; then
  ok ruby "npm $(npm --version) (fetches @ruby/3.4-wasm-wasi)"
else
  fail ruby "npm: apt-get install npm"
fi

apt_install --no-install-recommends openjdk-17-jdk-headless maven
if command -v javac >/dev/null && command -v mvn >/dev/null; then
  ok java "$(javac -version 2>&1), $(mvn -v 2>/dev/null | head -n 1)"
else
  fail java "a JDK and Maven: apt-get install openjdk-17-jdk-headless maven"
fi
exit "$missing"
