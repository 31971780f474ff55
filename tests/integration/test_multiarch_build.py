"""Multi-arch and reproducible builds with the real build script, podman and the local registry (no Pulumi).

Each build runs in a podman storage of its own, made fresh for it (a temporary graph root): nothing is cached but
the Go build cache mount, which shapes no output. The base images come from the local registry by digest (an image
index for the runtime base), as a fresh CI runner would pull them. Two clean builds of one commit give one digest,
for one platform and for an image index; the index holds linux/amd64 and linux/arm64, each manifest's config names
its platform, and the arm64 binary is an arm64 ELF, cross-compiled (no emulation here).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from dockyard_components import podman_build
from tests.local_services import build_props, services_env
from tests.stacks import PROJECT

pytestmark = pytest.mark.timeout(1800)

PLATFORMS = "linux/amd64,linux/arm64"
#: The commit time the builds share (what image.py passes: metadata.created as seconds since the epoch).
TIMESTAMP = 1764950400
#: ELF e_machine of each architecture (the 2 bytes at offset 18, little-endian).
ELF_MACHINE = {"amd64": 0x3E, "arm64": 0xB7}


@pytest.fixture(scope="module")
def env() -> Mapping[str, str]:
    return services_env()


@contextlib.contextmanager
def fresh_storage(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A podman storage of its own (overlay, in a temporary graph root) for the builds inside; removed after."""
    root.mkdir(parents=True)
    conf = root / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/graph"\nrunroot = "{root}/run"\n')
    with monkeypatch.context() as patch:
        patch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
        try:
            yield root
        finally:
            # podman's own removal: overlay mounts and files owned by the build's users go with it.
            subprocess.run(["podman", "system", "reset", "--force"], capture_output=True, timeout=300, check=False)
    shutil.rmtree(root, ignore_errors=True)


def _props(env: Mapping[str, str], tmp_path: Path, tag: str, platform: str) -> dict[str, Any]:
    project = tmp_path / "project"
    if not project.exists():
        shutil.copytree(PROJECT / "app", project / "app", ignore=shutil.ignore_patterns(".git"))
    props = build_props(env, project, "dockyard/multiarch-it", tag)
    return {
        **props,
        "platform": platform,
        "timestamp": TIMESTAMP,
        "build_args": {
            "BUILDER_IMAGE": env["DOCKYARD_BUILDER_IMAGE_PINNED"],
            "RUNTIME_IMAGE": env["DOCKYARD_RUNTIME_IMAGE_PINNED"],
            "BUILD_DATE": "2025-12-05T16:00:00Z",
            "VCS_REF": "multiarch-it",
            "VERSION": "0.0.0+multiarch-it",
        },
        "labels": {"org.opencontainers.image.created": "2025-12-05T16:00:00Z"},
    }


def _raw(ref: str) -> dict[str, Any]:
    out = subprocess.run(["skopeo", "inspect", "--raw", f"docker://{ref}"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _blob(image: str, digest: str, dest: Path) -> Path:
    """One blob of ``image`` (a repository) saved to ``dest``."""
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"docker://{image}@{digest}", f"dir:{dest}"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return dest


def test_two_clean_builds_of_one_commit_give_one_digest_and_an_index_of_both_architectures(
    env: Mapping[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(podman_build, "LOG_DIR", tmp_path / "logs")
    monkeypatch.delenv("DOCKYARD_BUILD_MEMO", raising=False)
    image = f"{env['DOCKYARD_REGISTRY']}/dockyard/multiarch-it"
    suffix = tmp_path.name.lower()[-40:]

    digests: dict[str, str] = {}
    for run in ("a", "b"):
        with fresh_storage(tmp_path / f"storage-{run}", monkeypatch):
            if run == "b":
                # First in its fresh storage: the one-platform build.
                digests["one"] = podman_build.run_build(_props(env, tmp_path, f"one-{suffix}", "linux/amd64"))
            digests[run] = podman_build.run_build(_props(env, tmp_path, f"index-{run}-{suffix}", PLATFORMS))

    assert digests["a"] == digests["b"], digests
    index = _raw(f"{image}@{digests['a']}")
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in index["manifests"]}
    assert sorted(platforms) == ["linux/amd64", "linux/arm64"]
    # A one-platform build of the commit (another fresh storage) is the index's amd64 image, byte for byte.
    assert digests["one"] == platforms["linux/amd64"]

    for platform, digest in platforms.items():
        arch = platform.split("/")[1]
        manifest = _raw(f"{image}@{digest}")
        config = json.loads(
            (_blob(image, digest, tmp_path / f"blobs-{arch}") / manifest["config"]["digest"].split(":")[1]).read_text()
        )
        assert (config["os"], config["architecture"]) == ("linux", arch)
        assert config["created"] == "2025-12-05T16:00:00Z"
        # The binary is the last layer (COPY --from=build): an ELF for this architecture.
        layer = tmp_path / f"blobs-{arch}" / manifest["layers"][-1]["digest"].split(":")[1]
        with tarfile.open(layer) as tar:
            member = tar.extractfile("usr/local/bin/dockyard-app")
            assert member is not None
            head = member.read(20)
        assert head[:4] == b"\x7fELF"
        assert int.from_bytes(head[18:20], "little") == ELF_MACHINE[arch], f"{platform}: e_machine {head[18:20]!r}"
