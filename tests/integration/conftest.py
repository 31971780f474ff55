"""Fixtures shared by the integration modules that build the real app."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dockyard_components import podman_build
from dockyard_components.build_memo import MEMO_ENV
from dockyard_components.test_reports import REPORTS_ENV
from tests.stacks import PROJECT


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the app (tests may change it) and a build with no memo, logging under tmp_path."""
    shutil.copytree(PROJECT / "app", tmp_path / "app")
    monkeypatch.delenv(MEMO_ENV, raising=False)
    monkeypatch.delenv(REPORTS_ENV, raising=False)
    monkeypatch.setattr(podman_build, "LOG_DIR", tmp_path / "logs")
    return tmp_path / "app"
