"""The registry lifecycle with the real regctl and cosign on the local TLS registry (scripts/local-services.sh).

A small image is pushed to a repository of this run's own and signed and SBOM-attested with a key pair made for the
run (the local stacks' demo key is encrypted in Pulumi.local.yaml, which only the engine decrypts: the engine tier
signs with it). A promotion's copy into a stack with its own repository carries the digest and its ``.sig``/``.att``,
and the target's trust policy (real cosign) accepts the copy; a re-run converges; a registry that is down or refuses
the password is one line naming it, with no secret. Retention, dry run then applied: every referenced digest (by a
stack, by a release tag) stays with its signatures, an unreferenced old one goes with its signature. A missing
regctl or cosign fails these tests: nothing here is skipped.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import secrets
import subprocess
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from dockyard.model.config import parse_environment, plaintext_keys
from dockyard.model.credentials import RegistryCredentials
from dockyard.model.stack import StackView
from dockyard.releases.arrival import copy_release
from dockyard.releases.prune import delete, listing, prune_repository
from dockyard.releases.regctl import Regctl, RegctlError
from dockyard.releases.retention import Reference, judge
from dockyard.releases.trust import trust_problems
from dockyard_components.cosign import SigningTools, tool
from tests.local_services import start_local_services
from tests.stacks import PROJECT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

KEY_PASSWORD = "lifecycle"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
#: A minimal SPDX document: what the trust policy requires beside the signature is an SBOM attestation.
SBOM = {"spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": "lifecycle"}


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    # Both tools first: a missing one fails here, before anything is pushed.
    tool("regctl")
    tool("cosign")
    return start_local_services()


@pytest.fixture(scope="module")
def run_id() -> str:
    return secrets.token_hex(4)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project directory holding this run's key pair (cosign.key, cosign.pub), as a stack's publicKeyFile names."""
    directory = tmp_path_factory.mktemp("lifecycle")
    subprocess.run(
        [tool("cosign"), "generate-key-pair"],
        cwd=directory,
        env={**os.environ, "COSIGN_PASSWORD": KEY_PASSWORD},
        check=True,
        capture_output=True,
        timeout=120,
    )
    return directory


@pytest.fixture(autouse=True)
def registry_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # What scripts/local-env.sh exports for the local stacks (registry.passwordEnv, the CA) and a fresh trust cache.
    monkeypatch.setenv("DOCKYARD_REGISTRY_PASSWORD", env["DOCKYARD_REGISTRY_PASSWORD"])
    monkeypatch.setenv("DOCKYARD_REGISTRY_CA", env["DOCKYARD_REGISTRY_CA"])
    monkeypatch.setenv("DOCKYARD_TRUST_CACHE", str(tmp_path / "trust"))


def credentials(env: dict[str, str]) -> RegistryCredentials:
    return RegistryCredentials(
        env["DOCKYARD_REGISTRY_USER"], env["DOCKYARD_REGISTRY_PASSWORD"], env["DOCKYARD_REGISTRY_CA"]
    )


def stack(name: str, repository: str, **registry: object) -> StackView:
    """A committed local stack whose registry is ``repository`` and whose trust policy is this run's key."""
    document = yaml.safe_load((PROJECT / f"Pulumi.{name}.yaml").read_text())
    config = document["config"]
    config["dockyard:registry"] = {**config["dockyard:registry"], "repository": repository, **registry}
    config["dockyard:signing"] = {"publicKeyFile": "cosign.pub", "requireSbom": True}
    return StackView(name, parse_environment(name, plaintext_keys(document)), document)


@pytest.fixture
def regctl(env: dict[str, str]) -> Iterator[Regctl]:
    with Regctl({env["DOCKYARD_REGISTRY"]: credentials(env)}) as logged_in:
        yield logged_in


def push_image(regctl: Regctl, repository: str, tag: str, created: datetime) -> str:
    """A one-file image built at ``created`` pushed as ``repository:tag`` with regctl; its digest."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as archive:
        content = f"{repository} {tag}\n".encode()
        info = tarfile.TarInfo("hello")
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    tar = layer.getvalue()
    compressed = gzip.compress(tar, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar).hexdigest()}"]},
        }
    ).encode()

    def put(args: list[str], data: bytes) -> str:
        done = subprocess.run(
            [tool("regctl"), *args], input=data, env=regctl.environment(), capture_output=True, timeout=120
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode().strip()

    layer_digest, config_digest = put(["blob", "put", repository], compressed), put(["blob", "put", repository], config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": len(compressed),
            }
        ],
    }
    put(["manifest", "put", "--content-type", OCI_MANIFEST, f"{repository}:{tag}"], json.dumps(manifest).encode())
    digest = regctl.digest(f"{repository}:{tag}")
    assert digest is not None
    return f"{repository}@{digest}"


def sign(env: dict[str, str], project: Path, image: str) -> None:
    """cosign sign, and an SBOM attestation, with this run's key, as a building stack's update does."""
    tools = SigningTools(
        registry_server=env["DOCKYARD_REGISTRY"],
        username=env["DOCKYARD_REGISTRY_USER"],
        password=env["DOCKYARD_REGISTRY_PASSWORD"],
        ca_file=env["DOCKYARD_REGISTRY_CA"],
        private_key=(project / "cosign.key").read_text(),
        key_password=KEY_PASSWORD,
    )
    with tools as cosign:
        cosign.sign(image)
        cosign.attest(image, SBOM, predicate_type="spdxjson")


def hex_of(image: str) -> str:
    return image.split("@sha256:")[1]


def test_a_promotion_copies_the_digest_with_its_signatures_and_the_copy_verifies(
    env: dict[str, str], project: Path, run_id: str, regctl: Regctl
) -> None:
    registry = env["DOCKYARD_REGISTRY"]
    source = stack("local", f"dockyard/lifecycle-{run_id}/app")
    target = stack("local-staging", f"dockyard/lifecycle-{run_id}/app-staging")
    image = push_image(regctl, source.env.registry.image_name, "sha-1111111", datetime.now(UTC))
    sign(env, project, image)
    copy = f"{registry}/dockyard/lifecycle-{run_id}/app-staging@sha256:{hex_of(image)}"
    assert trust_problems(project, target, copy) != [], "nothing is in the target's repository before the copy"

    answer = copy_release(image, source, target)
    assert (answer.reference, answer.problem) == (copy, None)
    tags = regctl.tags(target.env.registry.image_name)
    assert {f"sha256-{hex_of(image)}.sig", f"sha256-{hex_of(image)}.att"} <= set(tags)
    assert trust_problems(project, target, copy) == [], "the target's trust policy accepts the copy (real cosign)"

    again = copy_release(image, source, target)
    assert again == answer, "copying a digest that is there already converges"


def test_a_copy_into_a_registry_that_is_down_or_refuses_is_one_line_without_the_password(
    env: dict[str, str], project: Path, run_id: str, regctl: Regctl
) -> None:
    source = stack("local", f"dockyard/lifecycle-{run_id}/down")
    image = push_image(regctl, source.env.registry.image_name, "sha-3333333", datetime.now(UTC))
    down = stack("local-staging", f"dockyard/lifecycle-{run_id}/down-staging", server="127.0.0.1:9")
    problem = copy_release(image, source, down).problem
    assert problem is not None
    assert "\n" not in problem
    assert problem.startswith(f"cannot copy {image} into local-staging's registry 127.0.0.1:9/dockyard/lifecycle-")
    assert "scripts/local-services.sh start" in problem
    assert "promote again" in problem

    os.environ["DOCKYARD_WRONG_PASSWORD"] = "not-the-password"
    try:
        refused = stack("local-staging", f"dockyard/lifecycle-{run_id}/refused", passwordEnv="DOCKYARD_WRONG_PASSWORD")
        problem = copy_release(image, source, refused).problem
    finally:
        del os.environ["DOCKYARD_WRONG_PASSWORD"]
    assert problem is not None
    assert "\n" not in problem
    assert "$DOCKYARD_WRONG_PASSWORD" in problem
    assert "not-the-password" not in problem
    assert env["DOCKYARD_REGISTRY_PASSWORD"] not in problem


def test_retention_keeps_every_referenced_digest_and_removes_an_unreferenced_old_one(
    env: dict[str, str], project: Path, run_id: str, regctl: Regctl
) -> None:
    repository = f"{env['DOCKYARD_REGISTRY']}/dockyard/lifecycle-{run_id}/retention"
    now = datetime.now(UTC)
    long_ago = now - timedelta(days=400)
    served = push_image(regctl, repository, "sha-4444444", long_ago)
    released = push_image(regctl, repository, "1.4.0", long_ago)
    young = push_image(regctl, repository, "sha-5555555", now - timedelta(hours=1))
    old = push_image(regctl, repository, "sha-6666666", long_ago)
    for image in (served, old):
        sign(env, project, image)
    references = [Reference(served, "local-staging's config (stable track)")]

    def run(apply: bool) -> dict[str, tuple[bool, tuple[str, ...]]]:
        pruned = prune_repository(regctl, repository, references, now=now, keep_days=30, apply=apply)
        return {f"{repository}@{v.digest}": (v.keep, v.reasons) for v in pruned.verdicts}

    planned = run(apply=False)
    assert planned == {
        served: (True, ("local-staging's config (stable track)",)),
        released: (True, ("release tag 1.4.0",)),
        young: (True, ("unreferenced, built 1 h ago (within --keep-days 30)",)),
        old: (False, ("unreferenced, built 400 days ago (over --keep-days 30)",)),
    }
    assert regctl.digest(old) is not None, "a dry run deletes nothing"

    assert run(apply=True) == planned
    assert regctl.digest(old) is None
    left = set(regctl.tags(repository))
    assert f"sha256-{hex_of(old)}.sig" not in left
    assert f"sha256-{hex_of(old)}.att" not in left
    assert "sha-6666666" not in left
    for kept in (served, released, young):
        assert regctl.digest(kept) is not None
    assert {f"sha256-{hex_of(served)}.sig", f"sha256-{hex_of(served)}.att"} <= left
    target = stack("local-staging", repository.split("/", 1)[1])
    assert trust_problems(project, target, served) == [], "what stays still verifies"
    assert run(apply=False) == {k: v for k, v in planned.items() if k != old}, "a second run has nothing to do"


@pytest.fixture(scope="module", autouse=True)
def clean_up(env: dict[str, str], run_id: str) -> Iterator[None]:
    """This run's repositories are emptied afterwards, digest by digest (the registry deletes no repository)."""
    yield
    with Regctl({env["DOCKYARD_REGISTRY"]: credentials(env)}) as regctl:
        for name in ("app", "app-staging", "down", "retention"):
            repository = f"{env['DOCKYARD_REGISTRY']}/dockyard/lifecycle-{run_id}/{name}"
            try:
                held = listing(regctl, repository)
            except RegctlError:
                continue  # a repository a failed test never filled
            for verdict in judge(held, [], datetime.now(UTC), 1):
                delete(regctl, verdict)
