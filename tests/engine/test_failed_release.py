"""A promotion whose pods never become Ready, on the local cluster's real node: the probe failure, then a rollback.

local-staging (made rolling, its pods in the node pool ``real``, a 40 s rollout timeout) serves a good release; then
local is rebuilt with HEALTH_FAIL=true (its /health answers 503), a passed verification of that digest is attested
by hand (the stand-in for a release that looked healthy where it was built), and it is promoted. Its ``pulumi up``
fails within the rollout timeout; ``dockyard promote`` prints the kubelet's probe failure for the pod, applies the
stack file as it was (which still names the good release), records that as a rollback and exits 1. The live
Deployment runs the good digest again, with every pod ready.

The tests run in order on one workspace (builds are slow).
"""

from __future__ import annotations

import re

import pytest
import yaml

from tests.engine.harness import (
    Workspace,
    broken_release,
    deploy_local_stacks,
    deployment_images,
    dockyard,
    history,
    replicas,
    rolling,
    set_stack_config,
    succeeded,
)
from tests.local_services import RealNodeLease

pytestmark = pytest.mark.engine

TARGET = "local-staging"
#: The broken release's update must fail within this, well before the engine tier's own timeouts.
ROLLOUT_TIMEOUT = 40
PROBE_FAILURE = re.compile(r"pod dockyard-app-stable-\S+: \w+ probe failed: HTTP probe failed with statuscode: 503")


@pytest.fixture(scope="module")
def deployed(local_workspace: Workspace, real_node: RealNodeLease) -> Workspace:
    """local built and deployed; local-staging rolling, on the real node, with a short rollout timeout."""
    workspace = local_workspace
    rolling(workspace, TARGET)
    set_stack_config(workspace, TARGET, ["kubernetes", "nodePool"], "real")
    set_stack_config(workspace, TARGET, ["kubernetes", "replicas"], 2)
    set_stack_config(workspace, TARGET, ["kubernetes", "rolloutTimeoutSeconds"], ROLLOUT_TIMEOUT)
    return deploy_local_stacks(workspace)


@pytest.fixture(scope="module")
def good(deployed: Workspace) -> str:
    """local's good release, verified there and promoted: local-staging serves it on the real node."""
    image: str = deployed.outputs("local")["image_ref"]
    succeeded(deployed, "verify", "--stack", "local")
    succeeded(deployed, "promote", "--from", "local", "--to", TARGET, "--yes")
    assert deployment_images(deployed, TARGET) == {image}
    assert replicas(deployed, TARGET) == {"dockyard-app-stable": 2}
    return image


@pytest.fixture(scope="module")
def broken(deployed: Workspace, good: str) -> str:
    """local rebuilt with HEALTH_FAIL=true, with a passed verification attested by hand so the gate lets it go."""
    image = broken_release(deployed)
    assert image != good
    return image


def test_a_promotion_whose_pods_never_become_ready_rolls_back_with_the_probe_failure(
    deployed: Workspace, good: str, broken: str
) -> None:
    result = dockyard(deployed, "promote", "--from", "local", "--to", TARGET, "--yes")

    assert result.returncode == 1, result.output[-6000:]
    assert "timed out waiting to be Ready" in result.output, result.output[-6000:]
    # The pod's own reason, read from its events, not only the provider's "unready status".
    assert PROBE_FAILURE.search(result.output), result.output[-6000:]
    assert f"{TARGET} was rolled back to {good}" in result.output, result.output[-6000:]

    # The live Deployment serves the good digest again, every pod ready; the file still names it.
    assert deployment_images(deployed, TARGET) == {good}
    assert replicas(deployed, TARGET) == {"dockyard-app-stable": 2}
    document = yaml.safe_load(deployed.stack_file(TARGET).read_text())
    assert document["config"]["dockyard:image"]["ref"] == good

    # Recorded: the failed promotion, then the rollback to the release that served.
    rollback, promotion = history(deployed, TARGET)[:2]
    assert (promotion["action"], promotion["result"], promotion["image"]) == ("promote", "failed", broken)
    assert (rollback["action"], rollback["result"]) == ("rollback", "succeeded")
    assert (rollback["image"], rollback["from"], rollback["served"]) == (good, broken, good)
