"""The local chain on a live API server: local → local-staging → local-prod, with the real engine and cluster.

The tests run in order on one workspace (builds are slow). Every assertion reads the live objects with ``kubectl``;
the Kubernetes provider's await logic, the API server's admission (Pod Security ``restricted``), the controllers and
the scheduler are real; kwok stands in for the kubelets (Pods become Ready without running a container).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.engine.harness import (
    Workspace,
    declared,
    deployment_images,
    dockyard,
    kubectl,
    live,
    namespace_of,
    set_stack_config,
)

pytestmark = pytest.mark.engine

CHAIN = ("local", "local-staging", "local-prod")


@pytest.fixture(scope="module")
def chain(local_workspace: Workspace) -> Workspace:
    """local built and deployed, verified, promoted to local-staging (a canary walked to completion) and on to
    local-prod (the idle color of its blue-green pair, then switched to: the other color has no release)."""
    workspace = local_workspace
    workspace.init("local")
    workspace.pulumi("up", "--stack", "local", "--yes", timeout=2400)
    for source, target in (("local", "local-staging"), ("local-staging", "local-prod")):
        verified = dockyard(workspace, "verify", "--stack", source)
        assert verified.returncode == 0, verified.output
        workspace.init(target)
        promoted = dockyard(workspace, "promote", "--from", source, "--to", target, "--yes")
        assert promoted.returncode == 0, promoted.output
        if target == "local-staging":
            walked = dockyard(workspace, "canary", "advance", "--stack", target, "--auto", "--yes")
            assert walked.returncode == 0, walked.output
    switched = dockyard(workspace, "switch", "--stack", "local-prod", "--yes")
    assert switched.returncode == 0, switched.output
    return workspace


def rolled_out(deployment: dict[str, Any]) -> bool:
    spec, status = deployment["spec"], deployment.get("status", {})
    wanted = spec["replicas"]
    return (
        status.get("observedGeneration") == deployment["metadata"]["generation"]
        and status.get("updatedReplicas") == wanted
        and status.get("readyReplicas") == wanted
        and status.get("availableReplicas") == wanted
    )


def ready_endpoints(workspace: Workspace, stack: str, service: str) -> list[str]:
    slices = kubectl(
        workspace,
        "get",
        "endpointslices",
        "-n",
        namespace_of(workspace, stack),
        "-l",
        f"kubernetes.io/service-name={service}",
        "-o",
        "json",
    ).json()["items"]
    return [
        address
        for endpoint_slice in slices
        for endpoint in endpoint_slice.get("endpoints") or []
        if endpoint.get("conditions", {}).get("ready")
        for address in endpoint["addresses"]
    ]


def wait_until(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true after {timeout}s: {condition.__doc__ or condition}"
        time.sleep(1)


@pytest.mark.parametrize("stack", CHAIN)
def test_every_stack_is_rolled_out_live_with_its_digest(chain: Workspace, stack: str) -> None:
    deployments = live(chain, stack, "deployments")
    assert deployments, f"{stack} has no live Deployment"
    for name, deployment in deployments.items():
        assert rolled_out(deployment), f"{stack}/{name} is not rolled out: {deployment.get('status')}"
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert "@sha256:" in container["image"]
    served = chain.outputs(stack)["image_ref"]
    assert served in deployment_images(chain, stack)
    assert ready_endpoints(chain, stack, "dockyard-app"), f"{stack}: the Service has no ready endpoint"


def test_the_promoted_digest_is_the_one_built(chain: Workspace) -> None:
    built = chain.outputs("local")["image_ref"]
    assert deployment_images(chain, "local") == {built}
    assert deployment_images(chain, "local-staging") == {built}
    # local-prod: the release landed on the idle color (green), which the switch made active; blue has no release.
    assert deployment_images(chain, "local-prod") == {built}
    assert sorted(live(chain, "local-prod", "deployments")) == ["dockyard-app-green"]


def test_prod_has_autoscalers_and_a_disruption_budget_and_starts_at_the_floor(chain: Workspace) -> None:
    autoscalers = live(chain, "local-prod", "horizontalpodautoscalers")
    assert sorted(autoscalers) == ["dockyard-app-green"], "one per color that runs a release"
    assert {a["spec"]["minReplicas"] for a in autoscalers.values()} == {2}
    (budget,) = live(chain, "local-prod", "poddisruptionbudgets").values()
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget.get("status", {}).get("expectedPods", 0) >= 2
    for name, deployment in live(chain, "local-prod", "deployments").items():
        # Generation 1 with 2 replicas: created at the HPA's floor, never at the API default of 1 pod.
        assert (deployment["metadata"]["generation"], deployment["spec"]["replicas"]) == (1, 2), name


def test_pod_security_restricted_is_enforced_on_every_namespace(chain: Workspace) -> None:
    for stack in CHAIN:
        namespace = kubectl(chain, "get", "namespace", namespace_of(chain, stack), "-o", "json").json()
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("stack", CHAIN)
def test_second_up_changes_nothing(chain: Workspace, stack: str) -> None:
    before = {name: d["metadata"]["resourceVersion"] for name, d in live(chain, stack, "deployments").items()}
    chain.pulumi("up", "--stack", stack, "--yes", "--expect-no-changes")
    after = {name: d["metadata"]["resourceVersion"] for name, d in live(chain, stack, "deployments").items()}
    assert after == before


def test_blue_green_switch_changes_only_the_live_service_selectors(chain: Workspace) -> None:
    # Both colors run a release: the built digest onto blue too (signed, so the trust policy takes it).
    set_stack_config(chain, "local-prod", ["kubernetes", "strategy", "blueImage"], chain.outputs("local")["image_ref"])
    chain.pulumi("up", "--stack", "local-prod", "--yes")
    deployments_before = {n: declared(d) for n, d in live(chain, "local-prod", "deployments").items()}
    assert sorted(deployments_before) == ["dockyard-app-blue", "dockyard-app-green"]
    services_before = live(chain, "local-prod", "services")
    assert services_before["dockyard-app"]["spec"]["selector"]["dockyard.dev/track"] == "green"
    assert services_before["dockyard-app-preview"]["spec"]["selector"]["dockyard.dev/track"] == "blue"

    set_stack_config(chain, "local-prod", ["kubernetes", "strategy", "activeColor"], "blue")
    chain.pulumi("up", "--stack", "local-prod", "--yes")

    services_after = live(chain, "local-prod", "services")
    assert services_after["dockyard-app"]["spec"]["selector"]["dockyard.dev/track"] == "blue"
    assert services_after["dockyard-app-preview"]["spec"]["selector"]["dockyard.dev/track"] == "green"
    for name in ("dockyard-app", "dockyard-app-preview"):
        before, after = declared(services_before[name]), declared(services_after[name])
        before["spec"].pop("selector")
        after["spec"].pop("selector")
        assert after == before, f"{name} changed beyond its selector"
    assert {n: declared(d) for n, d in live(chain, "local-prod", "deployments").items()} == deployments_before
    blue_pods = live(chain, "local-prod", "deployments")["dockyard-app-blue"]["status"]["readyReplicas"]
    wait_until(lambda: len(ready_endpoints(chain, "local-prod", "dockyard-app")) == blue_pods)


def test_canary_replica_split_follows_the_weight(chain: Workspace) -> None:
    canary_image = chain.outputs("local")["image_ref"]
    set_stack_config(chain, "local-staging", ["kubernetes", "strategy", "canaryImage"], canary_image)
    for weight, split in ((25, (3, 1)), (50, (2, 2))):
        set_stack_config(chain, "local-staging", ["kubernetes", "strategy", "weight"], weight)
        chain.pulumi("up", "--stack", "local-staging", "--yes")
        deployments = live(chain, "local-staging", "deployments")
        stable, canary = deployments["dockyard-app-stable"], deployments["dockyard-app-canary"]
        assert (stable["spec"]["replicas"], canary["spec"]["replicas"]) == split
        assert rolled_out(stable)
        assert rolled_out(canary)
        assert len(ready_endpoints(chain, "local-staging", "dockyard-app")) == 4, "one Service serves both tracks"
    set_stack_config(chain, "local-staging", ["kubernetes", "strategy", "canaryImage"], None)
    set_stack_config(chain, "local-staging", ["kubernetes", "strategy", "weight"], 0)
    chain.pulumi("up", "--stack", "local-staging", "--yes")
    assert sorted(live(chain, "local-staging", "deployments")) == ["dockyard-app-stable"]


def test_drift_is_shown_by_a_refresh_and_repaired_by_up(chain: Workspace) -> None:
    namespace = namespace_of(chain, "local")
    kubectl(chain, "scale", "deployment/dockyard-app-stable", "-n", namespace, "--replicas", "3")
    preview = chain.pulumi("preview", "--stack", "local", "--refresh", "--expect-no-changes", check=False)
    assert preview.returncode != 0, "the refreshed preview must show the hand-made change"
    assert "dockyard-app-stable" in preview.output or "app-stable" in preview.output
    chain.pulumi("up", "--stack", "local", "--refresh", "--yes")
    stable = live(chain, "local", "deployments")["dockyard-app-stable"]
    assert stable["spec"]["replicas"] == 1
    chain.pulumi("up", "--stack", "local", "--refresh", "--yes", "--expect-no-changes")


def test_a_rollout_that_cannot_finish_fails_the_update_and_a_rerun_converges(chain: Workspace) -> None:
    stack_file = chain.stack_file("local")
    original = stack_file.read_bytes()
    serving = declared(live(chain, "local", "deployments")["dockyard-app-stable"])
    # No fake node has 64 CPUs: the new pod stays Pending and the provider's await gives up.
    set_stack_config(
        chain,
        "local",
        ["kubernetes", "resources"],
        {"requests": {"cpu": "64", "memory": "32Mi"}, "limits": {"cpu": "64", "memory": "64Mi"}},
    )
    set_stack_config(chain, "local", ["kubernetes", "rolloutTimeoutSeconds"], 15)
    failed = chain.pulumi("up", "--stack", "local", "--yes", check=False, timeout=600)
    assert failed.returncode != 0
    assert "timed out waiting to be Ready" in failed.output, failed.output[-3000:]
    pods = live(chain, "local", "pods")
    pending = [p for p in pods.values() if p["status"]["phase"] == "Pending"]
    assert pending, "the new pod never left Pending"
    scheduled = next(c for c in pending[0]["status"]["conditions"] if c["type"] == "PodScheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    assert "Insufficient cpu" in scheduled["message"]
    exported = chain.export("local")
    assert exported["deployment"]["resources"], "the state stays valid and complete"
    assert not exported["deployment"].get("pending_operations")
    # maxUnavailable 0: the old pod kept serving throughout.
    assert ready_endpoints(chain, "local", "dockyard-app")

    stack_file.write_bytes(original)
    chain.pulumi("up", "--stack", "local", "--yes", timeout=600)
    chain.pulumi("up", "--stack", "local", "--yes", "--expect-no-changes")
    assert declared(live(chain, "local", "deployments")["dockyard-app-stable"])["spec"] == serving["spec"]


def test_the_api_server_rejects_pods_that_break_pod_security(chain: Workspace) -> None:
    specs = chain.directory / "components" / "dockyard_components" / "k8s_specs.py"
    original = specs.read_text()
    assert "allow_privilege_escalation=False" in original
    specs.write_text(original.replace("allow_privilege_escalation=False", "allow_privilege_escalation=True"))
    set_stack_config(chain, "local", ["kubernetes", "rolloutTimeoutSeconds"], 15)
    try:
        failed = chain.pulumi("up", "--stack", "local", "--yes", check=False, timeout=600)
    finally:
        specs.write_text(original)
        set_stack_config(chain, "local", ["kubernetes", "rolloutTimeoutSeconds"], 120)
    assert failed.returncode != 0
    assert "timed out waiting to be Ready" in failed.output, failed.output[-3000:]
    # The API server's admission refused every pod of the new ReplicaSet (the provider reports the timeout).
    events = kubectl(chain, "get", "events", "-n", namespace_of(chain, "local"), "-o", "json").json()["items"]
    refusals = [e["message"] for e in events if e.get("reason") == "FailedCreate"]
    assert any('violates PodSecurity "restricted:latest"' in m and "allowPrivilegeEscalation" in m for m in refusals)
    assert ready_endpoints(chain, "local", "dockyard-app"), "the running release kept serving"
    chain.pulumi("up", "--stack", "local", "--yes", timeout=600)
    chain.pulumi("up", "--stack", "local", "--yes", "--expect-no-changes")


def test_destroy_leaves_no_object_of_the_stack(chain: Workspace) -> None:
    namespace = namespace_of(chain, "local-staging")
    chain.pulumi("destroy", "--stack", "local-staging", "--yes", timeout=600)

    def gone() -> bool:
        """the namespace is deleted"""
        return kubectl(chain, "get", "namespace", namespace, check=False).returncode != 0

    wait_until(gone, timeout=120)
    leftovers = kubectl(chain, "get", "all", "-A", "-o", "json").json()["items"]
    assert not [o for o in leftovers if o["metadata"].get("namespace") == namespace]
    assert json.dumps(chain.export("local-staging")["deployment"].get("resources") or []).count("kubernetes:") == 0
