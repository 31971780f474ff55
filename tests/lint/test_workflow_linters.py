"""The committed workflows, and those of the local chain that the engine tier runs under act, pass actionlint, the
SchemaStore workflow schema and zizmor with zero findings.

Offline: actionlint comes from ``scripts/install-linters.sh`` (``$HOME/.cache/dockyard/bin`` or PATH),
check-jsonschema and zizmor from the dev dependencies. Locally a missing linter skips; with ``CI=true`` it fails.
Each linter is also run once on a deliberately bad workflow, so a linter that silently checks nothing fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
TOOLS_DIR = Path(os.environ.get("DOCKYARD_TOOLS_DIR", Path.home() / ".cache" / "dockyard" / "bin"))

#: Valid syntax, insecure content: every linter that reads meaning must object to it.
INSECURE_WORKFLOW = """\
name: bad
on: pull_request_target
jobs:
  greet:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: echo "${{ github.event.pull_request.title }}"
"""
#: Breaks the schema: a job needs runs-on (or uses), and a step cannot be a bare string.
INVALID_WORKFLOW = """\
name: invalid
on: push
jobs:
  nothing:
    steps:
      - just a string
"""


def _tool(name: str) -> str:
    """Path of ``name``: the linter cache, the venv running pytest, then PATH; skip locally, fail in CI."""
    for candidate in (TOOLS_DIR / name, Path(sys.executable).parent / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed: run scripts/install-linters.sh and pip install -e '.[dev]'"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".github" / "workflows" / "bad.yml"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def workflows(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The committed workflows and the local chain's (tests/engine/test_workflow_run.py runs its delivery.yml)."""
    out = tmp_path_factory.mktemp("local-chain")
    stacks = "local,local-staging,local-prod"
    command = [sys.executable, "-m", "scripts.generate_workflows", "--stacks", stacks, "--systems", "github"]
    result = _run([*command, "--out", str(out)])
    assert result.returncode == 0, result.stderr
    return [*WORKFLOWS, *sorted((out / ".github" / "workflows").glob("*.yml"))]


@pytest.fixture
def bad_workflow(tmp_path: Path) -> Path:
    return _write(tmp_path, INSECURE_WORKFLOW)


@pytest.fixture
def invalid_workflow(tmp_path: Path) -> Path:
    return _write(tmp_path, INVALID_WORKFLOW)


def test_there_are_workflows_to_lint() -> None:
    assert {path.name for path in WORKFLOWS} == {"ci.yml", "preview.yml", "delivery.yml", "mr-env.yml"}


def test_actionlint_reports_nothing(workflows: list[Path]) -> None:
    result = _run([_tool("actionlint"), "-no-color", *map(str, workflows)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert not result.stdout.strip(), result.stdout


def test_actionlint_does_catch_a_bad_workflow(bad_workflow: Path) -> None:
    result = _run([_tool("actionlint"), "-no-color", str(bad_workflow)])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "github.event.pull_request.title" in result.stdout


def test_workflows_match_the_schemastore_schema(workflows: list[Path]) -> None:
    result = _run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, workflows)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_does_reject_an_invalid_workflow(invalid_workflow: Path) -> None:
    result = _run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(invalid_workflow)])
    assert result.returncode == 1, result.stdout + result.stderr


def test_zizmor_finds_nothing_even_pedantic(workflows: list[Path]) -> None:
    # Pedantic also wants a reason next to every permission, which dockyard/pipeline/github.py writes.
    result = _run([_tool("zizmor"), "--offline", "--persona=pedantic", "--no-progress", *map(str, workflows)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout, result.stdout
    assert "suppressed" not in result.stdout, "an ignored finding needs its reason reviewed: " + result.stdout


def test_zizmor_does_flag_a_bad_workflow(bad_workflow: Path) -> None:
    result = _run([_tool("zizmor"), "--offline", "--no-progress", str(bad_workflow)])
    assert result.returncode != 0, result.stdout + result.stderr
    for audit in ("template-injection", "unpinned-uses", "dangerous-triggers", "artipacked"):
        assert audit in result.stdout, f"zizmor did not report {audit}:\n{result.stdout}"
