"""Ten rebuilds of a one-line change: podman storage grows by at most the size of the ten runtime images.

The builds run the real builder (``dockyard_components.podman_build.run_build``: the build script under its launcher, test
stage, push) against the drill registry, in a podman storage of the drill's own (so other builds on the machine do
not blur the measurement), seeded with the offline base images. The context has the app's shape (a build stage on the
Go builder image, a test stage that is never pushed, a runtime stage on the static base that copies from the test
stage) with trivial steps, on the machine's storage driver (overlay where it mounts, vfs otherwise: vfs copies every
layer whole, the case this drill was written for).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dockyard_components import podman_build
from tests.drills.conftest import DrillRegistry
from tests.stacks import PROJECT

pytestmark = [pytest.mark.drills, pytest.mark.timeout(900)]

REBUILDS = 10
DOCKERFILE = """ARG BUILDER_IMAGE
ARG RUNTIME_IMAGE
FROM ${BUILDER_IMAGE} AS build
COPY main.go /src/main.go
RUN cp /src/main.go /src/app
FROM build AS test
RUN test -s /src/app
FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=test /src/app /app
"""


def podman(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"podman {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


def storage_bytes(graph_root: Path) -> int:
    return int(
        subprocess.run(["du", "-sb", str(graph_root)], capture_output=True, text=True, check=True).stdout.split()[0]
    )


@pytest.fixture
def own_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_services: dict[str, str]
) -> tuple[Path, dict[str, str]]:
    """A podman storage of this drill's own, with the base images the local stack builds on."""
    graph_root = tmp_path / "graph"
    conf = tmp_path / "storage.conf"
    driver = podman("info", "--format", "{{.Store.GraphDriverName}}").strip()
    conf.write_text(f'[storage]\ndriver = "{driver}"\nrunroot = "{tmp_path / "run"}"\ngraphroot = "{graph_root}"\n')
    build_args: dict[str, str] = yaml.safe_load((PROJECT / "Pulumi.local.yaml").read_text())["config"][
        "dockyard:image"
    ]["build"]["buildArgs"]
    own = {**local_services, "CONTAINERS_STORAGE_CONF": str(conf)}
    for image in build_args.values():
        archive = tmp_path / "base.tar"
        podman("save", "--quiet", "-o", str(archive), image)  # docker-archive: keeps the name
        podman("load", "--quiet", "-i", str(archive), env=own)
        archive.unlink()
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    monkeypatch.setattr(podman_build, "LOG_DIR", tmp_path / "logs")
    return graph_root, build_args


def test_rebuilds_leave_no_garbage(
    own_storage: tuple[Path, dict[str, str]], drill_registry: DrillRegistry, tmp_path: Path
) -> None:
    graph_root, build_args = own_storage
    context = tmp_path / "project" / "app"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "main.go").write_text("package main\n")
    image_name = f"{drill_registry.server}/dockyard/disk-drill"

    def build(n: int) -> str:
        with (context / "main.go").open("a") as source:
            source.write(f"\n// rebuild {n}\n")  # the one-line change
        props: dict[str, Any] = {
            "image_name": image_name,
            "tags": [f"rebuild-{n}"],
            "project_dir": str(context.parent),
            "context": "app",
            "dockerfile": "Dockerfile",
            "target": "runtime",
            "test_target": "test",
            "platform": "linux/amd64",
            "build_args": build_args,
            "labels": {"org.opencontainers.image.revision": str(n)},
            "registry_server": drill_registry.server,
            "username": "dockyard",
            "password": drill_registry.password,
            "cache_repo": None,
        }
        return podman_build.run_build(props)

    build(0)  # warm: the layers every later build reuses
    before = storage_bytes(graph_root)
    for n in range(1, REBUILDS + 1):
        build(n)
    after = storage_bytes(graph_root)
    runtime = json.loads(podman("image", "inspect", f"{image_name}:rebuild-{REBUILDS}"))[0]["Size"]
    assert after - before <= REBUILDS * runtime, (
        f"podman storage grew {(after - before) >> 20} MiB over {REBUILDS} rebuilds; "
        f"allowed: {REBUILDS} runtime images of {runtime >> 20} MiB"
    )
