"""Multi-arch and reproducible builds with the real build script, podman and the local registry (no Pulumi).

Each build runs in a podman storage of its own, made fresh for it (a temporary graph root, and its own TMPDIR, where
buildah keeps the Go build cache mount): nothing is cached. The base images come from the local registry by digest (an image
index for the runtime base), as a fresh CI runner would pull them. Two clean builds of one commit give one digest,
for one platform and for an image index; the index holds linux/amd64 and linux/arm64, each manifest's config names
its platform, and the arm64 binary is an arm64 ELF, cross-compiled (no emulation here).
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from dockyard_components import podman_build
from tests.local_services import fresh_podman_storage, pinned_build_props, services_env

pytestmark = pytest.mark.timeout(1800)

PLATFORMS = "linux/amd64,linux/arm64"
#: ELF e_machine of each architecture (the 2 bytes at offset 18, little-endian).
ELF_MACHINE = {"amd64": 0x3E, "arm64": 0xB7}


@pytest.fixture(scope="module")
def env() -> Mapping[str, str]:
    return services_env()


def _raw(ref: str) -> dict[str, Any]:
    out = subprocess.run(["skopeo", "inspect", "--raw", f"docker://{ref}"], capture_output=True, text=True, check=True)
    document: dict[str, Any] = json.loads(out.stdout)
    return document


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
        with fresh_podman_storage(tmp_path / f"storage-{run}") as storage, monkeypatch.context() as patch:
            for key, value in storage.items():
                patch.setenv(key, value)
            if run == "b":
                # First in its fresh storage: the one-platform build.
                digests["one"] = podman_build.run_build(
                    pinned_build_props(env, tmp_path, f"one-{suffix}", "linux/amd64")
                )
            digests[run] = podman_build.run_build(pinned_build_props(env, tmp_path, f"index-{run}-{suffix}", PLATFORMS))

    assert digests["a"] == digests["b"], digests
    index = _raw(f"{image}@{digests['a']}")
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in index["manifests"]}
    # In the order listed: an order that follows which build finished first changes the digest between runs.
    assert list(platforms) == ["linux/amd64", "linux/arm64"]
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
