#!/usr/bin/env bash
# Install what runs Dockyard's generated GitLab pipeline on this machine (tests/engine/test_pipeline_run.py,
# bench/pipeline.py): gitlab-ci-local and the Node 22 it needs (Debian's Node 20 dies in it), both pinned by
# scripts/ci-local/package.json and its package-lock.json, and Debian's rsync, which gitlab-ci-local copies the
# checkout with. Idempotent; prints the directory whose bin/ holds `gitlab-ci-local` and `node`.
#
#   scripts/install-ci-local.sh      -> ${DOCKYARD_CACHE:-$HOME/.cache/dockyard}/ci-local/<lockfile hash>
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cache="${DOCKYARD_CACHE:-$HOME/.cache/dockyard}/ci-local"
# Keyed by the lockfile: a changed pin installs beside the old one, a fresh clone reuses the cache.
key=$(sha256sum scripts/ci-local/package-lock.json | cut -c1-16)
dir="$cache/$key"

if ! command -v rsync >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq >&2 && apt-get install -y -qq rsync >/dev/null
    else
        echo "install-ci-local: rsync is missing and this is not root: apt-get install -y rsync" >&2
        exit 1
    fi
fi

if [ ! -x "$dir/node_modules/.bin/gitlab-ci-local" ] || [ ! -x "$dir/node_modules/.bin/node" ]; then
    echo "install-ci-local: npm ci (gitlab-ci-local, node) into $dir" >&2
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    cp scripts/ci-local/package.json scripts/ci-local/package-lock.json "$dir.tmp/"
    (cd "$dir.tmp" && npm ci --no-audit --no-fund --loglevel=error >&2)
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
# The pinned Node first on PATH: gitlab-ci-local's `#!/usr/bin/env node` then finds it, not Debian's.
version=$(PATH="$dir/node_modules/.bin:$PATH" gitlab-ci-local --version)
expected=$(sed -n 's/.*"gitlab-ci-local": "\(.*\)".*/\1/p' scripts/ci-local/package.json)
if [ "$version" != "$expected" ]; then
    echo "install-ci-local: gitlab-ci-local reports $version, scripts/ci-local/package.json pins $expected" >&2
    exit 1
fi
echo "$dir/node_modules/.bin"
