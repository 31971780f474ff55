"""The processes of one engine run, read from /proc: what a kill -9 drill checks is gone; and following the advice
``dockyard doctor`` prints after such a fault, as a user would."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from dockyard_components.scripts.build_guard import command_line, descendants, start_time
from tests.engine.harness import Result, Workspace


@dataclass(frozen=True)
class RunProcess:
    pid: int
    started: str
    command: str

    def alive(self) -> bool:
        """Still there (a zombie is gone: it only waits to be reaped)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        return start_time(self.pid) == self.started and stat.rsplit(")", 1)[1].split()[0] != "Z"


def run_processes(root: int) -> list[RunProcess]:
    """Every process the engine ``root`` started, directly or not."""
    return [RunProcess(pid, started, command_line(pid)) for pid, started in descendants(root, exclude=set())]


def follow_advice(workspace: Workspace, report: Result) -> None:
    """Run each ``$ command`` a doctor report printed, in order, in the workspace; each must succeed."""
    advice = [line.strip().removeprefix("$ ") for line in report.stdout.splitlines() if line.strip().startswith("$ ")]
    assert advice, report.stdout
    for command in advice:
        followed = subprocess.run(
            command,
            shell=True,
            cwd=workspace.directory,
            env=workspace.env,
            capture_output=True,
            text=True,
            timeout=2400,
            check=False,
        )
        assert followed.returncode == 0, f"{command}:\n{followed.stdout[-3000:]}{followed.stderr[-3000:]}"
