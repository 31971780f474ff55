#!/usr/bin/env bash
# Install the pipeline linters that tests/lint/test_workflow_linters.py and test_pipeline_linters.py run.
# Idempotent; safe to run every time.
#
#   actionlint  -> ${DOCKYARD_TOOLS_DIR:-$HOME/.cache/dockyard/bin}, built with `go install` (the Go module proxy
#                  serves the source; the PyPI wrapper downloads a binary at build time and fails offline)
#   ShellCheck  -> Debian package, if missing and we are root (actionlint uses it to lint run: scripts, and
#                  test_pipeline_linters.py the GitLab CI, CircleCI and Jenkins shell)
#   groovy      -> Debian package (with default-jre-headless, whose /usr/lib/jvm/default-java it runs on): the real
#                  Groovy parser that tests/lint/test_pipeline_linters.py reads the generated Jenkinsfile with
#
# check-jsonschema (SchemaStore's GitHub, GitLab CI and CircleCI schemas) and zizmor are pinned Python dev
# dependencies (pip install -e '.[dev]').
set -euo pipefail

ACTIONLINT_VERSION="v1.7.12"
# Debian 12's package: the 2.4 line Jenkins core bundles, so the Jenkinsfile is parsed as Jenkins parses it.
GROOVY_VERSION="2.4.21"
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
  echo "shellcheck not installed: actionlint will not lint run: scripts, and the pipeline shell tests skip (CI: fail)" >&2
fi

installed_groovy_version() {
  groovy --version 2>/dev/null | sed -n 's/^Groovy Version: \([^ ]*\) .*/\1/p'
}

if [ "$(installed_groovy_version)" = "$GROOVY_VERSION" ]; then
  echo "groovy $GROOVY_VERSION already installed"
elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq groovy default-jre-headless >/dev/null
  if [ "$(installed_groovy_version)" != "$GROOVY_VERSION" ]; then
    echo "install-linters: Debian's groovy reports '$(installed_groovy_version)', not $GROOVY_VERSION" >&2
    exit 1
  fi
  echo "installed groovy $GROOVY_VERSION"
else
  echo "install-linters: groovy $GROOVY_VERSION is missing and this is not root: apt-get install -y groovy default-jre-headless" >&2
  exit 1
fi
