"""Build secrets on their way to podman: 0600 files that outlive no build, ids podman's ``--secret`` can carry, and
the values held only as Pulumi secrets, never outputs, never a reason to rebuild, never in the build memo."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest

from dockyard_components import podman_build
from dockyard_components.build_memo import MEMO_ENV
from dockyard_components.build_secrets import secret_files
from dockyard_components.image import AppImage, Builder
from dockyard_components.podman_build import PodmanBuildProvider
from tests.unit.conftest import FAKE_DIGEST, RecordingMocks, plaintext_paths, secret_paths
from tests.unit.test_build_memo import PROPS as MEMO_PROPS
from tests.unit.test_image import context as context  # the fixture
from tests.unit.test_image import image_args

TOKEN = "sentinel-build-secret"


def test_each_secret_is_a_0600_file_in_a_private_directory_gone_afterwards() -> None:
    with secret_files({"npm": TOKEN, "pip.conf": "other"}) as lines:
        files = dict(line.split("=", 1) for line in lines.splitlines())
        assert sorted(files) == ["npm", "pip.conf"]
        assert Path(files["npm"]).read_text() == TOKEN
        assert {stat.S_IMODE(Path(p).stat().st_mode) for p in files.values()} == {0o600}
        assert stat.S_IMODE(Path(files["npm"]).parent.stat().st_mode) == 0o700
        assert TOKEN not in lines
    assert not any(Path(p).exists() for p in files.values())


def test_the_files_are_removed_when_the_build_fails() -> None:
    paths: list[Path] = []

    def failing_build() -> None:
        with secret_files({"npm": TOKEN}) as lines:
            paths.append(Path(lines.split("=", 1)[1]))
            raise RuntimeError("build failed")

    with pytest.raises(RuntimeError):
        failing_build()
    assert paths
    assert not paths[0].exists()


@pytest.mark.parametrize("secret_id", ["a,b", "a=b", "", "../x", "x" * 129])
def test_an_id_podman_cannot_carry_is_refused(secret_id: str) -> None:
    with pytest.raises(ValueError, match="build secret ids"), secret_files({secret_id: TOKEN}):
        pass


def run_script_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, props: dict[str, Any]) -> dict[str, str]:
    seen: dict[str, str] = {}
    monkeypatch.setattr(podman_build, "LOG_DIR", tmp_path / "logs")
    monkeypatch.delenv(MEMO_ENV, raising=False)

    class FakeBuild:
        def __init__(self, _command: list[str], **kwargs: Any) -> None:
            seen.update(kwargs["env"])
            # What the script would mount: the file exists while the build runs.
            seen["files"] = "".join(Path(line.split("=", 1)[1]).read_text() for line in seen["BUILD_SECRETS"].split())
            self.returncode, self.pid = 0, 0

        def communicate(self, _input: str = "", timeout: float | None = None) -> tuple[str, None]:
            return FAKE_DIGEST, None

    monkeypatch.setattr(subprocess, "Popen", FakeBuild)
    podman_build.run_build(props)
    return seen


PROPS: dict[str, Any] = {**MEMO_PROPS, "secrets": {"npm": TOKEN}, "secret_ids": ["npm"]}


def test_the_script_gets_paths_and_never_the_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = run_script_env(monkeypatch, tmp_path, PROPS)
    assert seen["files"] == TOKEN
    assert seen["BUILD_SECRETS"].startswith("npm=/")
    assert not [name for name, value in seen.items() if name != "files" and TOKEN in value]
    assert not Path(seen["BUILD_SECRETS"].split("=", 1)[1]).exists()


def test_a_rotated_secret_does_not_rebuild_but_another_id_does() -> None:
    provider = PodmanBuildProvider()
    rotated = provider.diff("id", PROPS, {**PROPS, "secrets": {"npm": "rotated"}})
    assert not rotated.changes
    other = provider.diff("id", PROPS, {**PROPS, "secrets": {"pip": TOKEN}, "secret_ids": ["pip"]})
    assert other.replaces == ["secret_ids"]


def test_the_outputs_hold_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(podman_build, "run_build", lambda _props, _built: FAKE_DIGEST)
    created = PodmanBuildProvider().create(dict(PROPS))
    assert created.outs is not None
    assert "secrets" not in created.outs
    assert created.outs["secret_ids"] == ["npm"]


def build_with_secrets(builder: Builder) -> None:
    @pulumi.runtime.test
    async def run() -> None:
        image = AppImage("image", {**image_args(builder), "secrets": {"npm": pulumi.Output.secret(TOKEN)}})
        await image.digest.future()

    run()


def test_the_secret_reaches_the_build_only_as_a_secret_input(mocks: RecordingMocks, context: Path) -> None:
    build_with_secrets(Builder.PODMAN)
    (resource,) = mocks.of_type("pulumi-python:dynamic:Resource")
    assert plaintext_paths(resource.inputs, TOKEN) == []
    assert secret_paths(resource.inputs, TOKEN) == [".secrets"]
    assert resource.inputs["secret_ids"] == ["npm"]


def test_the_docker_builder_refuses_build_secrets(mocks: RecordingMocks, context: Path) -> None:
    with pytest.raises(ValueError, match="build secrets need the podman builder"):
        build_with_secrets(Builder.DOCKER)
