"""Engine tier: the real ``pulumi`` CLI. A missing engine is a failure, never a skip."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.harness import Workspace, engine_binary, make_workspace
from tests.local_services import start_local_services

pytestmark = pytest.mark.engine


@pytest.fixture(scope="session")
def engine() -> str:
    return engine_binary()  # raises EngineMissingError with the command to run


@pytest.fixture(scope="session")
def local_services() -> dict[str, str]:
    return start_local_services()


@pytest.fixture
def workspace(engine: str, tmp_path: Path) -> Workspace:
    return make_workspace(tmp_path, {"DOCKYARD_SKIP_GITHUB": "1"})


@pytest.fixture(scope="module")
def local_workspace(engine: str, local_services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """One copy of the project on which the local stacks are deployed (shared: builds are slow)."""
    return make_workspace(tmp_path_factory.mktemp("local"), local_services)
