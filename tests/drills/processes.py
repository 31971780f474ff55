"""The processes of one engine run, read from /proc: what a kill -9 drill checks is gone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dockyard_components.scripts.build_guard import command_line, descendants, start_time


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
