"""Drill tier: faults a demanding user causes (wrong credentials, rotation, kill -9, a full disk), on the real engine,
cluster, registry and podman. A missing engine is a failure, never a skip; drills that break things get services of
their own (a registry on another port and state directory) so the shared ones keep serving."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.engine.conftest import engine, local_cluster, local_services, local_workspace, workspace
from tests.local_services import SERVICES, parse_exports

__all__ = ["engine", "local_cluster", "local_services", "local_workspace", "workspace"]

#: The drill registry's port: not the shared registry's, so stopping or re-keying it disturbs nobody; one per
#: pytest-xdist worker (gw0 → 5453, gw1 → 5454, …), whose drill modules may run side by side.
DRILL_REGISTRY_PORT = 5453 + int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
#: A second user the drill registry accepts: rotating to it is a credential rotation both sides agree on.
ROTATED_USER = "rotated"


@dataclass
class DrillRegistry:
    """A registry of the drill's own (scripts/local-services.sh with its own state and port)."""

    state: Path
    env: dict[str, str]
    password: str
    rotated_password: str

    @property
    def server(self) -> str:
        return self.env["DOCKYARD_REGISTRY"]

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """The registry down for the block (as a user who forgot to start it), up again after."""
        down = self.services("stop")
        assert down.returncode == 0, down.stderr
        try:
            yield
        finally:
            up = self.services("start")
            assert up.returncode == 0, up.stderr

    def services(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SERVICES), *args], env=self.env, capture_output=True, text=True, timeout=300, check=False
        )


@pytest.fixture(scope="session")
def drill_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrillRegistry]:
    state = tmp_path_factory.mktemp("drill-registry")
    env = {
        **os.environ,
        "DOCKYARD_STATE": str(state),
        "DOCKYARD_REGISTRY_PORT": str(DRILL_REGISTRY_PORT),
        "DOCKYARD_SKIP_BASE_IMAGES": "1",
    }
    started = subprocess.run([str(SERVICES), "start"], env=env, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    printed = subprocess.run([str(SERVICES), "env"], env=env, capture_output=True, text=True, timeout=60, check=True)
    env.update(parse_exports(printed.stdout))
    password = Path(env["DOCKYARD_REGISTRY_PASSWORD_FILE"]).read_text().strip()
    rotated_password = "rotated-" + password[:16]
    # The registry reads htpasswd at start: add the second user, then restart it.
    htpasswd = state / "registry" / "htpasswd"
    subprocess.run(
        ["htpasswd", "-B", "-C", "10", "-i", str(htpasswd), ROTATED_USER],
        input=rotated_password,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    registry = DrillRegistry(state, env, password, rotated_password)
    assert registry.services("stop").returncode == 0
    restarted = registry.services("start")
    assert restarted.returncode == 0, restarted.stderr
    yield registry
    registry.services("stop")
    shutil.rmtree(f"/etc/containers/certs.d/127.0.0.1:{DRILL_REGISTRY_PORT}", ignore_errors=True)
