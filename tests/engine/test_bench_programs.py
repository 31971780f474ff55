"""Every benchmark's Pulumi program previews on the real engine, so a benchmark cannot rot between its runs.

The benchmarks themselves (``bench/``) take minutes each; their programs are what drifts when the components change
(``bench.preview``'s services program once passed an argument ``KubernetesApp`` no longer took).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.timing import PROGRAMS, program_workspace

pytestmark = pytest.mark.engine

#: Config each program requires (the services program: how many copies of the app).
PROGRAM_CONFIG = {"services": {"services": "2"}}


@pytest.mark.parametrize("program", sorted(p.name for p in PROGRAMS.iterdir()))
def test_the_program_previews(engine: str, program: str, tmp_path: Path) -> None:
    workspace = program_workspace(program, root=tmp_path)
    workspace.init("bench")
    for key, value in PROGRAM_CONFIG.get(program, {}).items():
        workspace.pulumi("config", "set", key, value, "--stack", "bench")
    preview = workspace.pulumi("preview", "--stack", "bench", "--json")
    steps = preview.json().get("steps", [])
    assert steps, f"{program}: the preview planned nothing"
    if program == "services":
        apps = [s for s in steps if s["op"] == "create" and s["urn"].rsplit("::", 1)[-1] in ("svc0", "svc1")]
        assert len(apps) == 2, [s["urn"] for s in steps]
