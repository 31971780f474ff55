"""The delivery workflow of a project whose stacks are in helm mode (none committed is) passes actionlint, the
SchemaStore schema and zizmor, as the committed workflows do (tests/lint/test_workflow_linters.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.pipeline import derive, github
from tests.lint.test_workflow_linters import _run, _tool
from tests.unit.test_chart_pipeline import helm_stacks


@pytest.fixture
def helm_workflows(tmp_path: Path) -> list[Path]:
    paths = []
    for name, text in github.render(derive.derive_pipeline(helm_stacks("dev", "staging", "prod"))).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    assert any("Install helm" in path.read_text() for path in paths)
    return paths


def test_actionlint_schema_and_zizmor_accept_the_helm_steps(helm_workflows: list[Path]) -> None:
    linted = _run([_tool("actionlint"), "-no-color", *map(str, helm_workflows)])
    assert linted.returncode == 0, linted.stdout + linted.stderr
    schema = _run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, helm_workflows)])
    assert schema.returncode == 0, schema.stdout + schema.stderr
    audited = _run([_tool("zizmor"), "--offline", "--persona=pedantic", "--no-progress", *map(str, helm_workflows)])
    assert "No findings to report" in audited.stdout, audited.stdout
