#!/usr/bin/env bash
# Bootstrap the supply-chain tools from the Go module proxy: cosign (sign, attest, verify), syft (SBOM), regctl
# (copy with signatures), trivy (vulnerability scan), trivy-db (builds the offline vulnerability DB) and helm (lints,
# packages and pushes helm-mode charts), into ${DOCKYARD_CACHE:-$HOME/.cache/dockyard}/supply-chain/bin.
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

# reports NAME VERSION CHECK: BIN/NAME reports VERSION (CHECK: its version argument; empty: the module version in
# the binary's build info, for tools without a version command).
reports() {
    local name=$1 version=$2 check=$3
    if [ -n "$check" ]; then
        "$BIN/$name" $check 2>&1 | grep -qF "${version#v}"
    else
        go version -m "$BIN/$name" 2>&1 | grep -qF "$version"
    fi
}

# go_install NAME PACKAGE VERSION VERSION_CHECK LDFLAGS [ENV=VALUE...]: `go install` unless BIN/NAME already reports
# the version. ENV: extra build environment (trivy needs GOEXPERIMENT=jsonv2).
go_install() {
    local name=$1 package=$2 version=$3 check=$4 ldflags=$5
    shift 5
    step "$name $version"
    if [ -x "$BIN/$name" ] && [ "$REBUILD" != 1 ] && reports "$name" "$version" "$check"; then
        log "    $name $version (skip)"
        return 0
    fi
    building "$package@$version with go install (several minutes cold on 2 cores; log: $STEP_LOG)"
    run "go install of $name" env GOBIN="$BIN" CGO_ENABLED=0 GOFLAGS= "$@" \
        go install -trimpath -ldflags "-s -w $ldflags" "$package@$version"
    reports "$name" "$version" "$check" || fail "$name does not report $version"
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
# The version ldflag is what `helm version` reports (a plain go install does not set it); the skip check reads it.
go_install helm helm.sh/helm/v4/cmd/helm "$DOCKYARD_HELM_VERSION" "version --short" \
    "-X helm.sh/helm/v4/internal/version.version=$DOCKYARD_HELM_VERSION"
# trivy-db first: 20 s, so the DB can be built while trivy (the long one) compiles in another bootstrap run.
go_install trivy-db github.com/aquasecurity/trivy-db/cmd/trivy-db "$DOCKYARD_TRIVY_DB_VERSION" "" ""
go_install trivy github.com/aquasecurity/trivy/cmd/trivy "$DOCKYARD_TRIVY_VERSION" --version \
    "-X github.com/aquasecurity/trivy/pkg/version/app.ver=${DOCKYARD_TRIVY_VERSION#v}" GOEXPERIMENT=jsonv2

finished "$(ls "$BIN" | tr '\n' ' ')"
