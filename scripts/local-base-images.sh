#!/usr/bin/env bash
# Build, offline, the local stand-ins for the two base images of app/Dockerfile and keep them
# in podman's local storage (shared with buildah and skopeo through containers-storage):
#
#   localhost/dockyard/go-builder:<go version>   (stands in for docker.io/library/golang:1.26-bookworm)
#       busybox-static for /bin/sh and the usual applets, plus this machine's Go toolchain
#       (`go env GOROOT`, trimmed to what builds and tests need) at /usr/local/go; GOPATH=/go, GOTOOLCHAIN=local, GOPROXY=off,
#       GOSUMDB=off, CGO_ENABLED=0: `go build` / `go test` work offline for modules without
#       external dependencies (app/ has none). Also tagged :<major.minor> and :local.
#   localhost/dockyard/static-nonroot:1           (stands in for gcr.io/distroless/static-debian12:nonroot)
#       FROM scratch: /etc/passwd + /etc/group with nonroot (65532), CA bundle, /tmp (1777),
#       /home/nonroot; USER 65532:65532. Also tagged :local. Its files are the same for every
#       architecture, so it is made for each of RUNTIME_ARCHES (:1-amd64, :1-arm64; :1 is amd64), as
#       distroless is, for multi-arch app images (nothing runs in it: no emulation needed).
#   localhost/dockyard/redis:7                    (stands in for docker.io/library/redis:7-bookworm: the cache that
#       app/compose.integration.yaml runs the integration tests against) FROM scratch: Debian bookworm's Redis 7.0
#       server and redis-cli (package redis-tools; the server binary is redis-check-rdb, started as redis-server)
#       with the shared libraries they link; USER 65532:65532, no persistence, protected mode off (the tests reach
#       it from another container, as the official image allows). Also tagged :local.
#
# `publish` pushes them to the local registry (DOCKYARD_REGISTRY, default 127.0.0.1:5443; podman's login,
# REGISTRY_AUTH_FILE) as $REGISTRY/dockyard/base/go-builder:<go version> and $REGISTRY/dockyard/base/static-nonroot:1
# (an image index of RUNTIME_ARCHES), and `print` then also names them by digest (DOCKYARD_*_IMAGE_PINNED): what a
# build in a fresh podman storage pulls, and what a reproducible build names. Every time in the images is 0
# (`buildah commit --timestamp 0`), so the same inputs give the same digests.
#
# `build` contacts no registry. Each image carries the label io.dockyard.input-digest, a hash of its
# recipe and inputs; an image whose label matches is left alone (idempotent), so running this
# script again costs a second or two.
#
# It also makes podman usable here, once per machine (as root):
#   * installs missing Debian packages (podman, buildah, skopeo, runc for `podman run`, busybox-static,
#     ca-certificates, redis-tools);
#   * writes /etc/containers/storage.conf when that file is absent or was written here: driver "overlay" when a
#     probe mount of overlayfs works (as root on ext4 here), "vfs" otherwise, each in a graph root of its own, so
#     that plain `podman build` / `buildah` / `skopeo` use the same store with no --storage-driver flag.
# Builds must still run with --isolation=chroot (or BUILDAH_ISOLATION=chroot): the default OCI
# runtime cannot set rlimits on this machine.
#
# Usage: scripts/local-base-images.sh [build] [--force]   build what is missing or stale (default)
#        scripts/local-base-images.sh publish              push them to the local registry (after build)
#        scripts/local-base-images.sh print                print `export DOCKYARD_*_IMAGE=...` lines
#        scripts/local-base-images.sh setup                packages + storage.conf only
set -euo pipefail

readonly BUILDER_REPO="localhost/dockyard/go-builder"
readonly RUNTIME_REPO="localhost/dockyard/static-nonroot"
readonly RUNTIME_REF="$RUNTIME_REPO:1"
readonly REDIS_REPO="localhost/dockyard/redis"
readonly REDIS_REF="$REDIS_REPO:7"
readonly RUNTIME_ARCHES=(amd64 arm64)
readonly PUBLISH_REGISTRY="${DOCKYARD_REGISTRY:-127.0.0.1:5443}"
readonly PINNED_FILE="${DOCKYARD_STATE:-${HOME:-/root}/.cache/dockyard/local}/base-images.env"
readonly DIGEST_LABEL="io.dockyard.input-digest"
readonly STORAGE_CONF="${DOCKYARD_STORAGE_CONF:-/etc/containers/storage.conf}"
readonly CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt"
readonly LOCK_FILE="${DOCKYARD_BASE_IMAGES_LOCK:-/tmp/dockyard-base-images.lock}"
STORAGE_DRIVER=""
ARCH=amd64

log() { printf '[base-images] %s\n' "$*" >&2; }
die() { printf '[base-images] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- packages and storage

APT_UPDATED=0
apt_install() {
    # Installs Debian packages non-interactively (root only); runs `apt-get update` once.
    [ "$#" -gt 0 ] || return 0
    if [ "$(id -u)" -ne 0 ]; then
        die "missing packages: $* (run this script as root, or install them)"
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        apt-get -o DPkg::Lock::Timeout=300 update -q >&2
        APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    apt-get -o DPkg::Lock::Timeout=300 install -y -q "$@" >&2
}

ensure_packages() {
    local missing=() pair cmd pkg
    # runc: the integration stage's `podman run` (crun cannot set rlimits here); redis-tools: the cache image.
    for pair in podman:podman buildah:buildah skopeo:skopeo runc:runc flock:util-linux redis-check-rdb:redis-tools; do
        cmd=${pair%%:*} pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    # busybox-static conflicts with the dynamic busybox package, so when it is installed
    # /bin/busybox is the static binary the images need.
    dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' \
        || missing+=(busybox-static)
    [ -s "$CA_BUNDLE" ] || missing+=(ca-certificates)
    apt_install "${missing[@]}"
}

# Our store per driver: a store opens only with the driver that made it, so each driver has a root of its own (a
# machine moving from vfs to overlay keeps its old store untouched and builds its base images again in the new one).
graph_root_for() { if [ "$1" = overlay ]; then echo /var/lib/containers/storage-overlay; else echo /var/lib/containers/storage; fi; }
run_root_for() { if [ "$1" = overlay ]; then echo /run/containers/storage-overlay; else echo /run/containers/storage; fi; }
readonly CONF_MARKER="# Written by dockyard scripts/local-base-images.sh"

overlay_mounts() {
    # podman's overlay driver needs native overlay mounts on its graph root's filesystem; vfs copies every layer
    # whole at every build step (the app's build with every step cached: 109 s on vfs, 7 s on overlay here).
    [ "$(id -u)" -eq 0 ] || return 1
    local probe ok=1
    mkdir -p /var/lib/containers
    probe=$(mktemp -d /var/lib/containers/.overlay-probe.XXXXXX) || return 1
    mkdir -p "$probe/lower" "$probe/upper" "$probe/work" "$probe/merged"
    if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
        "$probe/merged" 2>/dev/null; then
        umount "$probe/merged" && ok=0
    fi
    rm -rf "$probe"
    return "$ok"
}

wanted_driver() {
    case "${DOCKYARD_STORAGE_DRIVER:-}" in
        overlay | vfs) echo "$DOCKYARD_STORAGE_DRIVER" ;;
        '') if overlay_mounts; then echo overlay; else echo vfs; fi ;;
        *) die "DOCKYARD_STORAGE_DRIVER='$DOCKYARD_STORAGE_DRIVER'; allowed: overlay, vfs (unset: overlay when it mounts)" ;;
    esac
}

write_storage_conf() {
    local driver=$1
    [ "$(id -u)" -eq 0 ] || die "$STORAGE_CONF needs driver $driver; run once as root to write it"
    log "writing $STORAGE_CONF (driver $driver, graph root $(graph_root_for "$driver"))"
    mkdir -p "$(dirname "$STORAGE_CONF")"
    cat >"$STORAGE_CONF.tmp.$$" <<EOF
$CONF_MARKER: overlay when this machine mounts overlayfs natively
# (a probe mount decides; DOCKYARD_STORAGE_DRIVER=vfs forces vfs), vfs otherwise. One store per driver.
# Shared by podman, buildah and skopeo.
[storage]
driver = "$driver"
runroot = "$(run_root_for "$driver")"
graphroot = "$(graph_root_for "$driver")"
EOF
    mv "$STORAGE_CONF.tmp.$$" "$STORAGE_CONF"
}

ensure_storage() {
    # One store for podman, buildah and skopeo, in the conf podman reads by default. A conf we did not write is the
    # machine owner's: used as it is.
    local wanted current driver
    if [ ! -e "$STORAGE_CONF" ] || grep -qF "$CONF_MARKER" "$STORAGE_CONF"; then
        wanted=$(wanted_driver)
        current=$(sed -n 's/^[[:space:]]*driver[[:space:]]*=[[:space:]]*"\([a-z]*\)".*/\1/p' "$STORAGE_CONF" 2>/dev/null || true)
        if [ "$current" != "$wanted" ] || ! grep -qF "\"$(graph_root_for "$wanted")\"" "$STORAGE_CONF"; then
            write_storage_conf "$wanted"
        fi
    fi
    if ! driver=$(podman info --format '{{.Store.GraphDriverName}}' 2>&1); then
        die "podman cannot open its store: $driver
  (a libpod database created with another driver: 'podman system reset --force' clears it, with all its images)"
    fi
    case "$driver" in
        overlay | vfs) STORAGE_DRIVER=$driver ;;
        *) die "podman uses storage driver '$driver'; Dockyard's builds are checked on overlay and vfs (check CONTAINERS_STORAGE_CONF / $STORAGE_CONF)" ;;
    esac
}

# ---------------------------------------------------------------- helpers

find_go() {
    if command -v go >/dev/null 2>&1; then command -v go; return; fi
    [ -x /usr/local/go/bin/go ] && { echo /usr/local/go/bin/go; return; }
    die "no Go toolchain found (go not on PATH, no /usr/local/go): the go-builder image copies the host's"
}

go_version() { "$(find_go)" env GOVERSION | sed 's/^go//'; }

builder_ref() { echo "$BUILDER_REPO:$(go_version)"; }

image_label() { # ref -> value of the input-digest label, empty if no such image
    podman image inspect --format "{{index .Labels \"$DIGEST_LABEL\"}}" "$1" 2>/dev/null || true
}

sha256_of() { sha256sum | cut -d' ' -f1; }

WORK_CTR=""
WORK_DIR=""
GO_ROOT=""
GO_VER=""
cleanup() {
    if [ -n "$WORK_CTR" ]; then
        buildah umount "$WORK_CTR" >/dev/null 2>&1 || true
        buildah rm "$WORK_CTR" >/dev/null 2>&1 || true
    fi
    [ -n "$WORK_DIR" ] && rm -rf "$WORK_DIR"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

write_passwd_files() { # rootfs dir
    local root=$1
    mkdir -p "$root/etc" "$root/tmp" "$root/root" "$root/home/nonroot" "$root/etc/ssl/certs"
    cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
    cat >"$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
    printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
    cp "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
    chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf" "$root/etc/ssl/certs/ca-certificates.crt"
    chmod 1777 "$root/tmp"
    chmod 0700 "$root/root"
    chown 65532:65532 "$root/home/nonroot"
    chmod 0700 "$root/home/nonroot"
}

# The two recipes. Their code (as `declare -f` prints it) is part of each image's input digest,
# so changing a recipe rebuilds the image.

populate_go_builder() { # rootfs dir (uses GO_ROOT)
    local root=$1 applet
    write_passwd_files "$root"
    mkdir -p "$root/bin" "$root/usr/local" "$root/go/bin" "$root/go/src" "$root/go/pkg" "$root/root/.cache"
    chmod 0777 "$root/go" "$root/go/bin" "$root/go/src" "$root/go/pkg"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    mkdir -p "$root/usr/bin" && ln -sf ../../bin/env "$root/usr/bin/env"
    # The toolchain minus what building and testing a module never reads: Go's own test suite,
    # docs, API lists, testdata and the sources of cmd/ (its tools ship prebuilt in pkg/tool; only
    # on-demand tools such as `go tool covdata`/pprof are missing). 160 MB instead of 270: with
    # the vfs driver (no overlay mounts) every build step copies the whole root filesystem.
    mkdir -p "$root/usr/local/go"
    tar -C "$GO_ROOT" --exclude=./test --exclude=./doc --exclude=./api --exclude=./src/cmd \
        --exclude=testdata -cf - . | tar -C "$root/usr/local/go" -xf -
}

configure_go_builder() { # container (uses GO_VER)
    local ctr=$1 gover=$GO_VER
    buildah config \
        --env "PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --env "GOLANG_VERSION=$gover" \
        --env "GOROOT=/usr/local/go" \
        --env "GOPATH=/go" \
        --env "GOCACHE=/root/.cache/go-build" \
        --env "GOTOOLCHAIN=local" \
        --env "GOPROXY=off" \
        --env "GOSUMDB=off" \
        --env "CGO_ENABLED=0" \
        --env "HOME=/root" \
        --workingdir /go \
        --user 0:0 \
        --cmd /bin/sh \
        --os linux --arch amd64 \
        --created-by "dockyard scripts/local-base-images.sh (offline stand-in for golang:$gover)" \
        --label "org.opencontainers.image.title=dockyard go-builder" \
        --label "org.opencontainers.image.description=Offline Go $gover toolchain on busybox-static" \
        --label "org.opencontainers.image.version=$gover" \
        "$ctr"
}

populate_static_nonroot() { # rootfs dir
    write_passwd_files "$1"
}

configure_static_nonroot() { # container (uses ARCH)
    buildah config \
        --env "PATH=/usr/local/bin:/usr/bin:/bin" \
        --env "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
        --workingdir /home/nonroot \
        --user 65532:65532 \
        --os linux --arch "$ARCH" \
        --created-by "dockyard scripts/local-base-images.sh (offline stand-in for distroless static:nonroot)" \
        --label "org.opencontainers.image.title=dockyard static-nonroot" \
        --label "org.opencontainers.image.description=scratch + passwd/group (nonroot 65532), CA bundle, /tmp" \
        "$1"
}

# The Redis server and redis-cli from redis-tools, with every shared library they link (and the loader).
redis_files() {
    printf '%s\n' /usr/bin/redis-check-rdb /usr/bin/redis-cli
    ldd /usr/bin/redis-check-rdb /usr/bin/redis-cli | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p'
}

populate_redis() { # rootfs dir
    local root=$1 file
    write_passwd_files "$root"
    for file in $(redis_files | LC_ALL=C sort -u); do
        mkdir -p "$root$(dirname "$file")"
        cp -L "$file" "$root$file"
    done
    # Debian's redis-server is this same binary under another name (it picks its mode from argv[0]).
    ln -s redis-check-rdb "$root/usr/bin/redis-server"
    mkdir -p "$root/data" && chown 65532:65532 "$root/data"
}

configure_redis() { # container
    buildah config \
        --env "PATH=/usr/bin:/bin" \
        --workingdir /data \
        --user 65532:65532 \
        --port 6379 \
        --entrypoint '[]' \
        --cmd '["redis-server", "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", "/data"]' \
        --os linux --arch amd64 \
        --created-by "dockyard scripts/local-base-images.sh (offline stand-in for redis:7-bookworm)" \
        --label "org.opencontainers.image.title=dockyard redis" \
        --label "org.opencontainers.image.description=Debian bookworm redis-server 7.0 and redis-cli on scratch" \
        --label "org.opencontainers.image.version=$(dpkg-query -W -f='${Version}' redis-tools)" \
        "$1"
}

redis_digest() {
    {
        echo "recipe"
        declare -f write_passwd_files redis_files populate_redis configure_redis
        dpkg-query -W -f='${Version}\n' redis-tools
        redis_files | LC_ALL=C sort -u | xargs sha256sum
        sha256sum "$CA_BUNDLE" | cut -d' ' -f1
    } | sha256_of
}

go_builder_digest() { # uses GO_ROOT, GO_VER
    {
        echo "recipe"
        declare -f write_passwd_files populate_go_builder configure_go_builder
        echo "go $GO_VER"
        # The toolchain by file list, sizes and mtimes: cheap, and changes with any reinstall.
        (cd "$GO_ROOT" && find . -type f -printf '%P %s %T@\n' | LC_ALL=C sort)
        sha256sum /bin/busybox "$CA_BUNDLE" | cut -d' ' -f1
    } | sha256_of
}

static_nonroot_digest() { # uses ARCH
    {
        echo "recipe $ARCH"
        declare -f write_passwd_files populate_static_nonroot configure_static_nonroot
        sha256sum "$CA_BUNDLE" | cut -d' ' -f1
    } | sha256_of
}

# build_image REF DIGEST POPULATE_CMD CONFIGURE_CMD [EXTRA_TAG...]
#   POPULATE_CMD gets the mounted rootfs appended, CONFIGURE_CMD the working container.
build_image() {
    local ref=$1 digest=$2 populate=$3 configure=$4
    shift 4
    local start=$SECONDS mnt
    WORK_CTR=$(buildah from --name "dockyard-base-$$-$RANDOM" scratch)
    mnt=$(buildah mount "$WORK_CTR")
    log "  filling the root filesystem"
    "$populate" "$mnt"
    buildah umount "$WORK_CTR" >/dev/null
    "$configure" "$WORK_CTR"
    buildah config --label "$DIGEST_LABEL=$digest" "$WORK_CTR"
    log "  committing $ref"
    buildah commit --quiet --rm --format oci --timestamp 0 "$WORK_CTR" "$ref" >/dev/null
    WORK_CTR=""
    local tag
    for tag in "$@"; do podman tag "$ref" "$tag"; done
    log "  built $ref in $((SECONDS - start))s"
}

ensure_image() { # ref digest populate configure [extra tags]
    local ref=$1 digest=$2 have
    have=$(image_label "$ref")
    if [ "$have" = "$digest" ] && [ "$FORCE" -eq 0 ]; then
        log "$ref is up to date (input digest ${digest:0:12})"
        local tag
        for tag in "${@:5}"; do podman tag "$ref" "$tag"; done
        return 0
    fi
    if [ -n "$have" ]; then log "$ref: inputs changed, rebuilding"; else log "$ref: building"; fi
    build_image "$@"
}

smoke_go_builder() { # ref
    local ctr out
    ctr=$(buildah from --name "dockyard-base-check-$$-$RANDOM" "$1")
    WORK_CTR=$ctr
    if ! out=$(buildah run --isolation chroot "$ctr" -- sh -c 'go version && go env GOROOT GOPROXY GOTOOLCHAIN CGO_ENABLED' 2>&1); then
        die "go-builder self-check failed: $out"
    fi
    buildah rm "$ctr" >/dev/null
    WORK_CTR=""
    log "  self-check: $(echo "$out" | head -1)"
}

# ---------------------------------------------------------------- commands

cmd_print() {
    local gover
    gover=$(go_version)
    printf 'export DOCKYARD_BUILDER_IMAGE=%s\n' "$BUILDER_REPO:$gover"
    printf 'export DOCKYARD_RUNTIME_IMAGE=%s\n' "$RUNTIME_REF"
    printf 'export DOCKYARD_CACHE_IMAGE=%s\n' "$REDIS_REF"
    # What `publish` pushed, by digest (absent before the first publish).
    [ -s "$PINNED_FILE" ] && cat "$PINNED_FILE"
    return 0
}

cmd_publish() { # push the base images to the local registry; record their digest references in PINNED_FILE
    local gover base builder_digest runtime_digest list arch work
    gover=$(go_version)
    base="$PUBLISH_REGISTRY/dockyard/base"
    work=$(mktemp -d)
    WORK_DIR=$work
    podman push --quiet --digestfile "$work/builder" "$BUILDER_REPO:$gover" "docker://$base/go-builder:$gover"
    builder_digest=$(cat "$work/builder")
    # The runtime base as one image index of every architecture, made afresh (a list only grows by `add`).
    list="localhost/dockyard/static-nonroot-index:$$"
    podman manifest create "$list" >/dev/null
    for arch in "${RUNTIME_ARCHES[@]}"; do
        podman manifest add "$list" "containers-storage:$RUNTIME_REF-$arch" >/dev/null
    done
    podman manifest push --quiet --all --format oci --digestfile "$work/runtime" "$list" "docker://$base/static-nonroot:1"
    podman manifest rm "$list" >/dev/null
    runtime_digest=$(cat "$work/runtime")
    mkdir -p "$(dirname "$PINNED_FILE")"
    printf 'export DOCKYARD_BUILDER_IMAGE_PINNED=%s\nexport DOCKYARD_RUNTIME_IMAGE_PINNED=%s\n' \
        "$base/go-builder@$builder_digest" "$base/static-nonroot@$runtime_digest" >"$PINNED_FILE.tmp.$$"
    mv "$PINNED_FILE.tmp.$$" "$PINNED_FILE"
    log "published $base/go-builder@$builder_digest and $base/static-nonroot@$runtime_digest (${RUNTIME_ARCHES[*]})"
}

cmd_build() {
    local t0=$SECONDS ref d_builder before
    ensure_packages
    ensure_storage
    exec 9>"$LOCK_FILE"
    flock -w 900 9 || die "another base-image build holds $LOCK_FILE"

    GO_ROOT=$("$(find_go)" env GOROOT)
    GO_VER=$(go_version)
    [ -x "$GO_ROOT/bin/go" ] || die "no go binary under GOROOT $GO_ROOT"
    ref="$BUILDER_REPO:$GO_VER"

    d_builder=$(go_builder_digest)
    before=$(image_label "$ref")
    ensure_image "$ref" "$d_builder" populate_go_builder configure_go_builder \
        "$BUILDER_REPO:${GO_VER%.*}" "$BUILDER_REPO:local"
    if [ "$before" != "$d_builder" ] || [ "$FORCE" -eq 1 ]; then smoke_go_builder "$ref"; fi

    for ARCH in "${RUNTIME_ARCHES[@]}"; do
        ensure_image "$RUNTIME_REF-$ARCH" "$(static_nonroot_digest)" populate_static_nonroot configure_static_nonroot
    done
    ARCH=amd64
    # The unsuffixed tags are this machine's architecture, as before there were several.
    podman tag "$RUNTIME_REF-amd64" "$RUNTIME_REF" "$RUNTIME_REPO:local"
    ensure_image "$REDIS_REF" "$(redis_digest)" populate_redis configure_redis "$REDIS_REPO:local"
    log "base images ready in $((SECONDS - t0))s: $ref (also :${GO_VER%.*}, :local), $RUNTIME_REF" \
        "(also :local, and :1-<arch> for ${RUNTIME_ARCHES[*]}), $REDIS_REF (also :local)"
}

FORCE=0
CMD=build
for arg in "$@"; do
    case "$arg" in
        build | print | setup | publish) CMD=$arg ;;
        --force) FORCE=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg' (usage: $0 [build|print|setup|publish] [--force])" ;;
    esac
done

case "$CMD" in
    print) cmd_print ;;
    setup) ensure_packages; ensure_storage; log "podman storage: $STORAGE_DRIVER ($STORAGE_CONF)" ;;
    build) cmd_build ;;
    publish) cmd_publish ;;
esac
