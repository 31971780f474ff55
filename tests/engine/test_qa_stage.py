"""The local chain with a QA stage, local → local-qa → local-staging, with the real engine on the local cluster.

The committed local chain is local → local-staging → local-prod; a user includes local-qa by adding its stack file
and pointing local-staging's ``promotion.upstream`` at it (README, "The local chain"). This workspace does exactly
that, then walks a release down the chain: the qa tier deploys only digests verified on its upstream, and the order
gate refuses to skip the QA stage.
"""

from __future__ import annotations

import pytest
import yaml

from tests.engine.harness import (
    Workspace,
    deploy_local_stacks,
    deployment_images,
    dockyard,
    history,
    rolling,
    set_stack_config,
)

pytestmark = pytest.mark.engine


def add_local_qa(workspace: Workspace) -> None:
    """``Pulumi.local-qa.yaml`` as the README tells a user to make it: local-staging's file (its secrets stay valid:
    the file carries their encryption salt) with tier qa, upstream local, the rolling strategy and a namespace of its
    own; local-staging then takes its releases from local-qa."""
    document = yaml.safe_load(workspace.stack_file("local-staging").read_text())
    config = document["config"]
    config["dockyard:tier"] = "qa"
    config["dockyard:promotion"]["upstream"] = "local"
    kubernetes = config["dockyard:kubernetes"]
    kubernetes["replicas"] = 1
    kubernetes["strategy"] = {"type": "rolling"}
    # make_workspace gave local-staging a namespace of this session's; local-qa gets the same, named for itself.
    kubernetes["namespace"] = kubernetes["namespace"].replace("local-staging", "local-qa")
    workspace.stack_file("local-qa").write_text(yaml.safe_dump(document, sort_keys=False))
    set_stack_config(workspace, "local-staging", ["promotion", "upstream"], "local-qa")


@pytest.fixture(scope="module")
def chain(local_workspace: Workspace) -> Workspace:
    """local built, pushed, deployed and verified; local-qa and local-staging (rolling: a promotion writes image.ref)
    deployed before their first release."""
    add_local_qa(local_workspace)
    rolling(local_workspace, "local-staging")
    deploy_local_stacks(local_workspace, "local-qa")
    verified = dockyard(local_workspace, "verify", "--stack", "local")
    assert verified.returncode == 0, verified.output
    return local_workspace


def test_the_chain_with_local_qa(chain: Workspace) -> None:
    image = chain.outputs("local")["image_ref"]
    digest = image.rsplit("@", 1)[-1]
    staging_file = chain.stack_file("local-staging").read_bytes()

    # The QA stage cannot be skipped: local-staging now takes releases from local-qa only.
    skipped = dockyard(chain, "promote", "--from", "local", "--to", "local-staging", "--yes")
    assert skipped.returncode == 1, skipped.output
    assert "local-staging accepts releases from local-qa only, not from local" in skipped.output
    assert chain.stack_file("local-staging").read_bytes() == staging_file

    into_qa = dockyard(chain, "promote", "--from", "local", "--to", "local-qa", "--yes")
    assert into_qa.returncode == 0, into_qa.output
    assert chain.outputs("local-qa")["image_ref"] == image
    assert deployment_images(chain, "local-qa") == {image}
    assert yaml.safe_load(chain.stack_file("local-qa").read_text())["config"]["dockyard:image"]["ref"] == image

    # The staging tier takes only what passed verification on its upstream, now local-qa.
    unverified = dockyard(chain, "promote", "--from", "local-qa", "--to", "local-staging", "--yes")
    assert unverified.returncode == 1, unverified.output
    assert f"local-qa's {digest} has never been verified" in unverified.output
    assert chain.stack_file("local-staging").read_bytes() == staging_file

    verified = dockyard(chain, "verify", "--stack", "local-qa")
    assert verified.returncode == 0, verified.output
    into_staging = dockyard(chain, "promote", "--from", "local-qa", "--to", "local-staging", "--yes")
    assert into_staging.returncode == 0, into_staging.output
    assert chain.outputs("local-staging")["image_ref"] == image
    assert deployment_images(chain, "local-staging") == {image}

    for stack in ("local-qa", "local-staging"):
        assert [e["image"] for e in history(chain, stack) if e["action"] == "promote"] == [image], stack
