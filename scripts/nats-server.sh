#!/usr/bin/env bash
# Builds a real NATS server (github.com/nats-io/nats-server/v2) from the Go module proxy, into a
# cache outside the repository, for the NATSTrigger tests:
#   ${WASMLESS_NATS_DIR:-$HOME/.cache/wasmless/nats/<version>}/bin/nats-server
# The last line of stdout is that binary's path; progress goes to stderr. Returns at once when it
# is already built.
set -euo pipefail

# Pinned: the newest release `go install` accepted with Go 1.26 (2026-11-25).
VERSION="${WASMLESS_NATS_VERSION:-v2.15.2}"
OUT="${WASMLESS_NATS_DIR:-$HOME/.cache/wasmless/nats/$VERSION}"
if [ -x "$OUT/bin/nats-server" ]; then echo "$OUT/bin/nats-server"; exit 0; fi

echo "nats-server: building $VERSION from the Go module proxy (~1-2 min)" >&2
export GOTOOLCHAIN="${WASMLESS_GOTOOLCHAIN:-auto}"
export GOFLAGS="-buildvcs=false" CGO_ENABLED=0 GOWORK=off
export GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"
mkdir -p "$OUT/bin"
GOBIN="$OUT/bin" go install "github.com/nats-io/nats-server/v2@$VERSION" >&2
echo "$OUT/bin/nats-server"
