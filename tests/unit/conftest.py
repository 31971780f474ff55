"""Pulumi mocks for unit tests: record every resource, refuse unexpected invokes, restore runtime settings."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime.settings as runtime_settings
import pytest

from tests.stacks import PROJECT

FAKE_DIGEST = "sha256:" + "ab" * 32
PASSWORD = "sentinel-registry-password"
APP_SECRET = "sentinel-app-secret"


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    """Records ``new_resource`` calls; answers the outputs a real provider would add."""

    resources: list[pulumi.runtime.MockResourceArgs] = field(default_factory=list)
    digest: str = FAKE_DIGEST

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ == "pulumi-python:dynamic:Resource":
            outputs["digest"] = self.digest
        if args.typ == "docker:index/image:Image":
            outputs["repoDigest"] = f"{args.inputs['imageName'].split(':')[0]}@{self.digest}"
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise AssertionError(f"unexpected invoke {args.token} with {dict(args.args)}")

    def of_type(self, typ: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ == typ]

    def named(self, name: str) -> pulumi.runtime.MockResourceArgs:
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"expected one resource named {name}, got {[r.name for r in self.resources]}"
        return matches[0]


@pytest.fixture
def mocks() -> Iterator[RecordingMocks]:
    saved = copy.copy(runtime_settings.SETTINGS.__dict__)
    saved_root = runtime_settings.get_root_resource()
    saved_config = dict(pulumi.runtime.config.CONFIG.get())
    recording = RecordingMocks()
    pulumi.runtime.set_mocks(recording, project="dockyard", stack="unit", preview=False)
    try:
        yield recording
    finally:
        runtime_settings.SETTINGS.__dict__.update(saved)
        runtime_settings.ROOT.set(saved_root)
        pulumi.runtime.config.set_all_config(saved_config, [])


def set_stack_config(values: Mapping[str, Any], secret_keys: list[str] | None = None) -> None:
    """Install config as the engine passes it: strings, objects JSON-encoded."""
    encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    pulumi.runtime.config.set_all_config(encoded, secret_keys or [])


SECRET_SIG = "4dabf18193072939515e22adb298388d"


def plaintext_paths(value: Any, sentinel: str, path: str = "") -> list[str]:
    """Where ``sentinel`` occurs in ``value`` outside a Pulumi secret wrapper (as mocks receive inputs)."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return []
        return [p for key, item in value.items() for p in plaintext_paths(item, sentinel, f"{path}.{key}")]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in plaintext_paths(item, sentinel, f"{path}[{i}]")]
    return [path or "."] if isinstance(value, str) and sentinel in value else []


def secret_paths(value: Any, sentinel: str, path: str = "") -> list[str]:
    """Where ``sentinel`` occurs inside a secret wrapper."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return [path] if sentinel in json.dumps(value.get("value")) else []
        return [p for key, item in value.items() for p in secret_paths(item, sentinel, f"{path}.{key}")]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in secret_paths(item, sentinel, f"{path}[{i}]")]
    return []


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory with a tiny build context, so unit tests never touch the checkout."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "Dockerfile").write_text("FROM scratch AS test\nFROM scratch AS runtime\nCOPY main.go /\n")
    (app / "main.go").write_text("package main\n")
    # The signing public key the local stacks name (dockyard:signing.publicKeyFile).
    shutil.copytree(PROJECT / "keys", tmp_path / "keys")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCKYARD_REGISTRY_PASSWORD", PASSWORD)
    # The local stacks apply to the local cluster through the ambient kubeconfig (scripts/local-env.sh).
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.setenv("GHCR_TOKEN", PASSWORD)
    return tmp_path
