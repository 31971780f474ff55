"""The objects a committed stack renders in helm mode: the program (``__main__.py``) under mocks, each Kubernetes
resource written out as the render provider writes it (``apiVersion``/``kind``, annotated auto-names, Secrets as
base64 ``data`` in the clear: what a real render of local-prod wrote).

The real render directory is the engine's (tests/engine/test_helm.py charts it and installs the chart); this lets the
integration tier chart every committed stack with the real helm in seconds. A stack with no release yet gets the
first release a promotion would write; every stack gets app secrets, so each chart has Secrets to template.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import runpy
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime.settings as runtime_settings
import pytest
import yaml

from dockyard.releases.chart import SECRET_ROLES
from tests.stacks import PROJECT, stack_config
from tests.unit.conftest import FAKE_DIGEST, SECRET_SIG, accept_running_digests, first_release, set_stack_config

APP_SECRETS = {"API_KEY": "sentinel-chart-app-secret"}
REGISTRY_PASSWORD = "sentinel-chart-registry-password"
BRACES = "{{ .Values.not_a_template }}"
_SIGNING = {"dockyard:cosignPrivateKey": "sentinel-cosign-private-key", "dockyard:cosignPassword": "sentinel"}


def _plain(value: Any) -> Any:
    """A value as the render provider writes it: secrets in the clear, integers as integers."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return _plain(value["value"])
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    # Mocks carry numbers as protobuf doubles; the render provider writes the integers the program gave.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class RenderingMocks(pulumi.runtime.Mocks):
    """Answers as the providers do (a build's digest, a Kubernetes object's auto-name) and keeps each object."""

    def __init__(self) -> None:
        self.objects: list[dict[str, Any]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        outputs = dict(args.inputs)
        if args.typ == "pulumi-python:dynamic:Resource":
            outputs["digest"] = FAKE_DIGEST
        if args.typ.startswith("kubernetes:") and not args.typ.startswith("pulumi:"):
            metadata = dict(outputs.get("metadata") or {})
            if "name" not in metadata:
                # The provider's auto-name: the logical name and a random suffix (here a stable one), annotated.
                metadata["name"] = f"{args.name}-{hashlib.sha256(args.name.encode()).hexdigest()[:8]}"
                metadata["annotations"] = {**metadata.get("annotations", {}), "pulumi.com/autonamed": "true"}
            outputs["metadata"] = metadata
            group_version, kind = args.typ.removeprefix("kubernetes:").split(":")
            written = {"apiVersion": group_version.removeprefix("core/"), "kind": kind, **_plain(outputs)}
            if "stringData" in written:
                # The provider writes a Secret's stringData as base64 data (checked on a real render).
                data = {k: base64.b64encode(v.encode()).decode() for k, v in written.pop("stringData").items()}
                written["data"] = {**written.get("data", {}), **data}
            self.objects.append(written)
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise AssertionError(f"unexpected invoke {args.token}")


def helm_config(stack: str) -> tuple[dict[str, Any], list[str]]:
    """``stack``'s committed plaintext config in helm mode, with a release and app secrets; and its secret keys."""
    committed = yaml.safe_load((PROJECT / f"Pulumi.{stack}.yaml").read_text())["config"]
    config = {**stack_config(stack), **first_release(stack)}
    kubernetes = {**config["dockyard:kubernetes"], "mode": "helm"}
    # A value that looks like a template action must reach the cluster as written.
    kubernetes["env"] = {**kubernetes.get("env", {}), "GREETING": BRACES}
    kubernetes.pop("context", None)
    config["dockyard:kubernetes"] = kubernetes
    config["dockyard:appSecrets"] = APP_SECRETS
    secret_keys = ["dockyard:appSecrets"]
    if "dockyard:cosignPrivateKey" in committed:
        config.update(_SIGNING)
        secret_keys += list(_SIGNING)
    return config, secret_keys


@contextmanager
def _mocked(stack: str, mocks: RenderingMocks) -> Iterator[None]:
    saved = copy.copy(runtime_settings.SETTINGS.__dict__)
    saved_root = runtime_settings.get_root_resource()
    saved_config = dict(pulumi.runtime.config.CONFIG.get())
    pulumi.runtime.set_mocks(mocks, project="dockyard", stack=stack, preview=False)
    try:
        yield
    finally:
        runtime_settings.SETTINGS.__dict__.update(saved)
        runtime_settings.ROOT.set(saved_root)
        pulumi.runtime.config.set_all_config(saved_config, [])


def helm_mode_objects(stack: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Run the program for ``stack`` in helm mode in ``workdir`` (a scratch project directory); its objects."""
    app = workdir / "app"
    app.mkdir(parents=True, exist_ok=True)
    (app / "Dockerfile").write_text("FROM scratch AS test\nFROM scratch AS runtime\nCOPY main.go /\n")
    (app / "main.go").write_text("package main\n")
    if not (workdir / "keys").exists():
        shutil.copytree(PROJECT / "keys", workdir / "keys")
    monkeypatch.chdir(workdir)
    for variable in ("DOCKYARD_REGISTRY_PASSWORD", "GHCR_TOKEN"):
        monkeypatch.setenv(variable, REGISTRY_PASSWORD)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("DOCKYARD_TRUST_CACHE", str(workdir / "trust-cache"))
    config, secret_keys = helm_config(stack)
    mocks = RenderingMocks()
    with _mocked(stack, mocks):
        accept_running_digests(stack, config)

        @pulumi.runtime.test
        def run() -> None:
            pulumi.runtime.settings._set_stack(stack)
            set_stack_config(config, secret_keys)
            runpy.run_path(str(PROJECT / "__main__.py"), run_name="__main__")

        run()
    return mocks.objects


def install_values(objects: list[dict[str, Any]], directory: Path) -> Path:
    """A values file with every rendered Secret's values, as an installer gives them (owner-only: they are secrets)."""
    roles: dict[str, dict[str, str]] = {}
    for obj in objects:
        if obj["kind"] == "Secret":
            values = roles.setdefault(SECRET_ROLES[obj.get("type", "Opaque")], {})
            values.update({k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()})
            values.update(obj.get("stringData") or {})
    path = directory / "secret-values.yaml"
    path.touch(0o600)
    path.write_text(yaml.safe_dump({"secrets": roles}))
    return path
