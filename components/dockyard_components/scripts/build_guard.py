"""Build launcher: runs one build in a process group of its own and ends the run's processes when its engine dies.

    python build_guard.py ENGINE_PID -- COMMAND...

Started by the podman builder (dockyard_components/podman_build.py) from the Pulumi provider process. Why a launcher process
and not ``prctl(PR_SET_PDEATHSIG)``: when ``pulumi up`` is killed (``kill -9``), its plugins are not killed, only
orphaned; the provider lives on, so a death signal tied to the provider never fires, and it would reach only the
direct child, not podman and its helpers. The launcher watches the engine itself (and the provider, its parent):

- the build runs in a process group of its own (in the launcher's own session), so one ``killpg`` reaches every
  build process; a SIGTERM to the launcher stops that group too (the provider's build timeout);
- while the engine lives, the launcher keeps a list of the engine's descendants (language host, program,
  providers, analyzers) with their start times;
- when the engine is gone, it stops those processes (TERM, then KILL after a grace period; a start time that
  differs means a recycled pid, which is left alone) and the build's group; when only the provider is gone, just
  the build's group. The engine's language host would otherwise linger for minutes (its own health check) and the
  dynamic provider forever.

Standard library only: the launcher runs as a file, before (and without) the project's imports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_SECONDS = 0.5
GRACE_SECONDS = 3.0
#: Exit status when the build was stopped because the engine or the provider went away.
STOPPED = 143
GUARD_USAGE = "usage: build_guard.py ENGINE_PID -- COMMAND..."

Process = tuple[int, str]  # pid and its start time (clock ticks since boot): a pid alone may be recycled


def start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after its last ")" are fixed.
    return stat.rsplit(")", 1)[1].split()[19]


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def alive(process: Process) -> bool:
    return start_time(process[0]) == process[1]


def find_engine(pid: int, name: str = "pulumi") -> int | None:
    """The nearest ancestor of ``pid`` named ``name`` (the engine that started the provider), if any."""
    current = parent_of(pid)
    while current and current > 1:
        if command_name(current) == name:
            return current
        current = parent_of(current)
    return None


def descendants(root: int, exclude: set[int]) -> list[Process]:
    """Every living descendant of ``root`` except the subtrees rooted at ``exclude``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found: list[Process] = []
    pending = [c for c in children.get(root, []) if c not in exclude]
    while pending:
        pid = pending.pop()
        started = start_time(pid)
        if started is not None:
            found.append((pid, started))
        pending += [c for c in children.get(pid, []) if c not in exclude]
    return found


def stop(processes: list[Process], group: int | None) -> None:
    """TERM ``processes`` and ``group``; KILL what is still there after the grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, started in processes:
            if start_time(pid) == started:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
        if group is not None:
            with contextlib.suppress(OSError):
                os.killpg(group, sig)
        deadline = time.monotonic() + GRACE_SECONDS
        while time.monotonic() < deadline and (any(alive(p) for p in processes) or group_alive(group)):
            time.sleep(0.1)


def group_alive(group: int | None) -> bool:
    if group is None:
        return False
    try:
        os.killpg(group, 0)
    except OSError:
        return False
    return True


def guard(engine_pid: int, command: list[str]) -> int:
    provider = os.getppid()
    engine: Process | None = None
    if engine_pid > 0 and (started := start_time(engine_pid)) is not None:
        engine = (engine_pid, started)
    # A session of our own (a terminal's Ctrl-C goes to the engine, which then asks the provider to stop), and the
    # build in a process group of its own: one killpg reaches podman and every helper it started.
    os.setsid()
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    build = subprocess.Popen(command, process_group=0)
    run: list[Process] = []
    refreshed = 0.0
    while True:
        try:
            finished, status = os.waitpid(build.pid, os.WNOHANG)
        except ChildProcessError:
            return 0
        if finished:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code
        if engine is not None and not alive(engine):
            print("dockyard-build: the engine is gone: stopping the build and this run's plugins", file=sys.stderr)
            stop(run, build.pid)
            return STOPPED
        if os.getppid() != provider or stopping:
            print("dockyard-build: the provider is gone or asked to stop: stopping the build", file=sys.stderr)
            stop([], build.pid)
            return STOPPED
        if engine is not None and time.monotonic() - refreshed > 2.0:
            # The run's processes, as they are now: what to stop when the engine dies without stopping them.
            run = descendants(engine[0], exclude={os.getpid()})
            refreshed = time.monotonic()
        time.sleep(POLL_SECONDS)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(GUARD_USAGE, file=sys.stderr)
        return 2
    return guard(int(argv[0]), argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
