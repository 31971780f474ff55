#!/usr/bin/env bash
# Every test tier, as CI runs it: static checks (ruff, mypy, generated files) beside one pytest run over unit (mocks),
# lint, integration (registry + podman), engine and drills (the real pulumi CLI on the local cluster) on three
# pytest-xdist workers (tests/conftest.py places them and prints one line per tier and the slowest modules). The
# static checks' output is printed when pytest ends; the exit code is non-zero if either failed.
#
#   scripts/test.sh                 everything (installs and starts what the tiers need)
#   scripts/test.sh --quick         the edit loop: static checks and the unit tier; no services, no engine
#   scripts/test.sh [--] PYTEST_ARGS  the full set-up, then pytest with these arguments only (e.g. tests/engine -x)
#
# Env: DOCKYARD_TEST_WORKERS  pytest-xdist workers (3 on this machine's 2 cores: the tests mostly wait on processes)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Python caches compiled modules (and pytest the test modules it rewrites for assertions): a shell that sets
# PYTHONDONTWRITEBYTECODE made every worker and every Python a test starts compile them again (the unit tier took
# 67 s of CPU instead of 45 s).
unset PYTHONDONTWRITEBYTECODE

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
workers=${DOCKYARD_TEST_WORKERS:-3}
summary=()
failed=0

# record NAME RC SECONDS: keep a tier's one-line result for the summary.
record() {
    local line
    line=$(printf 'tier %-12s %s in %ss' "$1" "$([ "$2" = 0 ] && echo passed || echo "FAILED (exit $2)")" "$3")
    printf '%s\n' "$line" >&2
    summary+=("$line")
    [ "$2" = 0 ] || failed=1
}

# tier NAME CMD...: run one tier.
tier() {
    local name=$1 start=$SECONDS rc=0
    shift
    step "tier $name"
    "$@" || rc=$?
    record "$name" "$rc" "$((SECONDS - start))"
}

# beside NAME CMD... -- CMD2...: run the tier NAME in the background while CMD2 (a tier) runs, then print its output
# and result. The static checks are one process at a time; beside pytest's start (its workers collect and set up
# fixtures) they cost no wall time of their own.
beside() {
    local name=$1 log status
    shift
    local command=()
    while [ "$1" != "--" ]; do command+=("$1"); shift; done
    shift
    log=$(mktemp) status=$(mktemp)
    (
        start=$SECONDS rc=0
        "${command[@]}" >"$log" 2>&1 || rc=$?
        echo "$rc $((SECONDS - start))" >"$status"
    ) &
    local pid=$!
    "$@"
    wait "$pid" || true
    step "tier $name (ran beside the tier above)"
    cat "$log" >&2
    local rc seconds
    read -r rc seconds <"$status" || { rc=1 seconds='?'; }
    record "$name" "$rc" "$seconds"
    rm -f "$log" "$status"
}

static_checks() {
    .venv/bin/ruff check . &&
        .venv/bin/ruff format --check . &&
        .venv/bin/mypy components/dockyard_components dockyard policies/rules.py scripts __main__.py &&
        .venv/bin/python -m scripts.generate_workflows --check &&
        .venv/bin/python -m scripts.config_reference --check
}

pytest_tier() { .venv/bin/python -m pytest "$@"; }

report() {
    step "summary (${SECONDS}s in all)"
    printf '%s\n' "${summary[@]}" >&2
    exit "$failed"
}

step "virtualenv"
scripts/setup-venv.sh

if [ "${1:-}" = "--quick" ]; then
    beside static static_checks -- tier unit pytest_tier -n "$workers" --dist loadfile tests/unit
    report
fi
[ "${1:-}" = "--" ] && shift

step "workflow linters"
scripts/install-linters.sh
step "gitlab-ci-local (the engine tier runs the generated GitLab pipeline)"
scripts/install-ci-local.sh >/dev/null
step "Pulumi engine, Kubernetes control plane, supply-chain tools, act (side by side)"
scripts/bootstrap.sh
step "local registry and base images, local cluster"
scripts/local-services.sh start
# What earlier runs left in podman's storage (~500 images a run): every podman call reads the whole image list.
scripts/local-services.sh prune
scripts/local-cluster.sh start
# shellcheck source=scripts/local-env.sh
. scripts/local-env.sh
export PATH="${DOCKYARD_CACHE:-$HOME/.cache/dockyard}/bin:$PATH"

if [ "$#" -gt 0 ]; then
    tier pytest pytest_tier "$@"
    report
fi

beside static static_checks -- tier pytest pytest_tier -n "$workers" --dist loadfile tests
report
