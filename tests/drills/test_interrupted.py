"""kill -9 of ``pulumi up`` during a build: nothing of that run is left running, and ``dockyard doctor``'s advice
(followed as printed) brings the stack back to a clean state: the next ``up`` converges and then has 0 changes."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.drills.processes import RunProcess, follow_advice, run_processes
from tests.engine.harness import Workspace, dockyard, engine_binary, make_workspace

pytestmark = pytest.mark.drills

STACK = "local"
#: How long the run's processes may outlive the engine.
GONE_WITHIN_SECONDS = 10.0


@pytest.fixture(scope="module")
def interrupted(
    engine: str, local_services: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Workspace, list[RunProcess]]:
    """A workspace whose ``pulumi up`` was killed with SIGKILL while podman was building; the run's processes as
    they were at the kill."""
    workspace = make_workspace(tmp_path_factory.mktemp("interrupted"), {**local_services, "DOCKYARD_SKIP_GITHUB": "1"})
    workspace.init(STACK)
    # A cold build: long enough to be caught in the middle.
    env = {**workspace.env, "DOCKYARD_BUILD_NO_CACHE": "1"}
    up = subprocess.Popen(
        [engine_binary(), "up", "--stack", STACK, "--yes", "--non-interactive"],
        cwd=workspace.directory,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    try:
        while not any("podman build" in p.command for p in run_processes(up.pid)):
            assert up.poll() is None, "pulumi up ended before a build started"
            assert time.monotonic() < deadline, "no podman build started within 600 s"
            time.sleep(0.5)
        time.sleep(2)  # well inside the build
        processes = run_processes(up.pid)
        os.kill(up.pid, signal.SIGKILL)
        up.wait()
    finally:
        if up.poll() is None:
            up.kill()
    return workspace, processes


def test_kill_9_leaves_nothing_running(interrupted: tuple[Workspace, list[RunProcess]]) -> None:
    _, processes = interrupted
    kinds = {"language host": "pulumi-language-python", "provider": "pulumi.dynamic", "build": "podman build"}
    for kind, marker in kinds.items():
        assert any(marker in p.command for p in processes), f"no {kind} process at the kill: {processes}"
    deadline = time.monotonic() + GONE_WITHIN_SECONDS
    while time.monotonic() < deadline and any(p.alive() for p in processes):
        time.sleep(0.25)
    left = [p for p in processes if p.alive()]
    for p in left:  # leave the machine clean even when the drill fails
        os.kill(p.pid, signal.SIGKILL)
    assert not left, "\n".join(f"{p.pid} {p.command}" for p in left)


def test_doctor_names_the_state_and_its_advice_converges(interrupted: tuple[Workspace, list[RunProcess]]) -> None:
    workspace, _ = interrupted
    report = dockyard(workspace, "doctor", "--stack", STACK)
    assert report.returncode == 1, report.output
    assert "engine lock: left by pid" in report.stdout
    assert "which is gone" in report.stdout
    assert "pending operations: " in report.stdout
    assert "image-podman-build" in report.stdout
    follow_advice(workspace, report)
    workspace.pulumi("up", "--stack", STACK, "--yes", "--expect-no-changes")
    healthy = dockyard(workspace, "doctor", "--stack", STACK)
    assert healthy.returncode == 0, healthy.output
