"""Build secrets with the real build script, podman and the local registry: a RUN step reads the secret and writes
a derived, non-secret marker (its SHA-256) that reaches the pushed image; the secret's value is in no pushed layer,
not in the image config (which holds the history), not in the build log, and its file is gone after the build.

Assertions name where a value was found, never the value: pytest prints what a failed ``assert x in y`` compares.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import secrets
import ssl
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from dockyard_components import podman_build
from dockyard_components.build_memo import MEMO_ENV
from tests.local_services import build_props, remove_images, start_local_services

pytestmark = pytest.mark.timeout(900)

REPOSITORY = "build28/secrets-it"
#: The secret is read in the build stage (where the app's dependencies would be fetched with a token); only its
#: hash goes on, into the runtime image.
DOCKERFILE = """ARG BUILDER_IMAGE
ARG RUNTIME_IMAGE
FROM ${BUILDER_IMAGE} AS build
COPY main.go /src/app
RUN --mount=type=secret,id=registry_token \\
    test -s /run/secrets/registry_token \\
 && sha256sum /run/secrets/registry_token | cut -d' ' -f1 > /src/token.sha256
FROM build AS test
RUN test -s /src/app && test -s /src/token.sha256
FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=test /src/app /app
COPY --from=test /src/token.sha256 /token.sha256
"""
MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


def _layer_files(blob: bytes) -> bytes:
    """A layer's tar stream (a gzip layer decompressed), where a file's bytes stand in the clear."""
    return gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob


def test_a_build_secret_is_used_in_the_build_and_found_nowhere_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = start_local_services()
    secret = f"dys-{secrets.token_hex(24)}"
    context = tmp_path / "app"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    # Unique per run: a secret mount does not enter the layer cache's key (as with docker), so the same sources would
    # reuse an earlier run's RUN layer, and its marker, made from that run's secret.
    (context / "main.go").write_text(f"package main // {secrets.token_hex(16)}\n")
    monkeypatch.delenv(MEMO_ENV, raising=False)
    monkeypatch.setattr(podman_build, "LOG_DIR", tmp_path / "logs")
    registry = env["DOCKYARD_REGISTRY"]
    image_name = f"{registry}/{REPOSITORY}"
    tag = f"secrets-{tmp_path.name.lower()}"[:120]
    props = {
        **build_props(env, tmp_path, REPOSITORY, tag),
        "secrets": {"registry_token": secret},
        "secret_ids": ["registry_token"],
    }

    # The files the build mounts from: 0600 while the build runs, gone after it.
    handed: list[str] = []
    modes: list[int] = []
    real_secret_files = podman_build.secret_files

    @contextlib.contextmanager
    def watched(values: Mapping[str, str]) -> Iterator[str]:
        with real_secret_files(values) as lines:
            handed.extend(line.split("=", 1)[1] for line in lines.splitlines())
            modes.extend(stat.S_IMODE(Path(path).stat().st_mode) for path in handed)
            yield lines

    monkeypatch.setattr(podman_build, "secret_files", watched)
    try:
        digest = podman_build.run_build(props)
    finally:
        remove_images(f"{image_name}:{tag}")
    assert len(handed) == 1
    assert modes == [0o600]
    assert not any(Path(path).exists() for path in handed), "a secret file outlived the build"
    assert not Path(handed[0]).parent.exists()

    log = max((tmp_path / "logs").glob("*.log"), key=lambda p: p.stat().st_mtime_ns).read_bytes()
    assert b"--mount=type=secret,id=registry_token" in log  # the log is the build's: the step ran
    found: dict[str, bool] = {"the build log": secret.encode() in log}

    auth = (env["DOCKYARD_REGISTRY_USER"], env["DOCKYARD_REGISTRY_PASSWORD"])
    base = f"https://{registry}/v2/{REPOSITORY}"
    verify = ssl.create_default_context(cafile=env["DOCKYARD_REGISTRY_CA"])
    with httpx.Client(verify=verify, trust_env=False, auth=auth, follow_redirects=True, timeout=60) as http:
        try:
            manifest_response = http.get(f"{base}/manifests/{digest}", headers={"Accept": MANIFEST_TYPES})
            manifest_response.raise_for_status()
            manifest = manifest_response.json()
            found["the manifest"] = secret.encode() in manifest_response.content
            config = http.get(f"{base}/blobs/{manifest['config']['digest']}")
            config.raise_for_status()
            found["the image config (with its history)"] = secret.encode() in config.content
            layers = []
            for layer in manifest["layers"]:
                blob = http.get(f"{base}/blobs/{layer['digest']}")
                blob.raise_for_status()
                layers.append(_layer_files(blob.content))
                found[f"layer {layer['digest']}"] = secret.encode() in blob.content or secret.encode() in layers[-1]
        finally:
            http.delete(f"{base}/manifests/{digest}")

    # The RUN step had the secret: the marker derived from it is in the pushed image.
    marker = hashlib.sha256(secret.encode()).hexdigest().encode()
    assert any(marker in layer for layer in layers), "the secret's marker is in no layer: the step did not read it"
    assert len(found) >= 4
    leaks = sorted(where for where, leaked in found.items() if leaked)
    assert leaks == [], "the build secret's value was found"
