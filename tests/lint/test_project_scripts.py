"""The project's own shell scripts (bootstraps, local services and cluster, the test and main jobs) pass shellcheck,
following the files they source."""

from __future__ import annotations

from tests.lint.test_workflow_linters import _run, _tool
from tests.stacks import PROJECT

SCRIPTS = sorted([*PROJECT.glob("scripts/*.sh"), PROJECT / "scripts" / "engine" / "env.sh", PROJECT / ".ci" / "run"])


def test_every_project_script_passes_shellcheck() -> None:
    result = _run(
        [_tool("shellcheck"), "--shell=bash", "--severity=warning", "-x", "--source-path=SCRIPTDIR", *map(str, SCRIPTS)]
    )
    assert result.returncode == 0, result.stdout[-4000:]
