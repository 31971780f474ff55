"""The build memo with the real build script, podman and the local registry: a second build with the same inputs
reuses the pushed digest without building and points its tag back at it (another build had taken the tag); once the
registry has lost that digest, the next build runs in full."""

from __future__ import annotations

import secrets
import ssl
from pathlib import Path

import httpx
import pytest

from dockyard_components import podman_build
from dockyard_components.build_memo import MEMO_ENV
from tests.local_services import build_props, start_local_services

pytestmark = pytest.mark.timeout(900)

#: The app's shape with trivial steps (a build, a test stage that is never pushed, a runtime copying from it).
DOCKERFILE = """ARG BUILDER_IMAGE
ARG RUNTIME_IMAGE
FROM ${BUILDER_IMAGE} AS build
COPY main.go /src/app
FROM build AS test
RUN test -s /src/app
FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=test /src/app /app
"""


def test_a_memo_hit_reuses_the_digest_and_a_lost_digest_builds_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = start_local_services()
    context = tmp_path / "app"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    # Unique per run (tmp_path's name repeats across sessions): a first build always builds.
    source = f"package main // {secrets.token_hex(16)}\n"
    (context / "main.go").write_text(source)
    monkeypatch.setenv(MEMO_ENV, str(tmp_path / "memo"))
    monkeypatch.delenv("DOCKYARD_BUILD_NO_CACHE", raising=False)
    monkeypatch.setattr(podman_build, "LOG_DIR", tmp_path / "logs")
    registry = env["DOCKYARD_REGISTRY"]
    props = build_props(env, tmp_path, "dockyard/memo-it", f"memo-{tmp_path.name.lower()}"[:120])

    def build() -> tuple[str, str]:
        digest = podman_build.run_build(props)
        log = max((tmp_path / "logs").glob("*.log"), key=lambda p: p.stat().st_mtime_ns)
        return digest, log.read_text()

    auth = (env["DOCKYARD_REGISTRY_USER"], env["DOCKYARD_REGISTRY_PASSWORD"])
    tag_url = f"https://{registry}/v2/dockyard/memo-it/manifests/{props['tags'][0]}"
    accept = {
        "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
    }
    built, first_log = build()
    assert "running the test stage" in first_log

    # Another source takes the tag in between (another branch's build of the same tag).
    other = {**props, "context_hash": f"{tmp_path.name}-other"}
    (context / "main.go").write_text(source + "// other\n")
    other_digest = podman_build.run_build(other)
    assert other_digest != built
    (context / "main.go").write_text(source)

    with httpx.Client(verify=ssl.create_default_context(cafile=env["DOCKYARD_REGISTRY_CA"]), trust_env=False) as http:
        assert http.head(tag_url, auth=auth, headers=accept).headers["Docker-Content-Digest"] == other_digest
        reused, second_log = build()
        assert reused == built
        assert "reusing" in second_log
        assert "running the test stage" not in second_log
        assert "STEP" not in second_log
        # The reuse points the tag back at its digest, as a build would have.
        assert http.head(tag_url, auth=auth, headers=accept).headers["Docker-Content-Digest"] == built

        gone = http.delete(f"https://{registry}/v2/dockyard/memo-it/manifests/{built}", auth=auth)
        assert gone.status_code == 202, gone.text
        rebuilt, third_log = build()
        for digest in {rebuilt, other_digest}:
            http.delete(f"https://{registry}/v2/dockyard/memo-it/manifests/{digest}", auth=auth)
    assert "is gone from the registry: building again" in third_log
    assert "running the test stage" in third_log
    assert rebuilt == built  # same inputs, same content: the same digest, pushed again
