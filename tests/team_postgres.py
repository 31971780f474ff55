"""A PostgreSQL of a test's own, started by ``scripts/local-services.sh`` on its own state directory and port, so the
shared one keeps serving (and a test may stop or kill its own)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.local_services import SERVICES, parse_exports


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class OwnPostgres:
    """``local-services.sh`` settings of one PostgreSQL: its state directory and port."""

    state: Path
    port: int

    @property
    def settings(self) -> dict[str, str]:
        return {"DOCKYARD_STATE": str(self.state), "DOCKYARD_POSTGRES_PORT": str(self.port)}

    def services(self, *args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
        """``local-services.sh ARGS`` for this PostgreSQL (never the registry's commands: those are shared)."""
        return subprocess.run(
            [str(SERVICES), *args],
            env={**os.environ, **self.settings},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def start(self) -> None:
        started = self.services("start", "postgres")
        if started.returncode != 0:
            raise AssertionError(f"local-services.sh start postgres failed:\n{started.stderr[-3000:]}")

    def exports(self) -> dict[str, str]:
        return parse_exports(self.services("env").stdout)

    def url(self, table: str) -> str:
        """The engine's URL of a backend in its own table of this database (no password: the pgpass file has it)."""
        return f"{self.exports()['DOCKYARD_POSTGRES_URL']}&table={table}"

    def client_env(self, table: str) -> dict[str, str]:
        """What pulumi and dockyard need to use this database as their backend."""
        exports = self.exports()
        return {"PULUMI_BACKEND_URL": self.url(table), "PGPASSFILE": exports["DOCKYARD_POSTGRES_PASSFILE"]}

    def postmaster_pid(self) -> int | None:
        status = self.services("status", "postgres")
        words = status.stdout.split()
        return int(words[words.index("pid") + 1]) if status.returncode == 0 and "pid" in words else None

    def destroy(self) -> None:
        """Stop it and remove its data (as root the data directory lives under /var/lib/postgresql)."""
        self.services("stop", "postgres")
        data = self.services("status", "postgres").stdout.rsplit("(data ", 1)[-1].rstrip(")\n")
        if data.startswith("/var/lib/postgresql/dockyard/") or data.startswith(str(self.state)):
            shutil.rmtree(data, ignore_errors=True)


def cli_runs_the_copy(workspace_directory: Path, env: dict[str, str]) -> None:
    """Make the ``dockyard`` CLI of ``env`` import the workspace copy's code, as the program does, rather than
    whatever checkout the virtualenv's editable install points at."""
    env["PYTHONPATH"] = os.pathsep.join([str(workspace_directory), str(workspace_directory / "components")])


def start_postgres() -> dict[str, str]:
    """The local services' PostgreSQL (``start postgres`` is idempotent), and its ``env`` exports."""
    started = subprocess.run([str(SERVICES), "start", "postgres"], capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    printed = subprocess.run([str(SERVICES), "env"], capture_output=True, text=True, timeout=60, check=True)
    return parse_exports(printed.stdout)
