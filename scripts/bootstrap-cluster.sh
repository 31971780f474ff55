#!/usr/bin/env bash
# Bootstrap the local Kubernetes control plane the local stacks deploy to, from package registries only:
#   - kube-apiserver, kube-controller-manager, kube-scheduler, and the real node's kubelet and kube-proxy, built
#     in one go build from k8s.io/kubernetes (Go module proxy)
#   - kwok (fake nodes: Pods become Running/Ready without containers) and its Stage definitions
#   - etcd from Debian (etcd-server), kubectl from Debian (kubernetes-client) when missing
#   - the real node's runtime from Debian (containerd, runc, containernetworking-plugins) when missing, and its
#     sandbox ("pause") image built here as an OCI archive (scripts/cluster/pause/main.go)
# Everything lives outside the repo under ${DOCKYARD_CACHE:-$HOME/.cache/dockyard}/cluster/v<k8s-version>/.
# Idempotent: a second run only checks what is there (seconds). Pins: scripts/cluster/versions.env.
# Start it with scripts/local-cluster.sh start.
#
# Env:   DOCKYARD_CACHE             cache root (default ~/.cache/dockyard)
#        DOCKYARD_CLUSTER_REBUILD=1 rebuild the binaries
set -Eeuo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=cluster/versions.env
. "$SCRIPT_DIR/cluster/versions.env"
CACHE="${DOCKYARD_CACHE:-$HOME/.cache/dockyard}"
K8S_V="$DOCKYARD_K8S_VERSION"
ROOT="$CACHE/cluster/v$K8S_V"
BIN="$ROOT/bin"
SRC="$ROOT/src"
LOGS="$ROOT/logs"
REBUILD="${DOCKYARD_CLUSTER_REBUILD:-0}"
LOG_PREFIX=bootstrap-cluster
export GOFLAGS="${GOFLAGS:--mod=mod}"
# shellcheck source=lib/gobuild.sh
. "$SCRIPT_DIR/lib/gobuild.sh"

mkdir -p "$BIN" "$SRC" "$LOGS"

step "preflight"
command -v go >/dev/null 2>&1 || fail "the Go toolchain is not on PATH (it is at /usr/local/go/bin on this machine kind)"
apt_install "$DOCKYARD_ETCD_PACKAGE" openssl
command -v kubectl >/dev/null 2>&1 || apt_install kubernetes-client
# The real node's runtime: Debian's containerd 1.6 with runc, and the bridge/host-local/portmap CNI plugins.
apt_install containerd runc containernetworking-plugins
log "    etcd $(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p'), kubectl $(kubectl version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": "\(.*\)".*/\1/p' | head -n1)"

# ---------------------------------------------------------------------------------------------------------
step "kubernetes control plane and node v$K8S_V"
# The node's binaries come from the same build: one copied module, one version, ~100 + 28 more packages (~45 s warm).
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
have_all=1
for b in "${K8S_BINARIES[@]}"; do
    [ -x "$BIN/$b" ] && "$BIN/$b" --version 2>/dev/null | grep -qx "Kubernetes v$K8S_V" || have_all=0
done
if [ "$have_all" = 1 ] && [ "$REBUILD" != 1 ]; then
    log "    ${K8S_BINARIES[*]} are v$K8S_V (skip)"
else
    building "k8s.io/kubernetes@v$K8S_V (~15 min cold on 2 cores; log: $STEP_LOG)"
    dir=$(module_dir "k8s.io/kubernetes@v$K8S_V") || exit 1
    work="$SRC/kubernetes"
    fresh_copy "$dir" "$work"
    cd "$work"
    rm -f go.work go.work.sum
    # Module zips omit staging/: point every `k8s.io/X => ./staging/src/k8s.io/X` at the published k8s.io/X
    # of the same release (v0.34.2 for v1.34.2).
    staging_version="v0.${K8S_V#*.}"
    edits=()
    while read -r mod; do
        edits+=(-replace "$mod=$mod@$staging_version")
    done < <(go mod edit -json | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"]["Path"].startswith("./staging/"):
        print(r["Old"]["Path"])')
    [ "${#edits[@]}" -gt 0 ] || fail "k8s.io/kubernetes@v$K8S_V has no ./staging replaces: layout changed?"
    run "re-pointing the staging replaces at $staging_version" go mod edit "${edits[@]}"
    major=${K8S_V%%.*} minor=${K8S_V#*.}
    minor=${minor%%.*}
    ver_pkg=k8s.io/component-base/version
    ldflags="-s -w -X $ver_pkg.gitVersion=v$K8S_V -X $ver_pkg.gitMajor=$major -X $ver_pkg.gitMinor=$minor"
    ldflags="$ldflags -X $ver_pkg.gitTreeState=clean -X $ver_pkg.buildDate=1970-01-01T00:00:00Z"
    ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_V"
    run "go build of the control plane (k8s.io/kubernetes@v$K8S_V)" env GOWORK=off CGO_ENABLED=0 \
        go build -trimpath -ldflags "$ldflags" -o "$SRC/kubernetes-bin/" \
        "${K8S_BINARIES[@]/#/./cmd/}"
    for b in "${K8S_BINARIES[@]}"; do
        install_file "$SRC/kubernetes-bin/$b" "$BIN/$b"
        "$BIN/$b" --version | grep -qx "Kubernetes v$K8S_V" || fail "$b reports '$("$BIN/$b" --version)'"
    done
    cd "$ROOT"
    rm -rf "$work" "$SRC/kubernetes-bin"
fi

# ---------------------------------------------------------------------------------------------------------
step "kwok $DOCKYARD_KWOK_VERSION"
if [ -x "$BIN/kwok" ] && "$BIN/kwok" --version 2>/dev/null | grep -qF "${DOCKYARD_KWOK_VERSION#v}" && [ "$REBUILD" != 1 ]; then
    log "    kwok $DOCKYARD_KWOK_VERSION (skip)"
else
    building "sigs.k8s.io/kwok/cmd/kwok@$DOCKYARD_KWOK_VERSION with go install (log: $STEP_LOG)"
    run "go install of kwok" env GOBIN="$BIN" CGO_ENABLED=0 GOFLAGS= \
        go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$DOCKYARD_KWOK_VERSION"
fi
# The Stage rules kwok plays (without them it exits "no stages found"): nodes initialize and keep leases; pods
# become Ready at once (the "fast" pod stages: no random start-up delay, so rollouts take seconds), complete and
# are deleted. One multi-document file for kwok's --config.
kwok_dir=$(module_dir "sigs.k8s.io/kwok@$DOCKYARD_KWOK_VERSION") || exit 1
stages=(node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease
    pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete)
tmp=$(mktemp "$ROOT/kwok-stages.yaml.XXXXXX")
for s in "${stages[@]}"; do
    f="$kwok_dir/kustomize/stage/$s.yaml"
    [ -f "$f" ] || fail "kwok $DOCKYARD_KWOK_VERSION has no stage kustomize/stage/$s.yaml"
    printf -- '---\n' >>"$tmp"
    cat "$f" >>"$tmp"
done
chmod 0644 "$tmp"
mv -f "$tmp" "$ROOT/kwok-stages.yaml"
log "    stages: $ROOT/kwok-stages.yaml"

# ---------------------------------------------------------------------------------------------------------
step "pause image $DOCKYARD_PAUSE_IMAGE"
# No public registry is reachable, so the sandbox image is made here: a static Go binary in a one-layer OCI archive
# that scripts/local-cluster.sh imports into containerd's k8s.io namespace. Imported rather than pushed to the local
# registry: the node then starts without the registry running and containerd needs no credentials for it.
PAUSE_ARCHIVE="$ROOT/pause.oci.tar"
pause_src="$SCRIPT_DIR/cluster/pause/main.go"
pause_stamp="$(sha256sum "$pause_src" | cut -c1-16) $DOCKYARD_PAUSE_IMAGE"
if [ -s "$PAUSE_ARCHIVE" ] && [ "$(cat "$PAUSE_ARCHIVE.source" 2>/dev/null)" = "$pause_stamp" ] && [ "$REBUILD" != 1 ]; then
    log "    $PAUSE_ARCHIVE (skip)"
else
    work=$(mktemp -d "$SRC/pause.XXXXXX")
    mkdir -p "$work/rootfs" "$work/oci/blobs/sha256"
    cp "$pause_src" "$work/main.go"
    run "go build of the pause binary" env -C "$work" CGO_ENABLED=0 GOFLAGS= GOWORK=off \
        go build -trimpath -ldflags "-s -w" -o "$work/rootfs/pause" main.go
    # blob FILE: store FILE under its digest; prints "sha256:<hex> <size>".
    blob() {
        local sum
        sum=$(sha256sum "$1" | cut -d' ' -f1)
        cp "$1" "$work/oci/blobs/sha256/$sum"
        printf 'sha256:%s %s\n' "$sum" "$(stat -c %s "$1")"
    }
    # Reproducible layer: fixed owner, order and mtime, so a rebuild of the same source is the same image.
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/rootfs" -cf "$work/layer.tar" pause
    read -r layer layer_size < <(blob "$work/layer.tar")
    printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
        "$layer" >"$work/config.json"
    read -r config config_size < <(blob "$work/config.json")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
        "$config" "$config_size" "$layer" "$layer_size" >"$work/manifest.json"
    read -r manifest manifest_size < <(blob "$work/manifest.json")
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
        "$manifest" "$manifest_size" "$DOCKYARD_PAUSE_IMAGE" "${DOCKYARD_PAUSE_IMAGE##*:}" >"$work/oci/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/oci" -cf "$PAUSE_ARCHIVE.tmp" .
    mv -f "$PAUSE_ARCHIVE.tmp" "$PAUSE_ARCHIVE"
    printf '%s\n' "$pause_stamp" >"$PAUSE_ARCHIVE.source"
    rm -rf "$work"
    log "    $PAUSE_ARCHIVE ($DOCKYARD_PAUSE_IMAGE, $manifest)"
fi

finished "$(ls "$BIN" | tr '\n' ' ')"
log "start it: scripts/local-cluster.sh start"
