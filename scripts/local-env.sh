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
# DOCKYARD_BACKEND picks where: `file` (the default: one operator, no server) or `postgres` (the team backend that
# scripts/local-services.sh runs: every stack and every dockyard command then reads and writes PostgreSQL). The
# PostgreSQL URL names no password: lib/pq (pulumi) and libpq (dockyard) read it from the pgpass file.
# An explicit PULUMI_BACKEND_URL wins over both.
case "${DOCKYARD_BACKEND:-file}" in
    file)
        export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://${DOCKYARD_CACHE:-$HOME/.cache/dockyard}/state}"
        case "$PULUMI_BACKEND_URL" in file://*) mkdir -p "${PULUMI_BACKEND_URL#file://}" ;; esac
        ;;
    postgres)
        export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-$DOCKYARD_POSTGRES_URL}"
        export PGPASSFILE="${PGPASSFILE:-$DOCKYARD_POSTGRES_PASSFILE}"
        ;;
    *) echo "scripts/local-env.sh: DOCKYARD_BACKEND is '$DOCKYARD_BACKEND'; allowed: file, postgres" >&2 ;;
esac
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE:-dockyard-local}"
export PATH="$_dockyard_root/.venv/bin:${DOCKYARD_CACHE:-$HOME/.cache/dockyard}/supply-chain/bin:$PATH"
unset _dockyard_root
