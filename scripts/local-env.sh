# Source this: the engine, the local services' settings, the local cluster's kubeconfig and the local backend,
# for `pulumi`, `dockyard` and `kubectl`.
#   source scripts/local-env.sh
# shellcheck shell=bash
_dockyard_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/engine/env.sh
. "$_dockyard_root/scripts/engine/env.sh"
eval "$("$_dockyard_root/scripts/local-services.sh" env 2>/dev/null)"
eval "$("$_dockyard_root/scripts/local-cluster.sh" env 2>/dev/null)"
DOCKYARD_REGISTRY_PASSWORD=$(cat "$DOCKYARD_REGISTRY_PASSWORD_FILE" 2>/dev/null || true)
export DOCKYARD_REGISTRY_PASSWORD
# State of every stack lives outside the checkout; the local stacks' passphrase is public on purpose
# (their secrets are demo values); real stacks get theirs from CI secrets.
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://${DOCKYARD_CACHE:-$HOME/.cache/dockyard}/state}"
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE:-dockyard-local}"
mkdir -p "${PULUMI_BACKEND_URL#file://}"
export PATH="$_dockyard_root/.venv/bin:${DOCKYARD_CACHE:-$HOME/.cache/dockyard}/supply-chain/bin:$PATH"
unset _dockyard_root
