"""Registry HTTP API v2 checks against recorded answers: basic auth, the bearer challenge, missing manifests."""

from __future__ import annotations

import httpx
import pytest

from dockyard.model.credentials import RegistryCredentials
from dockyard.releases.registry_client import RegistryUnreachableError, index_platforms, manifest_exists

DIGEST = "sha256:" + "7" * 64
REF = f"ghcr.io/acme/app@{DIGEST}"
CREDENTIALS = RegistryCredentials("bot", "pw", None)


def test_bearer_challenge_is_answered_with_a_token() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path} {request.headers.get('authorization', '')[:6]}")
        if request.url.path == "/token":
            return httpx.Response(200, json={"token": "t0k"})
        if request.headers.get("authorization") == "Bearer t0k":
            return httpx.Response(200, headers={"docker-content-digest": DIGEST})
        return httpx.Response(
            401, headers={"www-authenticate": 'Bearer realm="https://ghcr.io/token",service="ghcr.io"'}
        )

    assert manifest_exists(REF, CREDENTIALS, transport=httpx.MockTransport(answer))
    assert seen == [
        f"HEAD /v2/acme/app/manifests/{DIGEST} Basic ",
        "GET /token Basic ",
        f"HEAD /v2/acme/app/manifests/{DIGEST} Bearer",
    ]


def test_missing_manifest_and_refused_credentials() -> None:
    assert not manifest_exists(REF, CREDENTIALS, transport=httpx.MockTransport(lambda request: httpx.Response(404)))
    with pytest.raises(RegistryUnreachableError, match="refused the credentials of 'bot'"):
        manifest_exists(REF, CREDENTIALS, transport=httpx.MockTransport(lambda request: httpx.Response(403)))


def test_unreachable_registry_is_one_clear_error() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(RegistryUnreachableError, match=r"ghcr\.io: ConnectError: connection refused"):
        manifest_exists(REF, CREDENTIALS, transport=httpx.MockTransport(fail))


def test_index_platforms_lists_an_index_and_nothing_for_one_image() -> None:
    index: dict[str, object] = {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"digest": "sha256:" + "1" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:" + "2" * 64, "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": "sha256:" + "3" * 64, "platform": {"os": "unknown", "architecture": "unknown"}},
        ],
    }
    image: dict[str, object] = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"digest": "sha256:" + "4" * 64},
    }
    assert index_platforms(REF, CREDENTIALS, transport=_serving(index)) == ["linux/amd64", "linux/arm64"]
    assert index_platforms(REF, CREDENTIALS, transport=_serving(image)) == []


def _serving(document: dict[str, object]) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(200, json=document))
