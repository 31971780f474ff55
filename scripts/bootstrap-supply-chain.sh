#!/usr/bin/env bash
# Bootstrap the supply-chain tools from the Go module proxy: cosign (sign, attest, verify), syft (SBOM) and
# regctl (copy with signatures), into ${DOCKYARD_CACHE:-$HOME/.cache/dockyard}/supply-chain/bin.
# Idempotent: a second run only checks versions (seconds). Pins: scripts/supply-chain/versions.env.
#
# Env:   DOCKYARD_CACHE                  cache root (default ~/.cache/dockyard)
#        DOCKYARD_SUPPLY_CHAIN_REBUILD=1 rebuild the binaries
set -Eeuo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=supply-chain/versions.env
. "$SCRIPT_DIR/supply-chain/versions.env"
CACHE="${DOCKYARD_CACHE:-$HOME/.cache/dockyard}"
ROOT="$CACHE/supply-chain"
BIN="$ROOT/bin"
SRC="$ROOT/src"
LOGS="$ROOT/logs"
REBUILD="${DOCKYARD_SUPPLY_CHAIN_REBUILD:-0}"
LOG_PREFIX=bootstrap-supply-chain
# shellcheck source=lib/gobuild.sh
. "$SCRIPT_DIR/lib/gobuild.sh"
mkdir -p "$BIN" "$SRC" "$LOGS"

# go_install NAME PACKAGE VERSION VERSION_CHECK LDFLAGS: `go install` unless BIN/NAME already reports the version.
go_install() {
    local name=$1 package=$2 version=$3 check=$4 ldflags=$5
    step "$name $version"
    if [ -x "$BIN/$name" ] && [ "$REBUILD" != 1 ] && "$BIN/$name" $check 2>&1 | grep -qF "${version#v}"; then
        log "    $name $version (skip)"
        return 0
    fi
    building "$package@$version with go install (several minutes cold on 2 cores; log: $STEP_LOG)"
    run "go install of $name" env GOBIN="$BIN" CGO_ENABLED=0 GOFLAGS= \
        go install -trimpath -ldflags "-s -w $ldflags" "$package@$version"
    "$BIN/$name" $check 2>&1 | grep -qF "${version#v}" || fail "$name does not report $version"
}

step "preflight"
command -v go >/dev/null 2>&1 || fail "the Go toolchain is not on PATH (it is at /usr/local/go/bin on this machine kind)"
go_install cosign github.com/sigstore/cosign/v2/cmd/cosign "$DOCKYARD_COSIGN_VERSION" version \
    "-X sigs.k8s.io/release-utils/version.gitVersion=$DOCKYARD_COSIGN_VERSION"
# Without main.version syft's SBOMs name no creator version.
go_install syft github.com/anchore/syft/cmd/syft "$DOCKYARD_SYFT_VERSION" version \
    "-X main.version=${DOCKYARD_SYFT_VERSION#v}"
go_install regctl github.com/regclient/regclient/cmd/regctl "$DOCKYARD_REGCTL_VERSION" version \
    "-X github.com/regclient/regclient/internal/version.vcsTag=$DOCKYARD_REGCTL_VERSION"

finished "$(ls "$BIN" | tr '\n' ' ')"
