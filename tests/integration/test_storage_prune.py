"""``scripts/local-services.sh prune`` in a podman storage of the test's own (``CONTAINERS_STORAGE_CONF``): local
copies of pushes (images named for a registry on this machine), killed builds' working containers and what is left
dangling go; base images stay; while a build holds the builds' lock shared, the prune waits (and gives up after
``DOCKYARD_PRUNE_WAIT`` with one error), removing nothing."""

from __future__ import annotations

import fcntl
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "local-services.sh"
KEPT = "localhost/dockyard/base-probe:1"
COPIES = ("127.0.0.1:5443/dockyard/app-probe:main", "localhost:5000/team/app:v1")


def run(env: dict[str, str], *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert not check or done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
    return done


@pytest.fixture
def storage(tmp_path: Path) -> dict[str, str]:
    """A storage conf of the test's own (vfs: nothing to mount), holding a base image, two copies of pushes (one
    tagged twice) and a working container; the environment that points podman and buildah at it."""
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "vfs"\nrunroot = "{tmp_path}/run"\ngraphroot = "{tmp_path}/graph"\n')
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf), "DOCKYARD_SKIP_BASE_IMAGES": "1"}
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        for name, content in (("probe", b"base"), ("app", b"copy")):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    run(env, "podman", "import", str(layer), KEPT)
    for ref in COPIES:
        run(env, "podman", "import", str(layer), ref)
    run(env, "podman", "tag", COPIES[0], "127.0.0.1:5443/dockyard/app-probe:sha-1")
    run(env, "buildah", "from", "--name", "killed-build-working-container", KEPT)
    return env


def names(env: dict[str, str]) -> set[str]:
    listed = run(env, "podman", "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    return {name for name in listed if not name.startswith("<none>")}


def test_prune_removes_copies_of_pushes_and_killed_builds_containers_and_keeps_base_images(
    storage: dict[str, str],
) -> None:
    pruned = run(storage, str(SERVICES), "prune")
    assert names(storage) == {KEPT}, pruned.stderr
    assert run(storage, "buildah", "containers", "--quiet").stdout.strip() == ""
    assert "pruned podman's storage" in pruned.stderr


def test_prune_waits_for_a_running_build_and_removes_nothing_when_it_gives_up(storage: dict[str, str]) -> None:
    graph = run(storage, "podman", "info", "--format", "{{.Store.GraphRoot}}").stdout.strip()
    before = names(storage)
    with (Path(graph) / "dockyard-build.lock").open("a") as build:
        fcntl.flock(build, fcntl.LOCK_SH)  # as podman-build.sh holds it while it builds and pushes
        refused = run({**storage, "DOCKYARD_PRUNE_WAIT": "2"}, str(SERVICES), "prune", check=False)
    assert refused.returncode != 0
    assert "a build still holds" in refused.stderr
    assert "after 2s" in refused.stderr
    assert names(storage) == before
