#!/usr/bin/env bash
# Install the workflow linters that tests/lint/test_workflow_linters.py runs. Idempotent; safe to run every time.
#
#   actionlint  -> ${DOCKYARD_TOOLS_DIR:-$HOME/.cache/dockyard/bin}, built with `go install` (the Go module proxy
#                  serves the source; the PyPI wrapper downloads a binary at build time and fails offline)
#   ShellCheck  -> Debian package, if missing and we are root (actionlint uses it to lint run: scripts)
#
# check-jsonschema and zizmor are pinned Python dev dependencies (pip install -e '.[dev]').
set -euo pipefail

ACTIONLINT_VERSION="v1.7.12"
TOOLS_DIR="${DOCKYARD_TOOLS_DIR:-$HOME/.cache/dockyard/bin}"

installed_actionlint_version() {
  "$TOOLS_DIR/actionlint" -version 2>/dev/null | head -n 1 || true
}

if [ "$(installed_actionlint_version)" = "$ACTIONLINT_VERSION" ]; then
  echo "actionlint $ACTIONLINT_VERSION already in $TOOLS_DIR"
else
  if ! command -v go >/dev/null 2>&1; then
    echo "install-linters: 'go' is not on PATH; actionlint $ACTIONLINT_VERSION needs Go to build" >&2
    exit 1
  fi
  mkdir -p "$TOOLS_DIR"
  echo "building actionlint $ACTIONLINT_VERSION into $TOOLS_DIR"
  # Outside any module, so the repository's own files never influence the build.
  (cd "$(mktemp -d)" && GOBIN="$TOOLS_DIR" GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION")
  if [ "$(installed_actionlint_version)" != "$ACTIONLINT_VERSION" ]; then
    echo "install-linters: $TOOLS_DIR/actionlint does not report $ACTIONLINT_VERSION" >&2
    exit 1
  fi
fi

if command -v shellcheck >/dev/null 2>&1; then
  echo "shellcheck already installed"
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null && echo "installed shellcheck"
else
  echo "shellcheck not installed (optional): actionlint will not lint run: scripts" >&2
fi
