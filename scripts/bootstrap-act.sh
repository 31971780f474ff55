#!/usr/bin/env bash
# Bootstrap act (nektos/act, a local GitHub Actions runner) from the Go module proxy into
# ${DOCKYARD_CACHE:-$HOME/.cache/dockyard}/act/bin: the engine tier runs the generated delivery workflow with it.
# Idempotent: a second run only checks the version (seconds). Pin: scripts/act/versions.env.
#
# Env:   DOCKYARD_CACHE          cache root (default ~/.cache/dockyard)
#        DOCKYARD_ACT_REBUILD=1  rebuild the binary
set -Eeuo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=act/versions.env
. "$SCRIPT_DIR/act/versions.env"
CACHE="${DOCKYARD_CACHE:-$HOME/.cache/dockyard}"
ROOT="$CACHE/act"
BIN="$ROOT/bin"
LOGS="$ROOT/logs"
REBUILD="${DOCKYARD_ACT_REBUILD:-0}"
LOG_PREFIX=bootstrap-act
# shellcheck source=lib/gobuild.sh
. "$SCRIPT_DIR/lib/gobuild.sh"
mkdir -p "$BIN" "$LOGS"

step "preflight"
command -v go >/dev/null 2>&1 || fail "the Go toolchain is not on PATH (it is at /usr/local/go/bin on this machine kind)"

step "act $DOCKYARD_ACT_VERSION"
# act's --version prints main.version, which go install leaves at its source default: set it to the pin.
if [ -x "$BIN/act" ] && [ "$REBUILD" != 1 ] && "$BIN/act" --version 2>&1 | grep -qF "${DOCKYARD_ACT_VERSION#v}"; then
    log "    act $DOCKYARD_ACT_VERSION (skip)"
else
    building "github.com/nektos/act@$DOCKYARD_ACT_VERSION with go install (1.5-4 min cold on 2 cores; log: $STEP_LOG)"
    run "go install of act" env GOBIN="$BIN" CGO_ENABLED=0 GOFLAGS= \
        go install -trimpath -ldflags "-s -w -X main.version=$DOCKYARD_ACT_VERSION" \
        "github.com/nektos/act@$DOCKYARD_ACT_VERSION"
    "$BIN/act" --version 2>&1 | grep -qF "${DOCKYARD_ACT_VERSION#v}" || fail "act does not report $DOCKYARD_ACT_VERSION"
fi

finished "act $DOCKYARD_ACT_VERSION"
