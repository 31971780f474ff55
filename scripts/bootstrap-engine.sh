#!/usr/bin/env bash
# Bootstrap Dockyard's real Pulumi engine on this kind of machine, from package registries only:
#   - the `pulumi` CLI, built from github.com/pulumi/pulumi/pkg/v3 (or taken from PATH when it is the pinned version)
#   - the Python language host `pulumi-language-python` (our own, scripts/engine/language-python: the upstream
#     module is not served by the Go module proxy here) plus the sdk/v3 scripts it needs
#   - the YAML language host `pulumi-language-yaml`, built from github.com/pulumi/pulumi-yaml (cmd/pulumi-language-yaml)
#   - resource provider plugins (kubernetes; github/command when a buildable source version is configured),
#     installed with `pulumi plugin install resource NAME VERSION --file BINARY`
# Everything lives outside the repo under ${DOCKYARD_CACHE:-$HOME/.cache/dockyard}/engine/<pulumi-version>/.
# Idempotent: a second run only checks what is there (seconds). Pins: scripts/engine/versions.env.
#
# Usage: scripts/bootstrap-engine.sh            then: source scripts/engine/env.sh
# Env:   DOCKYARD_CACHE         cache root (default ~/.cache/dockyard)
#        DOCKYARD_ENGINE_STRICT=1  fail (instead of warn) when a configured provider is unavailable
#        DOCKYARD_ENGINE_REBUILD=1 rebuild everything (ignores built binaries)
set -Eeuo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ENGINE_SRC="$SCRIPT_DIR/engine"
# shellcheck source=engine/versions.env
. "$ENGINE_SRC/versions.env"

V="$DOCKYARD_PULUMI_VERSION"
CACHE="${DOCKYARD_CACHE:-$HOME/.cache/dockyard}"
ROOT="$CACHE/engine/$V"
BIN="$ROOT/bin"
SRC="$ROOT/src"
LOGS="$ROOT/logs"
export PULUMI_HOME="$ROOT/home"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
# -mod=mod: the module copies we build from get their go.sum completed from the proxy.
export GOFLAGS="${GOFLAGS:--mod=mod}"
REBUILD="${DOCKYARD_ENGINE_REBUILD:-0}"
STRICT="${DOCKYARD_ENGINE_STRICT:-0}"

LOG_PREFIX=bootstrap-engine
# shellcheck source=lib/gobuild.sh
. "$SCRIPT_DIR/lib/gobuild.sh"
WARNINGS=()

binary_version() { "$1" version 2>/dev/null | head -n1 | tr -d '[:space:]' || true; }

# ---------------------------------------------------------------------------------------------------------
mkdir -p "$BIN" "$SRC" "$LOGS" "$PULUMI_HOME" "$ROOT/providers"
step "preflight"
command -v go >/dev/null 2>&1 || fail "the Go toolchain is not on PATH (needed to build the engine; it is at /usr/local/go/bin on this machine kind)"
GO_VERSION=$(go env GOVERSION)
log "    go $GO_VERSION, GOMODCACHE=$(go env GOMODCACHE), cache=$ROOT"
command -v python3 >/dev/null 2>&1 || WARNINGS+=("python3 is not on PATH: Pulumi Python programs will not run")
scratch_module

# ---------------------------------------------------------------------------------------------------------
step "pulumi CLI v$V"
PKG_MOD="github.com/pulumi/pulumi/pkg/v3"
SDK_MOD="github.com/pulumi/pulumi/sdk/v3"
CLI_VERSION_LDFLAG="github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$V"
have=""
[ -x "$BIN/pulumi" ] && [ "$REBUILD" != 1 ] && have=$(binary_version "$BIN/pulumi")
if [ "$have" = "v$V" ]; then
    log "    $BIN/pulumi is v$V (skip)"
else
    # Use a pulumi from PATH (outside our bin) if it is exactly the pinned version.
    path_pulumi=""
    IFS=: read -r -a path_dirs <<<"${PATH:-}"
    for d in "${path_dirs[@]}"; do
        if [ -n "$d" ] && [ "$d" != "$BIN" ] && [ -x "$d/pulumi" ] && [ "$(binary_version "$d/pulumi")" = "v$V" ]; then
            path_pulumi="$d/pulumi"
            break
        fi
    done
    if [ -n "$path_pulumi" ] && [ "$REBUILD" != 1 ]; then
        ln -sfn "$path_pulumi" "$BIN/pulumi"
        log "    using $path_pulumi from PATH (already v$V)"
    else
        building "$PKG_MOD@v$V (several minutes on 2 cores; log: $STEP_LOG)"
        dir=$(module_dir "$PKG_MOD@v$V") || exit 1
        fresh_copy "$dir" "$SRC/pulumi-pkg"
        cd "$SRC/pulumi-pkg"
        # The module replaces sdk/v3 with ../sdk (the monorepo); use the released sdk/v3 of the same version.
        run "pointing pkg/v3 at the released sdk/v3@v$V" \
            go mod edit -dropreplace "$SDK_MOD" -require "$SDK_MOD@v$V"
        run "go mod tidy of $PKG_MOD@v$V (module not served or incompatible?)" go mod tidy
        run "go build of $PKG_MOD@v$V ./cmd/pulumi" \
            go build -trimpath -tags osusergo,grpcnotrace \
            -ldflags "-s -w -X $CLI_VERSION_LDFLAG" -o "$BIN/pulumi.tmp" ./cmd/pulumi
        mv -f "$BIN/pulumi.tmp" "$BIN/pulumi"
        cd "$ROOT"
        have=$(binary_version "$BIN/pulumi")
        [ "$have" = "v$V" ] || fail "built pulumi reports '$have', expected v$V"
        log "    built $BIN/pulumi ($have)"
    fi
fi

# ---------------------------------------------------------------------------------------------------------
step "python scripts from $SDK_MOD@v$V"
SDK_DIR=$(module_dir "$SDK_MOD@v$V") || exit 1
[ -f "$SDK_DIR/python/cmd/pulumi-language-python-exec" ] ||
    fail "$SDK_MOD@v$V has no python/cmd/pulumi-language-python-exec"
install_file "$SDK_DIR/python/cmd/pulumi-language-python-exec" "$BIN/pulumi-language-python-exec"
[ -f "$SDK_DIR/python/dist/pulumi-resource-pulumi-python" ] ||
    fail "$SDK_MOD@v$V has no python/dist/pulumi-resource-pulumi-python"
install_file "$SDK_DIR/python/dist/pulumi-resource-pulumi-python" "$BIN/pulumi-resource-pulumi-python"
if [ -f "$SDK_DIR/python/dist/pulumi-analyzer-policy-python" ]; then
    install_file "$SDK_DIR/python/dist/pulumi-analyzer-policy-python" "$BIN/pulumi-analyzer-policy-python"
else
    # Not shipped by this sdk/v3 version; our equivalent (only used when no python language plugin is found).
    install_file "$ENGINE_SRC/pulumi-analyzer-policy-python" "$BIN/pulumi-analyzer-policy-python"
fi
log "    exec script, dynamic-provider and policy-analyzer scripts in place"

# ---------------------------------------------------------------------------------------------------------
step "language host pulumi-language-python"
LH_SRC="$ENGINE_SRC/language-python"
lh_key=$( (cat "$LH_SRC/go.mod" "$LH_SRC/go.sum" "$LH_SRC"/*.go; echo "sdk=v$V go=$GO_VERSION") | sha256sum | cut -c1-16)
if [ -x "$BIN/pulumi-language-python" ] && [ "$(cat "$ROOT/language-python.key" 2>/dev/null)" = "$lh_key" ] &&
    [ "$REBUILD" != 1 ]; then
    log "    up to date (skip)"
else
    fresh_copy "$LH_SRC" "$SRC/language-python"
    cd "$SRC/language-python"
    if ! grep -q "^[[:space:]]*$SDK_MOD v$V\$" go.mod && ! grep -q "^require $SDK_MOD v$V\$" go.mod; then
        run "pointing the language host at $SDK_MOD@v$V" go mod edit -require "$SDK_MOD@v$V"
        run "go mod tidy of the language host for $SDK_MOD@v$V" go mod tidy
    fi
    run "go build of the language host (scripts/engine/language-python)" \
        go build -trimpath -ldflags "-s -w -X main.version=v$V" -o "$BIN/pulumi-language-python.tmp" .
    mv -f "$BIN/pulumi-language-python.tmp" "$BIN/pulumi-language-python"
    printf '%s\n' "$lh_key" >"$ROOT/language-python.key"
    cd "$ROOT"
    log "    built $BIN/pulumi-language-python"
fi

# ---------------------------------------------------------------------------------------------------------
# The YAML language host (Pulumi YAML programs, e.g. consuming our Python components through
# pulumi.provider.experimental.component_provider_host). It has no --version flag and reports its version only
# over gRPC, so a key file records what was built (module version, our patch, Go version).
YV="$DOCKYARD_PULUMI_YAML_VERSION"
step "language host pulumi-language-yaml v$YV"
YAML_MOD="github.com/pulumi/pulumi-yaml"
YAML_PATCH="$ENGINE_SRC/pulumi-yaml/link.go"
yaml_key="$YAML_MOD@v$YV patch=$(sha256sum <"$YAML_PATCH" | cut -c1-16) go=$GO_VERSION"
if [ -x "$BIN/pulumi-language-yaml" ] && [ "$(cat "$ROOT/language-yaml.key" 2>/dev/null)" = "$yaml_key" ] &&
    [ "$REBUILD" != 1 ]; then
    log "    v$YV up to date (skip)"
else
    building "$YAML_MOD@v$YV (a few minutes on 2 cores; log: $STEP_LOG)"
    dir=$(module_dir "$YAML_MOD@v$YV") || exit 1
    fresh_copy "$dir" "$SRC/pulumi-yaml"
    cd "$SRC/pulumi-yaml"
    # Its own go.mod/go.sum (sdk/v3 and pkg/v3 at the versions it pins, not ours: the engine talks to it over
    # gRPC), plus a no-op LanguageRuntime.Link that v1.25.0 lacks (`pulumi package add`/`pulumi install` need it).
    [ -d pkg/server ] || fail "$YAML_MOD@v$YV has no pkg/server (the patch $YAML_PATCH targets it)"
    cp "$YAML_PATCH" pkg/server/dockyard_link.go
    run "go build of $YAML_MOD@v$YV ./cmd/pulumi-language-yaml" \
        go build -trimpath -ldflags "-s -w -X $YAML_MOD/pkg/version.Version=v$YV" \
        -o "$BIN/pulumi-language-yaml.tmp" ./cmd/pulumi-language-yaml
    mv -f "$BIN/pulumi-language-yaml.tmp" "$BIN/pulumi-language-yaml"
    printf '%s\n' "$yaml_key" >"$ROOT/language-yaml.key"
    cd "$ROOT"
    log "    built $BIN/pulumi-language-yaml"
fi

# ---------------------------------------------------------------------------------------------------------
# Providers. build_provider NAME PLUGIN_VERSION MODULE MODULE_VERSION [extra go mod edit args...]
# Builds MODULE@MODULE_VERSION ./cmd/pulumi-resource-NAME from a writable copy (so the module's own replace
# directives apply), running the provider's generate.go (embedded schema) with VERSION set first.
build_provider() {
    local name="$1" pver="$2" module="$3" mver="$4"
    shift 4
    local out="$ROOT/providers/$name/$pver/pulumi-resource-$name"
    if [ -x "$out" ] && [ "$REBUILD" != 1 ]; then
        log "    $name $pver already built (skip)"
        return 0
    fi
    building "$module@$mver as $name v$pver (several minutes; log: $STEP_LOG)"
    local dir
    dir=$(module_dir "$module@$mver") || exit 1
    local work="$SRC/provider-$name-$pver"
    fresh_copy "$dir" "$work"
    cd "$work"
    if [ "$#" -gt 0 ]; then
        run "adjusting go.mod of $module@$mver" go mod edit "$@"
    fi
    run "downloading dependencies of $module@$mver" go mod download
    local cmd_dir="./cmd/pulumi-resource-$name"
    [ -d "$cmd_dir" ] || fail "$module@$mver has no $cmd_dir"
    if [ -f "$cmd_dir/generate.go" ]; then
        cd "$cmd_dir"
        run "generating the embedded schema of $name (generate.go)" env VERSION="$pver" go run generate.go
        cd "$work"
    fi
    mkdir -p "$(dirname "$out")"
    run "go build of $module@$mver $cmd_dir" \
        go build -trimpath -ldflags "-s -w -X $module/pkg/version.Version=$pver" -o "$out.tmp" "$cmd_dir"
    mv -f "$out.tmp" "$out"
    cd "$ROOT"
    log "    built $out"
}

# install_plugin NAME VERSION: install a built provider into PULUMI_HOME (skip when already installed).
install_plugin() {
    local name="$1" pver="$2"
    local bin="$ROOT/providers/$name/$pver/pulumi-resource-$name"
    if [ -x "$PULUMI_HOME/plugins/resource-$name-v$pver/pulumi-resource-$name" ] && [ "$REBUILD" != 1 ]; then
        log "    plugin resource $name v$pver installed (skip)"
        return 0
    fi
    run "pulumi plugin install resource $name $pver" \
        "$BIN/pulumi" plugin install resource "$name" "$pver" --file "$bin" --reinstall
    log "    installed plugin resource $name v$pver"
}

provider_unavailable() {
    local msg="$1"
    if [ "$STRICT" = 1 ]; then
        fail "$msg"
    fi
    WARNINGS+=("$msg")
    log "    WARNING: $msg"
}

step "provider kubernetes v$DOCKYARD_KUBERNETES_VERSION"
build_provider kubernetes "$DOCKYARD_KUBERNETES_VERSION" "$DOCKYARD_KUBERNETES_MODULE" \
    "$DOCKYARD_KUBERNETES_MODULE_VERSION" \
    -dropreplace github.com/pulumi/pulumi-kubernetes/sdk/v4 \
    -require "github.com/pulumi/pulumi-kubernetes/sdk/v4@$DOCKYARD_KUBERNETES_GO_SDK_VERSION"
install_plugin kubernetes "$DOCKYARD_KUBERNETES_VERSION"

step "provider github"
if [ -n "${DOCKYARD_GITHUB_VERSION:-}" ]; then
    build_provider github "$DOCKYARD_GITHUB_VERSION" "$DOCKYARD_GITHUB_MODULE" \
        "${DOCKYARD_GITHUB_MODULE_VERSION:-v$DOCKYARD_GITHUB_VERSION}"
    install_plugin github "$DOCKYARD_GITHUB_VERSION"
else
    provider_unavailable "github provider not built: no version of $DOCKYARD_GITHUB_MODULE is served by the Go module proxy here (403 for every tag tried, incl. v6.15.0); stacks using pulumi_github cannot preview with this engine"
fi

step "provider command"
if [ -n "${DOCKYARD_COMMAND_VERSION:-}" ]; then
    build_provider command "$DOCKYARD_COMMAND_VERSION" "$DOCKYARD_COMMAND_MODULE" \
        "${DOCKYARD_COMMAND_MODULE_VERSION:-v$DOCKYARD_COMMAND_VERSION}"
    install_plugin command "$DOCKYARD_COMMAND_VERSION"
else
    provider_unavailable "command provider not built: $DOCKYARD_COMMAND_MODULE has no tags and none of its versions is served by the Go module proxy here (v1.2.1: not found; other versions: 403); stacks using pulumi_command cannot preview with this engine"
fi

# ---------------------------------------------------------------------------------------------------------
step "check"
run "pulumi version" "$BIN/pulumi" version
run "pulumi plugin ls" "$BIN/pulumi" plugin ls
"$BIN/pulumi" plugin ls 2>/dev/null | sed 's/^/    /'
finished "pulumi $(binary_version "$BIN/pulumi"), PULUMI_HOME=$PULUMI_HOME"
for w in "${WARNINGS[@]+"${WARNINGS[@]}"}"; do
    log "WARNING: $w"
done
log "add to PATH: $BIN"
log "or: source $ENGINE_SRC/env.sh"
