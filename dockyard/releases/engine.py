"""The ``pulumi`` CLI as dockyard runs it: one process per read, preview or update, each naming its ``--stack``.

Every engine process pays for its start-up, and that is most of what a dockyard command adds to the ``pulumi``
command it wraps. The Automation API adds several per move: ``pulumi version`` for each workspace, ``stack select``
before any preview, and after each ``up`` the outputs twice and the newest history entry with its secrets decrypted,
none of which a move reads. So dockyard runs the CLI itself: reads go straight to ``--json`` commands without
``--show-secrets`` (nothing read is secret), and a preview or update writes its engine events to an ``--event-log``
that is read once the run is over.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from dockyard.releases import backend
from dockyard.releases.errors import DockyardError, engine_error_line

OnOutput = Callable[[str], object]
OnEvent = Callable[[auto.EngineEvent], object]

#: What the CLI says when another update holds the stack (the service, and the diy backends' lock).
_CONCURRENT = ("[409] Conflict: Another update is currently in progress.", "the stack is currently locked by")
#: What the CLI (lib/pq, database/sql) says when its PostgreSQL backend is gone or going, before or during a run.
_POSTGRES_GONE = (
    "unable to open state database",
    "failed to ping PostgreSQL",
    "driver: bad connection",
    "the database system is shutting down",
    "terminating connection due to administrator command",
    "pq: ",
)
#: What any connection says when its peer goes away: the backend's only when the message names its address (a
#: cluster or registry connection may say the same).
_PEER_GONE = ("connection refused", "unexpected EOF", "broken pipe", "connection reset by peer")


class EngineError(DockyardError):
    """A ``pulumi`` run failed; the message is its last ``error:`` line (never the backend's password)."""

    def __init__(self, args: list[str], output: str) -> None:
        self.output = output
        super().__init__(f"pulumi {args[0]} failed: {backend.scrub(engine_error_line(RuntimeError(output)))}")


class StackMissingError(EngineError):
    """The stack has never been created in this backend."""


class ConcurrentUpdateError(EngineError):
    """Another update holds the stack's lock."""


class BackendGoneError(EngineError):
    """The PostgreSQL backend stopped answering before or during the run: the message names it and the way back."""

    def __init__(self, args: list[str], output: str, url: str) -> None:
        super().__init__(args, output)
        stack = args[args.index("--stack") + 1] if "--stack" in args[:-1] else None
        self.args = (
            f"pulumi {args[0]} failed: the state backend {backend.redact(url)} did not answer "
            f"({backend.scrub(engine_error_line(RuntimeError(output)), url)}); the state holds the last step it "
            f"saved: {backend.recovery(url, stack)}",
        )


def failure(args: list[str], output: str) -> EngineError:
    """The error of a failed ``pulumi <args>`` that said ``output``: a missing stack, a held lock and a PostgreSQL
    backend that went away have their own."""
    if "no stack named" in output:
        return StackMissingError(args, output)
    if any(text in output for text in _CONCURRENT):
        return ConcurrentUpdateError(args, output)
    url = os.environ.get("PULUMI_BACKEND_URL", "")
    if backend.is_postgres(url):
        address = backend.address(url)
        if any(text in output for text in _POSTGRES_GONE) or (
            address in output and any(text in output for text in _PEER_GONE)
        ):
            return BackendGoneError(args, output, url)
    return EngineError(args, output)


@dataclass(frozen=True)
class Engine:
    """The ``pulumi`` on PATH, run in the project ``directory`` with this process's environment."""

    directory: Path

    def run(self, args: list[str], on_output: OnOutput | None = None) -> str:
        """``pulumi <args>``; stdout, or :class:`EngineError` with what it said. Lines go to ``on_output`` as they
        come (stderr too: that is where the engine reports diagnostics)."""
        command = ["pulumi", "--non-interactive", *args]
        # --event-log is one of the flags the CLI shows only with PULUMI_DEBUG_COMMANDS (the Automation API sets it too).
        env = {**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_DEBUG_COMMANDS": "true"}
        try:
            process = subprocess.Popen(
                command, cwd=self.directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        except FileNotFoundError:
            raise DockyardError("pulumi is not on PATH (source scripts/local-env.sh)") from None
        stdout: list[str] = []
        stderr: list[str] = []
        # As the Automation API does: Popen's exit waits for the engine, even when an interrupt unwinds this frame
        # (the engine itself got the SIGINT: from the terminal, or dockyard.releases.config_guard).
        with process:
            readers = [
                threading.Thread(target=_consume, args=(process.stdout, stdout, on_output)),
                threading.Thread(target=_consume, args=(process.stderr, stderr, on_output)),
            ]
            for reader in readers:
                reader.start()
            for reader in readers:
                reader.join()
            code = process.wait()
        if code != 0:
            raise failure(args, "".join(stderr) + "".join(stdout))
        return "".join(stdout)

    def read(self, stack: str, *args: str) -> Any:
        """``pulumi <args> --stack <stack> --json``, parsed."""
        return json.loads(self.run([*args, "--json", "--stack", stack]) or "null")

    def stack(self, name: str, *, create: bool) -> EngineStack:
        return EngineStack(self, name, create)

    def stack_names(self) -> list[str]:
        """The project's stacks in the backend (``pulumi stack ls``), by their short name."""
        listed = json.loads(self.run(["stack", "ls", "--json"]) or "[]")
        # A DIY backend may list a stack as organization/project/name.
        return sorted(str(entry["name"]).rsplit("/", 1)[-1] for entry in listed or [])


def _consume(stream: Any, lines: list[str], on_output: OnOutput | None) -> None:
    for line in iter(stream.readline, ""):
        lines.append(line)
        if on_output is not None:
            on_output(line.rstrip("\n"))
    stream.close()


@dataclass(frozen=True)
class EngineStack:
    """One stack's previews and updates (:class:`.stack_update.UpdatableStack`); ``create`` makes the stack
    on its first update when the backend has none of that name."""

    engine: Engine
    name: str
    create: bool = False

    def preview(
        self,
        *,
        diff: bool | None = None,
        color: str | None = None,
        on_output: OnOutput | None = None,
        on_event: OnEvent | None = None,
    ) -> object:
        self._run(["preview", *(["--diff"] if diff else [])], color, on_output, on_event)
        return None

    def up(
        self,
        *,
        message: str | None = None,
        diff: bool | None = None,
        color: str | None = None,
        on_output: OnOutput | None = None,
        on_event: OnEvent | None = None,
    ) -> object:
        args = ["up", "--yes", "--skip-preview", *(["--diff"] if diff else [])]
        self._run([*args, *(["--message", message] if message else [])], color, on_output, on_event)
        return None

    def destroy(self, *, message: str | None = None, on_output: OnOutput | None = None) -> None:
        """Delete every resource of the stack (the stack itself stays, with its history: :meth:`remove`)."""
        args = ["destroy", "--yes", "--skip-preview", "--stack", self.name]
        self.engine.run([*args, *(["--message", message] if message else [])], on_output)

    def remove(self) -> None:
        """Remove the emptied stack from the backend, and its ``Pulumi.<stack>.yaml`` with it (the engine's rule)."""
        self.engine.run(["stack", "rm", "--yes", "--stack", self.name])

    def _run(self, args: list[str], color: str | None, on_output: OnOutput | None, on_event: OnEvent | None) -> None:
        with tempfile.TemporaryDirectory(prefix="dockyard-events-") as scratch:
            log = Path(scratch) / "events.jsonl"
            command = [*args, "--stack", self.name, "--event-log", str(log), *(["--color", color] if color else [])]
            try:
                self.engine.run(command, on_output)
            except StackMissingError:
                if not self.create:
                    raise
                self.engine.run(["stack", "init", self.name])
                self.engine.run(command, on_output)
            if on_event is not None:
                for line in log.read_text().splitlines():
                    if line.strip():
                        on_event(auto.EngineEvent.from_json(json.loads(line)))
