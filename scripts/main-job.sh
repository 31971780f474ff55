#!/usr/bin/env bash
# The main job on the local embedded default, from a fresh machine: virtualenv, Pulumi engine, local registry
# and builder, local Kubernetes control plane, then `pulumi up --stack local` (build with podman, push, deploy to
# the live API server and wait for the rollout), its outputs and the live objects.
# Running it again changes nothing: 0 updates, no rebuild.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
step "virtualenv"; scripts/setup-venv.sh
step "Pulumi engine, Kubernetes control plane, supply-chain tools (side by side)"; scripts/bootstrap.sh
step "local registry and base images"; scripts/local-services.sh start
step "local cluster"; scripts/local-cluster.sh start
# shellcheck source=scripts/local-env.sh
. scripts/local-env.sh
stack=${1:-local}
pulumi stack select "$stack" 2>/dev/null || pulumi stack init "$stack" --secrets-provider passphrase
step "pulumi up --stack $stack"
# --skip-preview: the update prints every change as it makes it; a separate preview would run the program twice.
pulumi up --stack "$stack" --yes --skip-preview
step "outputs"
pulumi stack output --stack "$stack"
step "live objects"
kubectl get deploy,svc,pods -n "$(pulumi stack output --stack "$stack" namespace)"
