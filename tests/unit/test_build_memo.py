"""The build memo: same inputs reuse the digest the first build pushed; anything else builds in full."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from dockyard_components import podman_build
from dockyard_components.build_memo import MEMO_ENV

PROPS: dict[str, Any] = {
    "image_name": "r/a",
    "tags": ["sha-1"],
    "project_dir": "/checkout-1",
    "context": "app",
    "dockerfile": "Dockerfile",
    "target": "runtime",
    "test_target": "test",
    "platform": "linux/amd64",
    "build_args": {"HEALTH_FAIL": "false"},
    "labels": {},
    "context_hash": "h1",
    "registry_server": "r",
    "username": "u",
    "password": None,
}


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, str]]:
    """Each build script run's environment; the fake script "pushes" a digest made of the run's number, or reuses
    the one it is given (as the real script does when the registry holds it)."""
    runs: list[dict[str, str]] = []
    monkeypatch.setattr(podman_build, "LOG_DIR", tmp_path / "logs")
    monkeypatch.setenv(MEMO_ENV, str(tmp_path / "memo"))
    monkeypatch.delenv("DOCKYARD_BUILD_NO_CACHE", raising=False)

    class FakeBuild:
        def __init__(self, _command: list[str], **kwargs: Any) -> None:
            runs.append(kwargs["env"])
            self.returncode, self.pid = 0, 0

        def communicate(self, _input: str = "", timeout: float | None = None) -> tuple[str, None]:
            env = runs[-1]
            return env["REUSE_DIGEST"] or f"sha256:{len(runs):064d}", None

    monkeypatch.setattr(subprocess, "Popen", FakeBuild)
    return runs


def test_the_same_inputs_in_another_checkout_reuse_the_first_digest(builds: list[dict[str, str]]) -> None:
    first = podman_build.run_build(PROPS)
    again = podman_build.run_build({**PROPS, "project_dir": "/checkout-2"})
    assert again == first
    assert [run["REUSE_DIGEST"] for run in builds] == ["", first]


@pytest.mark.parametrize(
    "change",
    [
        {"context_hash": "h2"},
        {"build_args": {"HEALTH_FAIL": "true"}},
        {"tags": ["sha-2"]},
        {"registry_server": "s"},
        # An image index of the same sources is another image: its memo entry holds the index digest.
        {"platform": "linux/amd64,linux/arm64"},
    ],
)
def test_any_input_that_shapes_the_image_builds_in_full(builds: list[dict[str, str]], change: dict[str, Any]) -> None:
    first = podman_build.run_build(PROPS)
    other = podman_build.run_build({**PROPS, **change})
    assert other != first
    assert builds[-1]["REUSE_DIGEST"] == ""


def test_a_cold_build_or_no_memo_never_reuses(builds: list[dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    podman_build.run_build(PROPS)
    monkeypatch.setenv("DOCKYARD_BUILD_NO_CACHE", "1")
    podman_build.run_build(PROPS)
    monkeypatch.delenv("DOCKYARD_BUILD_NO_CACHE")
    monkeypatch.setenv(MEMO_ENV, "")
    podman_build.run_build(PROPS)
    assert [run["REUSE_DIGEST"] for run in builds] == ["", "", ""]


def test_a_failed_build_is_not_recorded(builds: list[dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(_props: Any, reuse: str | None, built: dict[str, str]) -> str:
        raise podman_build.PodmanBuildError("test stage failed")

    with monkeypatch.context() as patch:
        patch.setattr(podman_build, "_run_script", failing)
        with pytest.raises(podman_build.PodmanBuildError):
            podman_build.run_build(PROPS)
    podman_build.run_build(PROPS)
    assert builds[-1]["REUSE_DIGEST"] == ""


def test_a_rotated_build_secret_reuses_and_its_value_is_nowhere_in_the_memo(
    builds: list[dict[str, str]], tmp_path: Path
) -> None:
    first = podman_build.run_build({**PROPS, "secrets": {"npm": "sentinel-one"}, "secret_ids": ["npm"]})
    rotated = podman_build.run_build({**PROPS, "secrets": {"npm": "sentinel-two"}, "secret_ids": ["npm"]})
    assert rotated == first
    other_id = podman_build.run_build({**PROPS, "secrets": {"pip": "sentinel-two"}, "secret_ids": ["pip"]})
    assert other_id != first
    memo = tmp_path / "memo"
    written = "".join(p.name + p.read_text() for p in memo.iterdir())
    assert "sentinel" not in written
