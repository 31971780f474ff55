# Helpers shared by the bootstrap scripts that build tools from Go modules (engine, cluster, supply chain).
# Source after setting LOG_PREFIX, SRC (a scratch dir for `go mod download`) and LOGS (one log per step).
# shellcheck shell=bash

STEP="setup"
STEP_LOG=""
START=$SECONDS
BUILT=0

log() { printf '[%s] %s\n' "$LOG_PREFIX" "$*"; }
step() {
    STEP="$1"
    STEP_LOG="$LOGS/$(printf '%s' "$1" | tr -c 'A-Za-z0-9._-' '_').log"
    : >"$STEP_LOG"
    log "==> $1 (t+$((SECONDS - START))s)"
}
fail() {
    trap - ERR
    printf '[%s] FAILED in step "%s": %s\n' "$LOG_PREFIX" "$STEP" "$*" >&2
    if [ -n "$STEP_LOG" ] && [ -s "$STEP_LOG" ]; then
        printf '[%s] last lines of %s:\n' "$LOG_PREFIX" "$STEP_LOG" >&2
        tail -n 25 "$STEP_LOG" | sed 's/^/    /' >&2
    fi
    exit 1
}
trap 'fail "unexpected error (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

# building WHAT: announce a build from Go modules (the cold path); finished then records the cold time.
building() {
    BUILT=1
    log "    building $*"
}

# finished SUMMARY: the bootstrap's last line with its time. A run that built records its time under ROOT; a warm run
# (only version checks) names the cold build's recorded time beside its own.
finished() {
    trap - ERR
    local took=$((SECONDS - START)) record="$ROOT/cold-build-seconds" cold day
    if [ "$BUILT" = 1 ]; then
        printf '%s %s\n' "$took" "$(date -u +%Y-%m-%d)" >"$record"
        log "done in ${took}s (cold: built from Go modules): $*"
    elif read -r cold day 2>/dev/null <"$record"; then
        log "done in ${took}s (warm; the cold build took ${cold}s on $day): $*"
    else
        log "done in ${took}s (warm): $*"
    fi
}

# run DESCRIPTION CMD...: run a command with its output in the step log; fail with DESCRIPTION if it fails.
run() {
    local what="$1"
    shift
    printf '+ %s\n' "$*" >>"$STEP_LOG"
    "$@" >>"$STEP_LOG" 2>&1 || fail "$what (exit $?): $*"
}

# scratch_module: a go.mod so `go mod download` runs outside any project module.
scratch_module() {
    mkdir -p "$SRC"
    [ -f "$SRC/go.mod" ] || printf 'module dockyard.local/bootstrap-scratch\n\ngo 1.22\n' >"$SRC/go.mod"
}

# module_dir MODULE@VERSION: download a module through the Go module proxy, print its directory.
module_dir() {
    local json dir err
    scratch_module
    printf '+ go mod download -json %s\n' "$1" >>"$STEP_LOG"
    json=$(cd "$SRC" && go mod download -json "$1" 2>>"$STEP_LOG") || true
    printf '%s\n' "$json" >>"$STEP_LOG"
    dir=$(printf '%s' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
    if [ -z "$dir" ] || [ ! -d "$dir" ]; then
        err=$(printf '%s' "$json" | sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' | sed 's/\\n/ /g; s/\\t/ /g')
        fail "module $1 could not be downloaded: ${err:-see log}"
    fi
    printf '%s\n' "$dir"
}

# fresh_copy SRC_DIR DEST_DIR: writable copy of a (read-only) module directory.
fresh_copy() {
    rm -rf "$2"
    mkdir -p "$(dirname "$2")"
    cp -R "$1" "$2"
    chmod -R u+w "$2"
}

# install_file SRC DEST: copy an executable if missing or different.
install_file() {
    if ! cmp -s "$1" "$2" 2>/dev/null; then
        cp "$1" "$2.tmp"
        chmod 0755 "$2.tmp"
        mv -f "$2.tmp" "$2"
        log "    installed $(basename "$2")"
    fi
}

# apt_install PACKAGE...: install Debian packages that are missing (root only).
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || fail "missing Debian packages: ${missing[*]} (run as root, or install them)"
    log "    installing Debian packages: ${missing[*]}"
    run "apt-get update" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -q
    run "apt-get install ${missing[*]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
}
