#!/usr/bin/env bash
# Every tool the project builds from Go modules: the Pulumi engine, the Kubernetes control plane, the supply-chain
# tools and act (the engine tier runs the generated GitHub workflow with it). They build independent programs into
# one Go build cache, so they run side by side: on 2 cores one keeps the CPU busy while another downloads modules or
# links. Warm, each only checks its versions.
# Each prints its own lines (prefixed with its name) and its time; the first failure fails the whole run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

pids=()
for bootstrap in engine cluster supply-chain act; do
    scripts/bootstrap-$bootstrap.sh &
    pids+=("$!")
done
failed=0
for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
done
exit "$failed"
