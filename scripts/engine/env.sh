# Source this file (bash or zsh) to use Dockyard's Pulumi engine built by scripts/bootstrap-engine.sh:
#   source scripts/engine/env.sh
# It puts the engine's bin directory first on PATH, keeps PULUMI_HOME (plugins, credentials) in the cache,
# turns off update checks and automatic plugin downloads (no internet here), and exports the pinned versions.
# shellcheck shell=bash

if [ -n "${BASH_SOURCE[0]:-}" ]; then
    _dockyard_engine_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
elif [ -n "${ZSH_VERSION:-}" ]; then
    # shellcheck disable=SC2296
    _dockyard_engine_dir=$(cd "$(dirname "${(%):-%x}")" && pwd)
else
    _dockyard_engine_dir=$(pwd)/scripts/engine
fi

# shellcheck source=scripts/engine/versions.env
. "$_dockyard_engine_dir/versions.env"
export DOCKYARD_PULUMI_VERSION DOCKYARD_PULUMI_POLICY_VERSION DOCKYARD_KUBERNETES_VERSION \
    DOCKYARD_GITHUB_VERSION DOCKYARD_COMMAND_VERSION

export DOCKYARD_CACHE="${DOCKYARD_CACHE:-$HOME/.cache/dockyard}"
export DOCKYARD_ENGINE_DIR="$DOCKYARD_CACHE/engine/$DOCKYARD_PULUMI_VERSION"
export DOCKYARD_ENGINE_BIN="$DOCKYARD_ENGINE_DIR/bin"
case ":${PATH:-}:" in
    *":$DOCKYARD_ENGINE_BIN:"*) ;;
    *) export PATH="$DOCKYARD_ENGINE_BIN${PATH:+:$PATH}" ;;
esac
export PULUMI_HOME="$DOCKYARD_ENGINE_DIR/home"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true

if [ ! -x "$DOCKYARD_ENGINE_BIN/pulumi" ]; then
    echo "scripts/engine/env.sh: no engine in $DOCKYARD_ENGINE_DIR yet; run scripts/bootstrap-engine.sh" >&2
fi
unset _dockyard_engine_dir
