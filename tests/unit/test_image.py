"""AppImage and ContainerRegistry under mocks: both builders, same contract; credentials stay secret."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pulumi
import pytest

from dockyard.model.config import RegistryKind
from dockyard_components import podman_build
from dockyard_components.image import AppImage, AppImageArgs, Builder
from dockyard_components.podman_build import PodmanBuildProvider
from dockyard_components.registry import ContainerRegistry, ContainerRegistryArgs, docker_config_json
from dockyard_components.scripts import build_guard
from dockyard_components.scripts.build_guard import GUARD_USAGE, descendants, find_engine, start_time
from dockyard_components.tags import BuildMetadata, GitFacts, image_tags
from tests.unit.conftest import FAKE_DIGEST, RecordingMocks, plaintext_paths, secret_paths

PASSWORD = "sentinel-push-password"
PODMAN_SCRIPT = Path(__file__).parents[2] / "components" / "dockyard_components" / "scripts" / "podman-build.sh"
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


def test_one_platform_builds_as_before_and_every_time_is_the_commits(mocks: RecordingMocks, context: Path) -> None:
    build("podman")
    (resource,) = mocks.of_type("pulumi-python:dynamic:Resource")
    # The same input as before `platforms` existed: upgrading rebuilds nothing.
    assert resource.inputs["platform"] == "linux/amd64"
    assert resource.inputs["timestamp"] == 1795687200  # METADATA.created, 2026-11-26T10:00:00Z


def test_two_platforms_are_one_index_build(mocks: RecordingMocks, context: Path) -> None:
    args = image_args(Builder.PODMAN)
    del args["platform"]
    args["platforms"] = ["linux/amd64", "linux/arm64"]

    @pulumi.runtime.test
    async def run() -> None:
        AppImage("image", args)

    run()
    (resource,) = mocks.of_type("pulumi-python:dynamic:Resource")
    assert resource.inputs["platform"] == "linux/amd64,linux/arm64"
    with pytest.raises(ValueError, match="2 platforms need the podman builder"):
        AppImage("docker-image", {**args, "builder": Builder.DOCKER})
    with pytest.raises(ValueError, match="platform or platforms, not both"):
        AppImage("both", {**args, "platform": "linux/amd64"})


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


def test_the_podman_script_reads_what_its_header_and_run_build_say(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    script = PODMAN_SCRIPT.read_text()
    header = "".join(line for line in script.splitlines(keepends=True) if line.startswith("#"))
    body = script.removeprefix(header)
    seen: dict[str, Any] = {}
    monkeypatch.setattr(podman_build, "LOG_DIR", tmp_path)

    class FakeBuild:
        def __init__(self, command: list[str], **kwargs: Any) -> None:
            seen.update(kwargs["env"])
            self.command, self.returncode, self.pid = command, 0, 0

        def communicate(self, _input: str = "", timeout: float | None = None) -> tuple[str, None]:
            return FAKE_DIGEST, None

    monkeypatch.setattr(subprocess, "Popen", FakeBuild)
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
    inherited = {"DOCKYARD_BUILD_NO_CACHE", "BUILDAH_ISOLATION", "DOCKYARD_BUILD_KEEP_IMAGES"}
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


GO_TEST_FAILURE = (
    """dockyard-build: logging in to r as u
dockyard-build: running the test stage
STEP 5/9: RUN go test ./...
--- FAIL: TestFirst (0.00s)
    main_test.go:10: first failure
--- FAIL: TestSecond (0.00s)
FAIL
"""
    + "".join(f"ok  \tpkg{n}\t0.01s\n" for n in range(60))
    + "Error: building at STEP 5: exit status 1\n"
)


def test_a_failed_build_names_the_step_shows_the_first_failures_and_keeps_the_log(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    report = podman_build.failure_report(GO_TEST_FAILURE, log, "r/a", 1)
    assert report.startswith("podman build of r/a failed while running the test stage (exit 1)")
    assert "--- FAIL: TestFirst" in report  # the first failure, 60 lines before the end
    assert "main_test.go:10: first failure" in report  # the Go test's own reason under its FAIL line
    assert report.endswith(f"full output: {log}")
    assert "Traceback" not in report


def test_unreachable_and_refused_logins_are_told_apart(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    down = "dockyard-build: registry r:1 unreachable (connection refused at r:1) — start it with scripts/local-services.sh start"
    refused = "dockyard-build: login to r as u was refused — check dockyard:registryPassword / registry.passwordEnv"
    assert "unreachable" in podman_build.failure_report(down + "\n", log, "r/a", 1)
    assert "registryPassword" not in podman_build.failure_report(down + "\n", log, "r/a", 1)
    assert "check dockyard:registryPassword" in podman_build.failure_report(refused + "\n", log, "r/a", 1)
    script = PODMAN_SCRIPT.read_text()
    assert '*"connection refused"*' in script
    assert "scripts/local-services.sh start" in script


def test_build_logs_are_kept_whole_and_bounded(tmp_path: Path) -> None:
    for n in range(podman_build.KEPT_LOGS + 5):
        podman_build.new_log_path(f"r/a{n}", tmp_path).write_text("x")
    assert len(list(tmp_path.glob("*.log"))) == podman_build.KEPT_LOGS


def test_the_build_leaves_no_test_stage_image_and_no_older_local_copies() -> None:
    script = PODMAN_SCRIPT.read_text()
    cleanup = script[script.index("removing what this build leaves behind") :]
    assert '--iidfile "$work/test-iid"' in script
    assert 'podman rmi "$(cat "$work/test-iid")"' in cleanup
    assert '--filter "before=$iid"' in cleanup
    assert "image prune" not in cleanup  # a global prune would delete a concurrent build's cache between steps
    # Never while another build tags or pushes: builds hold the lock shared, the clean-up exclusively or not at all.
    assert script.index("flock -s 9") < script.index("podman build") < script.index("flock -n -x 9")


# --- the build launcher: the build stops when the engine or the provider goes away

GUARD = Path(build_guard.__file__)


def gone(pids: list[tuple[int, str]], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(start_time(pid) == started for pid, started in pids):
            return True
        time.sleep(0.1)
    return False


def test_the_engines_death_stops_the_build_group_and_the_runs_processes() -> None:
    # A stand-in engine with one plugin of its own (the language host, say).
    engine = subprocess.Popen(["bash", "-c", "sleep 300 & wait"], start_new_session=True)
    time.sleep(0.3)
    plugin = descendants(engine.pid, exclude=set())
    guard = subprocess.Popen([sys.executable, str(GUARD), str(engine.pid), "--", "bash", "-c", "sleep 300 & sleep 300"])
    time.sleep(3)  # the guard has listed the run's processes
    build = descendants(guard.pid, exclude=set())
    assert len(build) >= 2
    os.kill(engine.pid, signal.SIGKILL)
    engine.wait()
    assert guard.wait(timeout=15) == build_guard.STOPPED
    assert gone(build, within=5), build
    assert gone(plugin, within=5), plugin


def test_a_finished_build_returns_its_exit_code() -> None:
    finished = subprocess.run([sys.executable, str(GUARD), "0", "--", "bash", "-c", "exit 7"], timeout=30, check=False)
    assert finished.returncode == 7
    usage = subprocess.run([sys.executable, str(GUARD)], capture_output=True, text=True, timeout=30, check=False)
    assert usage.returncode == 2
    assert GUARD_USAGE in usage.stderr


def test_find_engine_walks_up_to_the_named_ancestor() -> None:
    assert find_engine(os.getpid(), name="no-such-engine") is None
    parent_name = Path(f"/proc/{os.getppid()}/comm").read_text().strip()
    assert find_engine(os.getpid(), name=parent_name) == os.getppid()
