"""Pulumi mocks for unit tests: record every resource, refuse unexpected invokes, restore runtime settings."""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime.settings as runtime_settings
import pytest

from dockyard.model.config import EnvironmentConfig
from dockyard.pipeline.derive import derive_pipeline, read_stack_environments
from dockyard.pipeline.model import Pipeline
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
    # The program's trust check remembers acceptances here, never in the user's cache.
    monkeypatch.setenv("DOCKYARD_TRUST_CACHE", str(tmp_path / "trust-cache"))
    return tmp_path


#: A release a promotion could write into a stack that has none yet.
RELEASE = "127.0.0.1:5443/dockyard/app@sha256:" + "e" * 64


def first_release(stack: str, image: str = RELEASE) -> dict[str, Any]:
    """Config keys of a committed stack once a first release is promoted into it, written by its strategy's own
    promotion (a canary at its first step, the idle color); nothing for a stack that builds or serves one already."""
    from dockyard.model.config import environment_from_file
    from dockyard.model.stack import edited
    from tests.stacks import stack_config

    env = environment_from_file(PROJECT, stack)
    if env.image.build is not None or env.running_images:
        return {}
    return edited({"config": stack_config(stack)}, env.kubernetes.strategy.promotion_write(image))["config"]


def accept_running_digests(stack: str, config: Mapping[str, Any]) -> None:
    """Remember the digests ``config`` runs as accepted by its trust policy, as an earlier check would have (the real
    stacks' keyless signatures verify online only); the trust check itself is tests/unit/test_trust.py's."""
    from dockyard.model.config import SECRET_KEYS, ConfigError, parse_environment
    from dockyard.model.trust import TrustCache, TrustPolicy

    keys = {k.removeprefix("dockyard:"): v for k, v in config.items() if k.startswith("dockyard:")}
    try:
        env = parse_environment(stack, {k: v for k, v in keys.items() if k not in SECRET_KEYS})
    except ConfigError:
        return  # the program refuses this config before any check
    if env.signing is not None:
        policy = TrustPolicy.of(stack, env.signing, PROJECT)
        for image in env.running_images.values():
            TrustCache().remember(policy, image)


#: What the stand-in syft writes (and verify-attestation returns) for any image.
SBOM = {
    "spdxVersion": "SPDX-2.3",
    "creationInfo": {"creators": ["Tool: syft-1.57.1"]},
    "packages": [
        {"name": "golang.org/x/text", "externalRefs": [{"referenceLocator": "pkg:golang/golang.org/x/text@v0.20.0"}]},
        {"name": "busybox", "externalRefs": []},
    ],
}

# Each stand-in appends {"tool", "argv", "env"} to $RECORD; syft writes the SBOM; attest keeps its statement in
# $RECORD.attested, where verify-attestation reads those of its type back as DSSE lines.
STAND_IN = """#!/usr/bin/env python3
import base64, json, os, sys
from pathlib import Path
auth = Path(os.environ.get("DOCKER_CONFIG", "/nonexistent"), "config.json")
entry = {
    "tool": Path(sys.argv[0]).name,
    "argv": sys.argv[1:],
    "env": {k: os.environ.get(k) for k in ("COSIGN_PRIVATE_KEY", "COSIGN_PASSWORD", "SYFT_REGISTRY_AUTH_PASSWORD",
                                         "SSL_CERT_FILE", "DOCKER_CONFIG")},
    "auth_mode": oct(auth.stat().st_mode & 0o777) if auth.exists() else None,
    "auth": json.loads(auth.read_text()) if auth.exists() else None,
}
with open(os.environ["RECORD"], "a") as record:
    record.write(json.dumps(entry) + "\\n")
if os.environ.get("FAIL_ON") and os.environ["FAIL_ON"] in sys.argv[1:2]:
    sys.stderr.write("Error: no matching signatures: " + os.environ.get("COSIGN_PASSWORD", "") + "\\n")
    sys.exit(12)
if entry["tool"] == "syft":
    target = next(a for a in sys.argv if a.startswith("spdx-json=")).split("=", 1)[1]
    Path(target).write_text(os.environ["SBOM"])
# The registry's attestations of the digest: what `attest` wrote, read back by `verify-attestation` of its type.
store = Path(os.environ["RECORD"] + ".attested")
attested = json.loads(store.read_text()) if store.exists() else []
kinds = {"spdxjson": "https://spdx.dev/Document", "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1"}
if sys.argv[1:2] == ["attest"]:
    kind = kinds.get(sys.argv[sys.argv.index("--type") + 1], sys.argv[sys.argv.index("--type") + 1])
    predicate = json.loads(Path(sys.argv[sys.argv.index("--predicate") + 1]).read_text())
    store.write_text(json.dumps([*attested, {"predicateType": kind, "predicate": predicate}]))
if sys.argv[1:2] == ["verify-attestation"]:
    kind = kinds.get(sys.argv[sys.argv.index("--type") + 1], sys.argv[sys.argv.index("--type") + 1])
    matching = [statement for statement in attested if statement["predicateType"] == kind]
    if not matching:
        sys.stderr.write(f"Error: none of the attestations matched the predicate type: {kind}\\n")
        sys.exit(1)
    for statement in matching:
        print(json.dumps({"payload": base64.b64encode(json.dumps(statement).encode()).decode()}))
"""


@pytest.fixture
def tools_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("syft", "cosign"):
        script = bin_dir / name
        script.write_text(STAND_IN)
        script.chmod(0o755)
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RECORD", str(record))
    monkeypatch.setenv("SBOM", json.dumps(SBOM))
    return record


@pytest.fixture(scope="module")
def stacks() -> dict[str, EnvironmentConfig]:
    """The committed stacks' validated configs."""
    return read_stack_environments(PROJECT)


@pytest.fixture(scope="module")
def pipeline(stacks: dict[str, EnvironmentConfig]) -> Pipeline:
    """The pipeline the committed stacks describe."""
    return derive_pipeline(stacks)
