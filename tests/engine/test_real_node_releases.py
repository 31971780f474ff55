"""Canary and blue-green releases on the local cluster's real node, checked through the cluster itself.

local-staging (canary) and local-prod (blue-green) put their pods in the node pool ``real``. There, `dockyard verify`
and the canary analysis send requests through the app's Service (the API server's service proxy: what a cluster
serves, not the digest run beside it, which stays the stand-in for kwok's pods only). A canary whose pods fail their
probe is rolled back while a client of the Service sees only the stable release answer; a blue-green pair is verified
through the preview Service before the switch and through the main Service after it.

The tests run in order on one workspace (builds are slow).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.engine.harness import (
    Workspace,
    broken_release,
    deploy_local_stacks,
    deployment_images,
    dockyard,
    history,
    release,
    set_stack_config,
    succeeded,
)
from tests.engine.real_node import ServiceWatcher, health, service_ip
from tests.local_services import RealNodeLease

pytestmark = pytest.mark.engine

CANARY, BLUE_GREEN = "local-staging", "local-prod"
#: A release whose pods never become Ready must fail its update within this.
ROLLOUT_TIMEOUT = 40
#: The verifier's traffic check through the app's Service (dockyard/verify/kube.py).
THROUGH_SERVICE = "10 requests through Service {service} (GET / and /health): all 200"


def last_verification(workspace: Workspace, stack: str) -> dict[str, Any]:
    """The newest verification in the stack's ledger beside the workspace's state, as recorded."""
    ledger = workspace.backend / ".dockyard" / "dockyard" / f"{stack}.jsonl"
    records = [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]
    record: dict[str, Any] = [r for r in records if r.get("kind") == "verification"][-1]
    return record


def checked_through(record: dict[str, Any], service: str) -> None:
    """The record passed, with the traffic check through ``service`` and without the local run's checks."""
    checks = {check["name"]: check for check in record["checks"]}
    assert record["outcome"] == "passed", record
    assert checks["traffic"] == {"name": "traffic", "passed": True, "detail": THROUGH_SERVICE.format(service=service)}
    assert not {"pull", "start", "smoke"} & set(checks), "nothing ran beside the cluster"


@pytest.fixture(scope="module")
def deployed(local_workspace: Workspace, real_node: RealNodeLease) -> Workspace:
    """local built and deployed (on kwok); local-staging and local-prod on the real node, with a short timeout."""
    workspace = local_workspace
    for stack in (CANARY, BLUE_GREEN):
        set_stack_config(workspace, stack, ["kubernetes", "nodePool"], "real")
        set_stack_config(workspace, stack, ["kubernetes", "rolloutTimeoutSeconds"], ROLLOUT_TIMEOUT)
    set_stack_config(workspace, CANARY, ["kubernetes", "replicas"], 2)
    return deploy_local_stacks(workspace, BLUE_GREEN)


@pytest.fixture(scope="module")
def good(deployed: Workspace) -> str:
    """local's release, verified there, walked through local-staging's canary (each step's analysis through the
    Service), then promoted to local-prod's idle color."""
    image: str = deployed.outputs("local")["image_ref"]
    succeeded(deployed, "verify", "--stack", "local")
    succeeded(deployed, "promote", "--from", "local", "--to", CANARY, "--yes")
    succeeded(deployed, "canary", "advance", "--stack", CANARY, "--auto", "--yes")
    assert deployment_images(deployed, CANARY) == {image}
    return image


def test_the_canary_analysis_and_the_verification_go_through_the_service(deployed: Workspace, good: str) -> None:
    checked_through(last_verification(deployed, CANARY), "dockyard-app")
    succeeded(deployed, "verify", "--stack", CANARY)
    checked_through(last_verification(deployed, CANARY), "dockyard-app")
    status, _ = health(service_ip(deployed, CANARY))
    assert status == 200, "and a client of the ClusterIP gets the app too"


def test_a_canary_whose_pods_fail_is_rolled_back_while_the_stable_track_serves(deployed: Workspace, good: str) -> None:
    """The broken release's probe fails, so its canary pods never join the Service: the canary step's update fails
    within the rollout timeout, the promotion rolls back to what served, and no client request failed meanwhile."""
    serving = health(service_ip(deployed, CANARY))
    broken = broken_release(deployed)
    with ServiceWatcher(service_ip(deployed, CANARY)) as watcher:
        result = dockyard(deployed, "promote", "--from", "local", "--to", CANARY, "--yes")
    assert result.returncode == 1, result.output[-6000:]
    assert "probe failed: HTTP probe failed with statuscode: 503" in result.output, result.output[-6000:]
    assert f"{CANARY} was rolled back to {good}" in result.output, result.output[-6000:]
    assert deployment_images(deployed, CANARY) == {good}, "the canary track is gone; stable untouched"
    assert len(watcher.answers) > 20, watcher.answers
    assert set(watcher.answers) == {serving}, sorted(set(watcher.answers))
    rollback, promotion = history(deployed, CANARY)[:2]
    assert (promotion["action"], promotion["result"], promotion["image"]) == ("promote", "failed", broken)
    assert (rollback["action"], rollback["result"], rollback["image"]) == ("rollback", "succeeded", good)
    # local is rebuilt good again, so the next module-scoped step promotes what local-staging verified.
    release(deployed)


def test_a_blue_green_pair_is_verified_through_the_preview_service_then_the_main_one(
    deployed: Workspace, good: str
) -> None:
    succeeded(deployed, "verify", "--stack", CANARY)
    succeeded(deployed, "promote", "--from", CANARY, "--to", BLUE_GREEN, "--yes")
    succeeded(deployed, "verify", "--stack", BLUE_GREEN, "--candidate")
    idle = last_verification(deployed, BLUE_GREEN)
    assert (idle["track"], idle["serving"]) == ("green", False)
    checked_through(idle, "dockyard-app-preview")
    succeeded(deployed, "switch", "--stack", BLUE_GREEN, "--yes")
    succeeded(deployed, "verify", "--stack", BLUE_GREEN)
    checked_through(last_verification(deployed, BLUE_GREEN), "dockyard-app")
    assert deployment_images(deployed, BLUE_GREEN) == {good}
    assert health(service_ip(deployed, BLUE_GREEN))[0] == 200, "a client of the ClusterIP gets the release"


def test_metrics_count_the_failed_canary_and_its_time_to_restore(deployed: Workspace, good: str) -> None:
    """The failed promotion is a failed change; the incident it opened closed with the next passed verification of
    what local-staging served (the blue-green test's first step), a time to restore measured from real moves."""
    figures = succeeded(deployed, "metrics", "--stack", CANARY, "--since", "1d", "--json").json()
    assert figures["failed_updates"] == 1, figures
    assert figures["failed_changes"] >= 1, figures
    assert figures["rollbacks"] == 1, figures
    assert figures["open_incidents"] == 0, figures
    assert figures["time_to_restore"]["count"] == 1, figures
    assert figures["time_to_restore"]["median"] > 0, figures
