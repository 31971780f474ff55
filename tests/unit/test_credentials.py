"""One credential rule for the registry password, through the real resolver: ``registry.passwordEnv`` when the stack
names a variable, else the stack's secret ``dockyard:registryPassword``; the program, the credential check and the
CLI all read it so."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from dockyard.model.credentials import registry_password
from dockyard.model.stack import StackView
from dockyard.program.credential_check import RegistryCredentialCheckProvider
from dockyard.releases.moves import check_registry
from dockyard.releases.registry_client import manifest_exists
from dockyard_components.registry import RegistryKind
from tests.stacks import PROJECT

DIGEST = "sha256:" + "7" * 64
IMAGE = f"ghcr.io/acme/dockyard-app@{DIGEST}"
TOKEN = "ghcr-token-from-the-stack-secret"


def project_with(tmp_path: Path, stack: str, *, password: bool) -> Path:
    """The committed stack file, plus an encrypted ``dockyard:registryPassword`` when ``password``."""
    shutil.copy(PROJECT / f"Pulumi.{stack}.yaml", tmp_path)
    if password:
        path = tmp_path / f"Pulumi.{stack}.yaml"
        document = yaml.safe_load(path.read_text())
        document["config"]["dockyard:registryPassword"] = {"secure": "v1:ciphertext"}
        path.write_text(yaml.safe_dump(document))
    return tmp_path


def ghcr(seen: list[str]) -> httpx.MockTransport:
    """GHCR: a bearer challenge whose realm hands a pull token only to the right password."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", "anonymous"))
        if request.url.path == "/token":
            good = request.headers.get("authorization") == httpx.BasicAuth("acme-ci", TOKEN)._auth_header
            return httpx.Response(200, json={"token": "t0k"}) if good else httpx.Response(401)
        if request.headers.get("authorization") == "Bearer t0k":
            return httpx.Response(200, headers={"docker-content-digest": DIGEST})
        return httpx.Response(401, headers={"www-authenticate": 'Bearer realm="https://ghcr.io/token"'})

    return httpx.MockTransport(answer)


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_a_ghcr_stack_without_password_env_logs_in_with_its_stack_secret(tmp_path: Path, stack: str) -> None:
    decrypted: list[str] = []

    def decrypt(key: str) -> str:
        decrypted.append(key)
        return TOKEN

    view = StackView.read(project_with(tmp_path, stack, password=True), stack, decrypt)
    assert view.env.registry.kind == RegistryKind.GHCR
    assert view.env.registry.password_env is None
    assert view.credentials.password == TOKEN
    assert decrypted == ["dockyard:registryPassword"]
    seen: list[str] = []
    assert manifest_exists(IMAGE, view.credentials, transport=ghcr(seen))
    assert seen[1].startswith("Basic "), "the token endpoint is asked with the stack's password, not anonymously"


def test_without_the_secret_nothing_is_decrypted_and_the_registry_is_asked_anonymously(tmp_path: Path) -> None:
    view = StackView.read(project_with(tmp_path, "staging", password=False), "staging", lambda key: pytest.fail(key))
    assert view.credentials.password is None


def test_the_promotion_gate_asks_with_the_resolved_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str | None] = []
    monkeypatch.setattr(
        "dockyard.releases.moves.manifest_exists", lambda image, credentials: asked.append(credentials.password) or True
    )
    view = StackView.read(project_with(tmp_path, "prod", password=True), "prod", lambda key: TOKEN)
    assert check_registry(IMAGE, view).exists
    assert asked == [TOKEN]


def test_password_env_wins_for_every_kind_and_the_program_and_provider_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_TOKEN", "from-the-environment")
    environ = {"REGISTRY_TOKEN": "from-the-environment"}
    secrets = {"registryPassword": "from-the-stack"}
    assert registry_password("REGISTRY_TOKEN", environ, secrets.get, str) == "from-the-environment"
    assert registry_password("UNSET", environ, secrets.get, str) is None
    assert registry_password(None, environ, secrets.get, str) == "from-the-stack"
    provider = RegistryCredentialCheckProvider()
    provider._config = {"registryPassword": "from-the-stack"}  # type: ignore[assignment]  # what configure() keeps
    assert provider._password({"password_env": "REGISTRY_TOKEN"}) == "from-the-environment"
    assert provider._password({"password_env": None}) == "from-the-stack"
