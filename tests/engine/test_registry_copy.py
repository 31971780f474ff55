"""A promotion into a stack with a repository of its own, with the real engine, regctl, cosign and registry: the
digest arrives there with its signature and attestations (regctl copies the `.sig`/`.att` tags), the trust check
and the live Deployment name the copy, and cosign verifies the copy with the key the target trusts.

Retention (`dockyard registry prune`, dry run then apply) runs against the real registry in
tests/integration/test_registry_lifecycle.py, on repositories of its own (with a repeated copy converging): here
every stack of the workspace shares the registry with the rest of the suite, which a prune must not touch."""

from __future__ import annotations

import pytest
import yaml

from dockyard_components.cosign import SigningTools
from tests.engine.harness import SESSION, Workspace, deployment_images, dockyard, set_stack_config, signing_tools
from tests.stacks import PROJECT

pytestmark = pytest.mark.engine

PUBLIC_KEY = PROJECT / "keys" / "dockyard-local-cosign.pub"
REPOSITORY = f"dockyard/staging-{SESSION}"


@pytest.fixture(scope="module")
def copied(local_workspace: Workspace) -> tuple[Workspace, str]:
    """local built, signed and verified; local-staging, whose registry names a repository of its own, promoted."""
    workspace = local_workspace
    workspace.init("local")
    workspace.pulumi("up", "--stack", "local", "--yes", timeout=2400)
    verified = dockyard(workspace, "verify", "--stack", "local")
    assert verified.returncode == 0, verified.output
    set_stack_config(workspace, "local-staging", ["registry", "repository"], REPOSITORY)
    workspace.init("local-staging")
    promoted = dockyard(workspace, "promote", "--from", "local", "--to", "local-staging", "--yes")
    assert promoted.returncode == 0, promoted.output
    digest = str(workspace.outputs("local")["image_ref"]).split("@")[1]
    return workspace, f"{workspace.env['DOCKYARD_REGISTRY']}/{REPOSITORY}@{digest}"


def test_the_promotion_deploys_the_copy_in_the_targets_own_repository(copied: tuple[Workspace, str]) -> None:
    workspace, copy = copied
    assert copy in deployment_images(workspace, "local-staging")
    written = yaml.safe_dump(yaml.safe_load(workspace.stack_file("local-staging").read_text()))
    assert copy in written, "the stack file names the copy"


def test_the_copy_carries_the_signature_and_sbom_attestation_and_verifies(copied: tuple[Workspace, str]) -> None:
    workspace, copy = copied
    tools: SigningTools = signing_tools(workspace, public_key=PUBLIC_KEY.read_text())
    with tools as cosign:
        cosign.verify(copy)
        assert cosign.verify_attestation(copy, predicate_type="spdxjson"), "the SBOM attestation came along"
