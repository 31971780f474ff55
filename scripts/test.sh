#!/usr/bin/env bash
# Every test tier, as CI runs it: lint and types, unit (mocks), workflow linters, integration (registry + podman)
# and engine (the real pulumi CLI). Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -x).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
step "virtualenv"; scripts/setup-venv.sh
step "workflow linters"; scripts/install-linters.sh
step "Pulumi engine"; scripts/bootstrap-engine.sh
step "Kubernetes control plane"; scripts/bootstrap-cluster.sh
step "supply-chain tools (cosign, syft, regctl)"; scripts/bootstrap-supply-chain.sh
step "local registry and base images"; scripts/local-services.sh start
step "local cluster"; scripts/local-cluster.sh start
# shellcheck source=scripts/local-env.sh
. scripts/local-env.sh
export PATH="${DOCKYARD_CACHE:-$HOME/.cache/dockyard}/bin:$PATH"

step "ruff, mypy, generated files"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy components/dockyard_components dockyard policies/rules.py scripts __main__.py
.venv/bin/python -m scripts.generate_workflows --check
.venv/bin/python -m scripts.config_reference --check

step "pytest"
.venv/bin/python -m pytest "${@:-tests}"
