"""Engine tier: the real ``pulumi`` CLI. A missing engine is a failure, never a skip."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.harness import LOCAL_CONTEXT, SESSION, Workspace, engine_binary, make_workspace
from tests.local_services import RealNodeLease, real_node_lease, start_local_cluster, start_local_services

pytestmark = pytest.mark.engine


@pytest.fixture(scope="session")
def engine() -> str:
    return engine_binary()  # raises EngineMissingError with the command to run


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[dict[str, str]]:
    """The local control plane; at the end, the namespaces this session's workspaces created are deleted."""
    env = start_local_cluster()
    yield env
    names = subprocess.run(
        ["kubectl", "--kubeconfig", env["KUBECONFIG"], "--context", LOCAL_CONTEXT, "get", "ns", "-o", "name"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    ).stdout.split()
    ours = [n for n in names if f"-{SESSION}-" in n]
    if ours:
        subprocess.run(
            ["kubectl", "--kubeconfig", env["KUBECONFIG"], "--context", LOCAL_CONTEXT, "delete", "--wait=false", *ours],
            capture_output=True,
            check=False,
            timeout=120,
        )


@pytest.fixture(scope="session")
def local_services(local_cluster: dict[str, str]) -> dict[str, str]:
    return {**start_local_services(), **local_cluster}


@pytest.fixture
def workspace(engine: str, local_cluster: dict[str, str], tmp_path: Path) -> Workspace:
    return make_workspace(tmp_path, {"DOCKYARD_SKIP_GITHUB": "1", **local_cluster})


@pytest.fixture(scope="module")
def local_workspace(engine: str, local_services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """One copy of the project on which the local stacks are deployed (shared: builds are slow)."""
    return make_workspace(tmp_path_factory.mktemp("local"), local_services)


@pytest.fixture(scope="module")
def real_node(local_cluster: dict[str, str]) -> Iterator[RealNodeLease]:
    """The real node stays up while this module's pods are on it (see :class:`RealNodeLease`)."""
    with real_node_lease(Path(local_cluster["KUBECONFIG"]).parent) as lease:
        yield lease
