"""Shared helpers for the benchmarks: a throw-away project copy and a wall-clock timer around pulumi commands."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from dockyard.model.config import read_stack_file
from tests.engine.harness import Workspace, kubectl, make_workspace
from tests.local_services import start_local_cluster, start_local_services
from tests.stacks import PROJECT

T = TypeVar("T")

#: The benchmarks' own Pulumi programs (tests/engine/test_bench_programs.py previews each).
PROGRAMS = Path(__file__).parent / "programs"


def workspace(extra_env: dict[str, str] | None = None, root: Path | None = None) -> Workspace:
    return make_workspace(root or Path(tempfile.mkdtemp(prefix="dockyard-bench-")), extra_env)


def program_workspace(name: str, extra_env: dict[str, str] | None = None, root: Path | None = None) -> Workspace:
    """A workspace running one of bench/programs/<name> on the project's virtualenv and engine."""
    base = workspace(extra_env, root)
    program = base.directory.parent / name
    shutil.copytree(PROGRAMS / name, program)
    (program / ".venv").symlink_to(PROJECT / ".venv")
    base.directory = program
    base.env["PYTHONPATH"] = str(PROJECT)
    return base


def timed(workspace: Workspace, *args: str, repeat: int = 1) -> float:
    """Best wall-clock seconds of ``pulumi <args>`` over ``repeat`` runs (best-of is robust to a noisy machine)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        workspace.pulumi(*args, timeout=3600)
        best = min(best, time.perf_counter() - start)
    return best


def rebuild(ws: Workspace, change: str) -> float:
    """Seconds of a warm ``up --stack local`` that really rebuilds: ``change`` is a new line in the app's source."""
    main_go = ws.directory / "app" / "main.go"
    main_go.write_text(main_go.read_text() + f"\n// bench: {change}\n")
    start = time.perf_counter()
    ws.pulumi("up", "--stack", "local", "--yes", "--skip-preview", timeout=3600)
    return time.perf_counter() - start


def verdict(met: bool) -> str:
    return "[green]met[/green]" if met else "[red]MISSED[/red]"


def on_local_cluster(measure: Callable[[Workspace], T], stacks: Iterable[str]) -> T:
    """``measure`` on a throw-away copy of the project using the local services and cluster; the namespaces the
    copy gave ``stacks`` (tests.engine.harness.isolate_namespaces) are deleted afterwards."""
    project = workspace({**start_local_services(), **start_local_cluster()})
    try:
        return measure(project)
    finally:
        namespaces = [read_stack_file(project.stack_file(stack))["kubernetes"]["namespace"] for stack in stacks]
        kubectl(project, "delete", "--wait=false", *(f"namespace/{n}" for n in namespaces), check=False)
