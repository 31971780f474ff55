"""A workspace's local stack built for two platforms with the real engine, podman, registry, cosign and cluster.

`pulumi up` builds one image index (linux/amd64 + linux/arm64, cross-compiled, the tests once on the build platform)
on base images pinned by digest, pushes it, scans, signs and attests the index digest, and deploys that digest; cosign
verifies the signature and the attestations on it; `dockyard verify` pulls this machine's image of the index and
passes.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from dockyard_components.scanner import VULN_PREDICATE
from tests.engine.harness import (
    Workspace,
    deployment_images,
    dockyard,
    set_stack_config,
    signing_tools,
    with_integration_stage,
)

pytestmark = pytest.mark.engine

PLATFORMS = ["linux/amd64", "linux/arm64"]
INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture(scope="module")
def deployed(local_workspace: Workspace) -> Workspace:
    """The workspace's local stack with two platforms, the integration stage (on the build platform) and its base
    images by digest from the local registry."""
    env = local_workspace.env
    with_integration_stage(local_workspace)
    set_stack_config(local_workspace, "local", ["image", "build", "platforms"], PLATFORMS)
    set_stack_config(
        local_workspace,
        "local",
        ["image", "build", "buildArgs"],
        {"BUILDER_IMAGE": env["DOCKYARD_BUILDER_IMAGE_PINNED"], "RUNTIME_IMAGE": env["DOCKYARD_RUNTIME_IMAGE_PINNED"]},
    )
    local_workspace.init("local")
    local_workspace.pulumi("up", "--stack", "local", "--yes", "--skip-preview", timeout=2400)
    return local_workspace


def _raw(workspace: Workspace, ref: str) -> dict[str, object]:
    env = {**workspace.env, "REGISTRY_AUTH_FILE": workspace.env["DOCKYARD_REGISTRY_AUTHFILE"]}
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", f"docker://{ref}"], env=env, capture_output=True, text=True, check=True
    )
    document: dict[str, object] = json.loads(out.stdout)
    return document


def test_up_deploys_the_index_digest(deployed: Workspace) -> None:
    image: str = deployed.outputs("local")["image_ref"]
    index = _raw(deployed, image)
    assert index["mediaType"] == INDEX
    manifests = index["manifests"]
    assert isinstance(manifests, list)
    assert sorted(f"{m['platform']['os']}/{m['platform']['architecture']}" for m in manifests) == PLATFORMS
    assert deployment_images(deployed, "local") == {image}


def test_the_signature_and_attestations_verify_on_the_index_digest(deployed: Workspace) -> None:
    image: str = deployed.outputs("local")["image_ref"]
    public_key = (Path(deployed.directory) / "keys" / "dockyard-local-cosign.pub").read_text()
    with signing_tools(deployed, public_key=public_key) as cosign:
        cosign.verify(image)
        sboms = cosign.verify_attestation(image, predicate_type="spdxjson")
        scans = cosign.verify_attestation(image, predicate_type=VULN_PREDICATE)
    digest = image.split("@")[1]
    for statement in (*sboms, *scans):
        assert [s["digest"]["sha256"] for s in statement["subject"]] == [digest.removeprefix("sha256:")]
    assert sboms
    # trivy scanned each platform's image (alone it takes the host's): the report names both.
    (scan,) = scans
    targets = [result["Target"] for result in scan["predicate"]["scanner"]["result"]["Results"]]
    assert {target.rsplit(" ", 1)[-1] for target in targets} == {"(linux/amd64)", "(linux/arm64)"}, targets


def test_verify_passes_on_this_machines_image_of_the_index(deployed: Workspace) -> None:
    image: str = deployed.outputs("local")["image_ref"]
    verified = dockyard(deployed, "verify", "--stack", "local", "--json")
    assert verified.returncode == 0, verified.output
    document = json.loads(verified.stdout)
    assert (document["outcome"], document["image"]) == ("passed", image)
    pull = next(c for c in document["checks"] if c["name"] == "pull")
    assert "(linux/amd64)" in pull["detail"], pull
