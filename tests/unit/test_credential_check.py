"""Registry credential check: Registry API v2 auth (basic and bearer), the messages, and when the provider asks."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
from pulumi.dynamic import Config, ConfigureRequest
from pulumi.runtime import rpc

from dockyard.model.registry import parse_challenge
from dockyard.program import credential_check
from dockyard.program.credential_check import (
    Credential,
    RegistryAuthError,
    RegistryCredentialCheckProvider,
    credential_hash,
    verify,
)

GOOD = Credential("registry.example:5000", "acme/app", "ci", "s3cret", "dockyard:registryPassword")


def basic_registry(request: httpx.Request) -> httpx.Response:
    expected = httpx.BasicAuth("ci", "s3cret")
    authorized = request.headers.get("authorization") == next(expected.auth_flow(request)).headers["authorization"]
    return httpx.Response(200 if authorized else 401, headers={"www-authenticate": 'Basic realm="local"'})


def token_registry(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v2/":
        return httpx.Response(
            401, headers={"www-authenticate": 'Bearer realm="https://auth.example/token",service="reg"'}
        )
    assert request.url.host == "auth.example"
    assert request.url.params["service"] == "reg"
    assert request.url.params["scope"] == "repository:acme/app:pull"
    return basic_registry(request)


def test_accepts_right_basic_credentials() -> None:
    verify(GOOD, transport=httpx.MockTransport(basic_registry))


def test_refusal_names_the_key_and_not_the_password() -> None:
    wrong = Credential(GOOD.server, GOOD.repository, "ci", "wrong", "dockyard:registryPassword")
    with pytest.raises(RegistryAuthError) as refused:
        verify(wrong, transport=httpx.MockTransport(basic_registry))
    message = str(refused.value)
    assert "refused" in message
    assert "(401)" in message
    assert "check dockyard:registryPassword" in message
    assert "wrong" not in message


def test_follows_a_bearer_challenge() -> None:
    verify(GOOD, transport=httpx.MockTransport(token_registry))
    wrong = Credential(GOOD.server, GOOD.repository, "ci", "nope", "dockyard:registryPassword")
    with pytest.raises(RegistryAuthError, match="refused"):
        verify(wrong, transport=httpx.MockTransport(token_registry))


def test_docker_hub_is_asked_at_its_api_host() -> None:
    hosts: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(200)

    verify(Credential("docker.io", "acme/app", "ci", "x", "k"), transport=httpx.MockTransport(record))
    assert hosts == ["registry-1.docker.io"]


def test_unreachable_local_registry_says_how_to_start_it() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RegistryAuthError) as unreachable:
        verify(Credential(f"127.0.0.1:{port}", "acme/app", "ci", "x", "dockyard:registryPassword"))
    message = str(unreachable.value)
    assert f"unreachable (connection refused at 127.0.0.1:{port})" in message
    assert "scripts/local-services.sh start" in message
    assert "registryPassword" not in message


def test_parse_challenge() -> None:
    assert parse_challenge('Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="x"') == (
        "bearer",
        {"realm": "https://ghcr.io/token", "service": "ghcr.io", "scope": "x"},
    )


def inputs(password: str = "s3cret", **extra: Any) -> dict[str, Any]:
    return {
        "server": GOOD.server,
        "repository": GOOD.repository,
        "username": "ci",
        "credential_hash": credential_hash(GOOD.server, "ci", password),
        "password_env": "REGISTRY_DRILL_PASSWORD",
        "password_key": "dockyard:registryPassword",
        "ca_file": None,
        **extra,
    }


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[Credential]:
    calls: list[Credential] = []

    def fake_verify(credential: Credential, transport: httpx.BaseTransport | None = None) -> None:
        calls.append(credential)
        if credential.password != "s3cret":
            raise RegistryAuthError("refused — check dockyard:registryPassword")

    monkeypatch.setattr(credential_check, "verify", fake_verify)
    return calls


def test_provider_asks_only_when_the_credential_changes(
    asked: list[Credential], monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = RegistryCredentialCheckProvider()
    monkeypatch.setenv("REGISTRY_DRILL_PASSWORD", "s3cret")
    first = provider.check({}, inputs())
    assert first.failures == []
    assert [c.password for c in asked] == ["s3cret"]  # read from the environment the program named
    again = provider.check(first.inputs, inputs())
    assert again.failures == []
    assert len(asked) == 1  # unchanged: no request
    monkeypatch.setenv("REGISTRY_DRILL_PASSWORD", "wrong")
    rotated = provider.check(first.inputs, inputs("wrong"))
    assert [f.reason for f in rotated.failures] == ["refused — check dockyard:registryPassword"]
    assert rotated.failures[0].property == ""  # the engine prints a named property's value next to the reason
    assert len(asked) == 2


def test_provider_reads_the_password_from_the_stack_config(asked: list[Credential]) -> None:
    provider = RegistryCredentialCheckProvider()
    provider.configure(ConfigureRequest(Config({"dockyard:registryPassword": "s3cret"}, "dockyard")))
    assert provider.check({}, inputs(password_env=None)).failures == []
    assert [c.password for c in asked] == ["s3cret"]


def test_provider_without_a_readable_password_says_so(asked: list[Credential], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGISTRY_DRILL_PASSWORD", raising=False)
    (failure,) = RegistryCredentialCheckProvider().check({}, inputs()).failures
    assert "dockyard:registryPassword is not readable" in failure.reason
    assert asked == []


def test_provider_skips_unknown_inputs(asked: list[Credential]) -> None:
    assert RegistryCredentialCheckProvider().check({}, inputs(credential_hash=rpc.UNKNOWN)).failures == []
    assert asked == []


def test_provider_never_replaces() -> None:
    diff = RegistryCredentialCheckProvider().diff("id", inputs(), inputs("new"))
    assert diff.changes is True
    assert diff.replaces == []
