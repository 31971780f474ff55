"""Start the local services (registry, base images) once and hand their settings to tests as environment."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from tests.stacks import PROJECT

SERVICES = PROJECT / "scripts" / "local-services.sh"


def parse_exports(text: str) -> dict[str, str]:
    """The ``export KEY=VALUE`` lines of ``scripts/local-services.sh env`` as a mapping."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, _, value = words[1].partition("=")
            env[key] = value
    return env


def start_local_services(timeout: int = 2400) -> dict[str, str]:
    """``scripts/local-services.sh start`` (idempotent), then its ``env`` exports plus the registry password."""
    subprocess.run([str(SERVICES), "start"], check=True, timeout=timeout, capture_output=True, text=True)
    printed = subprocess.run([str(SERVICES), "env"], check=True, timeout=120, capture_output=True, text=True).stdout
    env = parse_exports(printed)
    env["DOCKYARD_REGISTRY_PASSWORD"] = Path(env["DOCKYARD_REGISTRY_PASSWORD_FILE"]).read_text().strip()
    return env


def services_env() -> dict[str, str]:
    """The running local services' ``env`` exports plus the registry password, without starting anything (for tests
    that must not restart what others use), after publishing the base images to the registry (idempotent), so that
    ``DOCKYARD_*_IMAGE_PINNED`` name them by digest."""
    printed = subprocess.run([str(SERVICES), "env"], check=True, timeout=120, capture_output=True, text=True).stdout
    env = parse_exports(printed)
    publish = PROJECT / "scripts" / "local-base-images.sh"
    subprocess.run(
        [str(publish), "publish"],
        env={
            **os.environ,
            "REGISTRY_AUTH_FILE": env["DOCKYARD_REGISTRY_AUTHFILE"],
            "DOCKYARD_REGISTRY": env["DOCKYARD_REGISTRY"],
        },
        check=True,
        timeout=600,
        capture_output=True,
        text=True,
    )
    printed = subprocess.run([str(SERVICES), "env"], check=True, timeout=120, capture_output=True, text=True).stdout
    env = parse_exports(printed)
    env["DOCKYARD_REGISTRY_PASSWORD"] = Path(env["DOCKYARD_REGISTRY_PASSWORD_FILE"]).read_text().strip()
    return env


def pinned_build_props(env: Mapping[str, str], tmp_path: Path, tag: str, platform: str) -> dict[str, Any]:
    """Inputs of one PodmanBuild of the checkout's app (copied to ``tmp_path``) for ``platform`` (comma separated: an
    image index) on the base images by digest (``DOCKYARD_*_IMAGE_PINNED``), pushed to dockyard/multiarch-it:``tag``;
    one commit's inputs: the same labels, build args and timestamp every time."""
    project = tmp_path / "project"
    if not project.exists():
        shutil.copytree(PROJECT / "app", project / "app", ignore=shutil.ignore_patterns(".git"))
    props = build_props(env, project, "dockyard/multiarch-it", tag)
    return {
        **props,
        "platform": platform,
        "timestamp": 1764950400,  # the commit time as image.py passes it (2025-12-05T16:00:00Z)
        "build_args": {
            "BUILDER_IMAGE": env["DOCKYARD_BUILDER_IMAGE_PINNED"],
            "RUNTIME_IMAGE": env["DOCKYARD_RUNTIME_IMAGE_PINNED"],
            "BUILD_DATE": "2025-12-05T16:00:00Z",
            "VCS_REF": "multiarch-it",
            "VERSION": "0.0.0+multiarch-it",
        },
        "labels": {"org.opencontainers.image.created": "2025-12-05T16:00:00Z"},
    }


@contextlib.contextmanager
def fresh_podman_storage(root: Path, *, go_cache: bool = False) -> Iterator[dict[str, str]]:
    """The environment of a podman with a storage of its own (overlay, in the new folder ``root``) and its own
    ``TMPDIR``, where buildah keeps RUN --mount=type=cache directories (the Go build cache): a build there is as cold
    as on a fresh runner, and shares nothing with the machine's storage. Removed afterwards, by podman itself (its
    overlay mounts and files owned by a build's users go with it). ``go_cache``: keep the machine's TMPDIR (and so
    its Go build cache), as a CI runner on this machine does."""
    root.mkdir(parents=True)
    conf = root / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/graph"\nrunroot = "{root}/run"\n')
    (root / "tmp").mkdir()
    # Its own libpod tmp_dir too: `podman system reset` below removes the tmp_dir, and the default (/run/libpod) is
    # the machine storage's, which a build running beside this one (another test worker) still uses.
    engine = root / "containers.conf"
    engine.write_text(f'[engine]\ntmp_dir = "{root}/libpod-tmp"\n')
    env = {
        "CONTAINERS_STORAGE_CONF": str(conf),
        "CONTAINERS_CONF": str(engine),
        **({} if go_cache else {"TMPDIR": str(root / "tmp")}),
    }
    try:
        yield env
    finally:
        subprocess.run(
            ["podman", "system", "reset", "--force"],
            env={**os.environ, **env},
            capture_output=True,
            timeout=300,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


CLUSTER = PROJECT / "scripts" / "local-cluster.sh"


def start_local_cluster(timeout: int = 600) -> dict[str, str]:
    """``scripts/local-cluster.sh start`` (idempotent), then its ``env`` exports (KUBECONFIG).

    The start holds a lease on the real node: it starts the node too, and a worker's first start must not bring the
    node back while the test that takes it down holds it exclusively (it found the start's kube-proxy "left on the
    host", and the start's kubelet found containerd stopped under it)."""
    printed = subprocess.run([str(CLUSTER), "env"], check=True, timeout=60, capture_output=True, text=True).stdout
    exports = parse_exports(printed)
    state = Path(exports["KUBECONFIG"]).parent
    state.mkdir(parents=True, exist_ok=True)
    with real_node_lease(state):
        started = subprocess.run([str(CLUSTER), "start"], timeout=timeout, capture_output=True, text=True, check=False)
    if started.returncode != 0:
        raise RuntimeError(f"scripts/local-cluster.sh start failed:\n{started.stderr[-3000:]}")
    return exports


@contextlib.contextmanager
def shared_lock(path: Path) -> Iterator[IO[str]]:
    """``flock`` shared on ``path`` while the block runs; the open file, to turn it exclusive."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class RealNodeLease:
    """A shared lock on the real node for as long as a module's pods are on it (the test modules run side by side on
    pytest-xdist workers). The one test that takes the node down turns its own lease exclusive first: it waits until
    no other module holds one."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle

    def exclusive(self) -> None:
        fcntl.flock(self._handle, fcntl.LOCK_EX)  # from shared: released, then taken when no one else holds it


@contextlib.contextmanager
def real_node_lease(cluster_state: Path) -> Iterator[RealNodeLease]:
    with shared_lock(cluster_state / "real-node.tests.lock") as handle:
        yield RealNodeLease(handle)


def build_props(env: Mapping[str, str], project_dir: Path, repository: str, tag: str) -> dict[str, Any]:
    """Inputs of one PodmanBuild of ``project_dir/app`` (its Dockerfile's runtime stage, after its test stage) on the
    offline base images, pushed to the local registry as ``repository:tag``."""
    registry = env["DOCKYARD_REGISTRY"]
    return {
        "image_name": f"{registry}/{repository}",
        "tags": [tag],
        "project_dir": str(project_dir),
        "context": "app",
        "dockerfile": "Dockerfile",
        "target": "runtime",
        "test_target": "test",
        "platform": "linux/amd64",
        "build_args": {"BUILDER_IMAGE": env["DOCKYARD_BUILDER_IMAGE"], "RUNTIME_IMAGE": env["DOCKYARD_RUNTIME_IMAGE"]},
        "labels": {},
        "context_hash": project_dir.name,
        "registry_server": registry,
        "username": env["DOCKYARD_REGISTRY_USER"],
        "password": env["DOCKYARD_REGISTRY_PASSWORD"],
    }


#: The build script's lock on podman's storage (``components/dockyard_components/scripts/podman-build.sh``): every
#: build holds it shared, and images are removed only by whoever holds it exclusively. A build looks its cached
#: layers up by image, and one removed under it fails with "getting top layer info: layer not known".
BUILD_LOCK = "dockyard-build.lock"


def _build_lock_file() -> Path:
    info = subprocess.run(
        ["podman", "info", "--format", "{{.Store.GraphRoot}}"], capture_output=True, text=True, check=True, timeout=60
    )
    return Path(info.stdout.strip()) / BUILD_LOCK


@contextlib.contextmanager
def podman_build_lock() -> Iterator[None]:
    """Held shared around a test's own ``podman build``, as the build script holds it."""
    with shared_lock(_build_lock_file()):
        yield


def remove_images(*refs: str) -> None:
    """Remove what a test built or pulled, as the build script cleans up: only when no build is running (the lock
    taken exclusively without waiting); otherwise only the names go, and ``local-services.sh prune`` frees the
    images later. A name is untagged, never the image ID: a concurrent build may have tagged the same
    (reproducible) image for its push."""
    with _build_lock_file().open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            command = ["podman", "untag"]
        else:
            command = ["podman", "rmi", "--force"]
        try:
            for ref in refs:
                subprocess.run([*command, ref], capture_output=True, check=False, timeout=120)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
