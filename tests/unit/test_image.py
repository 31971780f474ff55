"""AppImage and ContainerRegistry under mocks: both builders, same contract; credentials stay secret."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components import podman_build
from components.config import RegistryKind
from components.image import AppImage, AppImageArgs, Builder
from components.podman_build import PodmanBuildProvider
from components.registry import ContainerRegistry, ContainerRegistryArgs, docker_config_json
from components.tags import BuildMetadata, GitFacts, image_tags
from tests.unit.conftest import FAKE_DIGEST, RecordingMocks, plaintext_paths, secret_paths

PASSWORD = "sentinel-push-password"
PODMAN_SCRIPT = Path(__file__).parents[2] / "components" / "scripts" / "podman-build.sh"
METADATA = BuildMetadata(created="2026-11-26T10:00:00Z", revision="abc123", version="1.2.3", source="https://x/y")


@pytest.fixture
def context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "app" / "main.go").write_text("package main\n")
    return tmp_path / "app"


def image_args(builder: Builder, tags: list[str] | None = None) -> AppImageArgs:
    return AppImageArgs(
        builder=builder,
        image_name="127.0.0.1:5443/dockyard/app",
        registry_server="127.0.0.1:5443",
        username="dockyard",
        password=pulumi.Output.secret(PASSWORD),
        context="app",
        dockerfile="Dockerfile",
        target="runtime",
        test_target="test",
        platform="linux/amd64",
        build_args={"BASE": "local/base:1"},
        tags=tags or ["sha-0123456", "main"],
        metadata=METADATA,
    )


def build(builder: Builder, tags: list[str] | None = None) -> dict[str, Any]:
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    async def run() -> None:
        image = AppImage("image", image_args(builder, tags))
        outputs["ref"] = await image.ref.future()
        outputs["digest"] = await image.digest.future()
        outputs["hash"] = await image.context_hash.future()

    run()
    return outputs


@pytest.mark.parametrize("builder", ["podman", "docker"])
def test_both_builders_output_the_digest_pinned_reference(
    mocks: RecordingMocks, context: Path, builder: Builder
) -> None:
    outputs = build(builder)
    assert outputs["digest"] == FAKE_DIGEST
    assert outputs["ref"] == f"127.0.0.1:5443/dockyard/app@{FAKE_DIGEST}"
    assert len(outputs["hash"]) == 64


@pytest.mark.parametrize("builder", ["podman", "docker"])
def test_the_password_only_reaches_secret_inputs(mocks: RecordingMocks, context: Path, builder: Builder) -> None:
    build(builder)
    assert not [
        (r.name, plaintext_paths(r.inputs, PASSWORD)) for r in mocks.resources if plaintext_paths(r.inputs, PASSWORD)
    ]
    assert [r.name for r in mocks.resources if secret_paths(r.inputs, PASSWORD)]


def test_podman_build_runs_tests_then_pushes_every_tag(mocks: RecordingMocks, context: Path) -> None:
    build("podman")
    (resource,) = mocks.of_type("pulumi-python:dynamic:Resource")
    props = resource.inputs
    assert props["target"] == "runtime"
    assert props["test_target"] == "test"
    assert props["tags"] == ["sha-0123456", "main"]
    assert props["build_args"] == {
        "BASE": "local/base:1",
        "BUILD_DATE": "2026-11-26T10:00:00Z",
        "SOURCE": "https://x/y",
        "VCS_REF": "abc123",
        "VERSION": "1.2.3",
    }
    assert props["labels"]["org.opencontainers.image.revision"] == "abc123"
    script = PODMAN_SCRIPT.read_text()
    assert script.index('--target "$TEST_TARGET"') < script.index("podman push")
    assert "--password-stdin" in script


def test_podman_rebuilds_only_when_the_image_would_change() -> None:
    provider = PodmanBuildProvider()
    olds = {"image_name": "r/a", "tags": ["sha-1"], "context_hash": "h1", "password": "old", "project_dir": "/a"}
    same = provider.diff("id", olds, {**olds, "password": "rotated", "project_dir": "/elsewhere"})
    assert not same.changes
    changed = provider.diff("id", olds, {**olds, "context_hash": "h2"})
    assert changed.changes
    assert changed.replaces == ["context_hash"]


def test_docker_builder_builds_the_test_stage_without_pushing(mocks: RecordingMocks, context: Path) -> None:
    build("docker", tags=["sha-0123456", "1.2.3", "1.2"])
    images = {r.name: r.inputs for r in mocks.of_type("docker:index/image:Image")}
    assert images["image-test"]["skipPush"] is True
    assert images["image-test"]["build"]["target"] == "test"
    assert images["image-image"]["build"]["target"] == "runtime"
    assert images["image-image"]["imageName"] == "127.0.0.1:5443/dockyard/app:sha-0123456"
    assert sorted(r.name for r in mocks.of_type("docker:index/registryImage:RegistryImage")) == [
        "image-push-1.2",
        "image-push-1.2.3",
    ]


def test_docker_cache_comes_from_a_tag_the_previous_commit_pushed(mocks: RecordingMocks, context: Path) -> None:
    previous = image_tags(GitFacts(commit="a" * 40, branch="main"))
    build("docker", tags=image_tags(GitFacts(commit="b" * 40, branch="main")))
    pushed_before = {f"127.0.0.1:5443/dockyard/app:{tag}" for tag in previous}
    for name in ("image-test", "image-image"):
        cache = mocks.named(name).inputs["build"]["cacheFrom"]["images"]
        assert pushed_before & set(cache), f"{name}: cache_from {cache} names nothing the previous commit pushed"


def test_the_podman_script_reads_what_its_header_and_run_build_say(monkeypatch: pytest.MonkeyPatch) -> None:
    script = PODMAN_SCRIPT.read_text()
    header = "".join(line for line in script.splitlines(keepends=True) if line.startswith("#"))
    body = script.removeprefix(header)
    seen: dict[str, Any] = {}

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.update(kwargs["env"])
        return subprocess.CompletedProcess(command, 0, stdout=FAKE_DIGEST, stderr="")

    monkeypatch.setattr(subprocess, "run", fake_run)
    props: dict[str, Any] = {
        "image_name": "r/a",
        "tags": ["sha-1", "main"],
        "project_dir": "/p",
        "context": "app",
        "dockerfile": "Dockerfile",
        "target": "runtime",
        "test_target": "test",
        "platform": "linux/amd64",
        "build_args": {},
        "labels": {},
        "registry_server": "r",
        "username": "u",
        "password": None,
        "cache_repo": "r/a/cache",
    }
    assert podman_build.run_build(props) == FAKE_DIGEST
    set_by_run_build = {name for name in seen if name not in os.environ or seen[name] != os.environ[name]}
    inherited = {"DOCKYARD_BUILD_NO_CACHE", "BUILDAH_ISOLATION"}
    read_by_script = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", body))
    named_in_header = set(re.findall(r"\b([A-Z][A-Z0-9_]{2,})\b", header)) - {"KEY", "VALUE"}
    assert read_by_script == named_in_header == set_by_run_build | inherited
    assert seen["CACHE_REPO"] == "r/a/cache"
    podman_build.run_build({**props, "cache_repo": None})
    assert seen["CACHE_REPO"] == ""


def test_an_image_needs_a_tag(mocks: RecordingMocks, context: Path) -> None:
    with pytest.raises(ValueError, match="at least one tag"):
        AppImage("image", {**image_args("podman"), "tags": []})


# --- ContainerRegistry ----------------------------------------------------------------------------------------


def registry(kind: RegistryKind, server: str | None) -> dict[str, Any]:
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    async def run() -> None:
        component = ContainerRegistry(
            "registry",
            ContainerRegistryArgs(
                kind=kind, server=server, repository="acme/app", username="bot", password=pulumi.Output.secret(PASSWORD)
            ),
        )
        assert component.docker_config_json is not None
        outputs["image_name"] = await component.image_name.future()
        outputs["config_is_secret"] = await component.docker_config_json.is_secret()
        outputs["config"] = json.loads(await component.docker_config_json.future() or "{}")

    run()
    return outputs


@pytest.mark.parametrize(
    ("kind", "server", "image_name", "auth_server"),
    [
        (RegistryKind.GHCR, None, "ghcr.io/acme/app", "ghcr.io"),
        (RegistryKind.DOCKER_HUB, None, "docker.io/acme/app", "https://index.docker.io/v1/"),
        (
            RegistryKind.SELF_HOSTED,
            "registry.internal:5000",
            "registry.internal:5000/acme/app",
            "registry.internal:5000",
        ),
    ],
)
def test_registry_kinds(
    mocks: RecordingMocks, kind: RegistryKind, server: str | None, image_name: str, auth_server: str
) -> None:
    outputs = registry(kind, server)
    assert outputs["image_name"] == image_name
    assert outputs["config_is_secret"] is True
    assert list(outputs["config"]["auths"]) == [auth_server]


def test_self_hosted_needs_a_server(mocks: RecordingMocks) -> None:
    with pytest.raises(ValueError, match="needs a server"):
        ContainerRegistry(
            "registry",
            ContainerRegistryArgs(
                kind=RegistryKind.SELF_HOSTED, server=None, repository="a/b", username="u", password=None
            ),
        )


def test_docker_config_json_auth_field() -> None:
    document = json.loads(docker_config_json("ghcr.io", "bot", "pw"))
    assert base64.b64decode(document["auths"]["ghcr.io"]["auth"]).decode() == "bot:pw"
