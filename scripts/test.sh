#!/usr/bin/env bash
# Every test tier, as CI runs it: static checks (ruff, mypy, generated files), then one pytest run over unit (mocks),
# lint, integration (registry + podman), engine and drills (the real pulumi CLI on the local cluster) on three
# pytest-xdist workers (tests/conftest.py places them and prints one line per tier and the slowest modules). Both run
# even when the static checks fail; the exit code is non-zero if either failed.
#
#   scripts/test.sh                 everything (installs and starts what the tiers need)
#   scripts/test.sh --quick         the edit loop: static checks and the unit tier; no services, no engine
#   scripts/test.sh [--] PYTEST_ARGS  the full set-up, then pytest with these arguments only (e.g. tests/engine -x)
#
# Env: DOCKYARD_TEST_WORKERS  pytest-xdist workers (3 on this machine's 2 cores: the tests mostly wait on processes)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
workers=${DOCKYARD_TEST_WORKERS:-3}
summary=()
failed=0

# tier NAME CMD...: run one tier, keep its one-line result for the summary.
tier() {
    local name=$1 start=$SECONDS rc=0
    shift
    step "tier $name"
    "$@" || rc=$?
    local line
    line=$(printf 'tier %-12s %s in %ss' "$name" "$([ "$rc" = 0 ] && echo passed || echo "FAILED (exit $rc)")" \
        "$((SECONDS - start))")
    printf '%s\n' "$line" >&2
    summary+=("$line")
    [ "$rc" = 0 ] || failed=1
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
    tier static static_checks
    tier unit pytest_tier -n "$workers" --dist loadfile tests/unit
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

tier static static_checks
tier pytest pytest_tier -n "$workers" --dist loadfile tests
report
