"""KubernetesApp under mocks: the properties that carry policy, for every strategy."""

from __future__ import annotations

from typing import Any, cast

import pulumi
import pytest

from dockyard_components.k8s_specs import version_label
from dockyard_components.kubernetes_app import KubernetesApp, KubernetesAppArgs
from dockyard_components.release import split_replicas
from tests.unit.conftest import RecordingMocks

STABLE = "ghcr.io/acme/app@sha256:" + "1" * 64
CANARY = "ghcr.io/acme/app@sha256:" + "2" * 64
BLUE = "ghcr.io/acme/app@sha256:" + "3" * 64
GREEN = "ghcr.io/acme/app@sha256:" + "4" * 64
LIMITED = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}


def settings(**overrides: Any) -> dict[str, Any]:
    """The app's spec as a program passes it: plain values, snake_case keys (KubernetesAppArgs)."""
    return {"resources": LIMITED, **overrides}


def deploy(
    kubernetes: dict[str, Any],
    image: str | None = STABLE,
    stack: str = "qa",
    app_secrets: dict[str, str] | None = None,
    docker_config_json: str | None = None,
) -> None:
    @pulumi.runtime.test
    def run() -> None:
        KubernetesApp(
            "app",
            cast(
                KubernetesAppArgs,
                {
                    **kubernetes,
                    "stack": stack,
                    "tier": "prod" if stack == "prod" else "dev",
                    "namespace": f"shop-{stack}",
                    **({"image": image} if image is not None else {}),
                    **({"app_secrets": app_secrets} if app_secrets is not None else {}),
                    **({"docker_config_json": docker_config_json} if docker_config_json is not None else {}),
                },
            ),
        )

    run()


def by_kind(mocks: RecordingMocks, kind: str) -> dict[str, dict[str, Any]]:
    """The ``kind`` objects by physical name, or by logical name where the provider names them (auto-naming)."""
    return {r.inputs["metadata"].get("name", r.name): r.inputs for r in mocks.resources if r.typ.endswith(f":{kind}")}


def test_what_the_pods_read_is_auto_named_so_a_change_never_replaces_a_deployment(mocks: RecordingMocks) -> None:
    """ConfigMap and Secret data is immutable to the provider: a fixed name would make a change delete-before-create
    and take every Deployment naming it down with it."""
    deploy(settings(), stack="prod", app_secrets={"API_KEY": "x"}, docker_config_json='{"auths": {}}')
    for kind, count in (("ConfigMap", 1), ("Secret", 2)):
        objects = [r for r in mocks.resources if r.typ.endswith(f":{kind}")]
        assert len(objects) == count, [r.name for r in objects]
        assert all("name" not in r.inputs["metadata"] for r in objects), [r.name for r in objects]


def pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def test_rolling_deployment_is_locked_down(mocks: RecordingMocks) -> None:
    deploy(settings(replicas=3, strategy={"type": "rolling", "max_surge": 1, "max_unavailable": 0}))
    (deployment,) = by_kind(mocks, "Deployment").values()
    spec = pod(deployment)
    (app,) = spec["containers"]
    assert app["image"] == STABLE
    assert app["resources"]["limits"] == {"cpu": "500m", "memory": "128Mi"}
    assert app["resources"]["requests"] == {"cpu": "100m", "memory": "64Mi"}
    security = app["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert app[probe]["httpGet"]["path"] == "/health"
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert deployment["spec"]["revisionHistoryLimit"] == 5
    assert spec["terminationGracePeriodSeconds"] == 30
    assert app["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}, "serves on while its endpoint is dropped"
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"


def test_a_node_pool_pins_every_track_to_the_pool_and_tolerates_its_taint(mocks: RecordingMocks) -> None:
    """The real node is tainted dockyard.dev/node-pool=real:NoSchedule: the selector alone would leave the pods
    Pending, the toleration alone would let them land on a kwok node that runs nothing."""
    deploy(settings(node_pool="real", strategy={"type": "canary", "weight": 50, "canary_image": CANARY}, replicas=2))
    deployments = by_kind(mocks, "Deployment")
    assert len(deployments) == 2, list(deployments)
    for deployment in deployments.values():
        spec = pod(deployment)
        assert spec["nodeSelector"] == {"dockyard.dev/node-pool": "real"}
        assert spec["tolerations"] == [
            {"key": "dockyard.dev/node-pool", "operator": "Equal", "value": "real", "effect": "NoSchedule"}
        ]


def test_without_a_node_pool_pods_go_to_any_untainted_node(mocks: RecordingMocks) -> None:
    deploy(settings())
    (deployment,) = by_kind(mocks, "Deployment").values()
    assert "nodeSelector" not in pod(deployment)
    assert "tolerations" not in pod(deployment)


def test_a_node_pool_is_a_label_value() -> None:
    with pytest.raises(ValueError, match=r"nodePool: .*DNS label"):
        deploy(settings(node_pool="Real Node"))


def test_the_drain_comes_before_the_kill_and_zero_drains_nothing(mocks: RecordingMocks) -> None:
    with pytest.raises(ValueError, match=r"drainSeconds 30 ≥ terminationGracePeriodSeconds 30"):
        deploy(settings(drain_seconds=30))
    deploy(settings(drain_seconds=0))
    (deployment,) = by_kind(mocks, "Deployment").values()
    assert "lifecycle" not in pod(deployment)["containers"][0]


def test_labels_follow_the_recommended_set(mocks: RecordingMocks) -> None:
    deploy(settings())
    (deployment,) = by_kind(mocks, "Deployment").values()
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "dockyard-app"
    assert labels["app.kubernetes.io/instance"] == "dockyard-app-qa"
    assert labels["app.kubernetes.io/version"] == "sha256-111111111111"
    assert labels["app.kubernetes.io/component"] == "server"
    assert labels["app.kubernetes.io/part-of"] == "dockyard"
    assert labels["app.kubernetes.io/managed-by"] == "pulumi"
    assert "app.kubernetes.io/version" not in deployment["spec"]["selector"]["matchLabels"], "selectors are immutable"


def test_single_replica_has_no_pdb_and_no_spread(mocks: RecordingMocks) -> None:
    deploy(settings(replicas=1))
    (deployment,) = by_kind(mocks, "Deployment").values()
    assert "topologySpreadConstraints" not in pod(deployment)
    assert not by_kind(mocks, "PodDisruptionBudget")


def test_several_replicas_get_a_pdb(mocks: RecordingMocks) -> None:
    deploy(settings(replicas=2))
    (pdb,) = by_kind(mocks, "PodDisruptionBudget").values()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_network_policy_denies_by_default_and_opens_the_app_port(mocks: RecordingMocks) -> None:
    deploy(settings(port=9090))
    policies = by_kind(mocks, "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {}
    assert deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    allow = policies["dockyard-app-allow-http"]["spec"]
    assert allow["ingress"] == [{"ports": [{"port": 9090, "protocol": "TCP"}]}]


def test_autoscaled_deployment_starts_at_the_autoscaler_floor(mocks: RecordingMocks) -> None:
    # Without a count the API server creates 1 pod, below minReplicas until the HPA acts (seen on a live API).
    # Later updates leave the count to the HPA (ignore_changes, proven by the engine tier on the live cluster).
    deploy(settings(replicas=2, autoscaling={"min_replicas": 3, "max_replicas": 6, "cpu_utilization": 60}))
    (deployment,) = by_kind(mocks, "Deployment").values()
    assert deployment["spec"]["replicas"] == 3
    (hpa,) = by_kind(mocks, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["minReplicas"] == 3
    assert hpa["spec"]["maxReplicas"] == 6
    assert hpa["spec"]["scaleTargetRef"]["name"] == "dockyard-app-stable"
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


def test_blue_green_service_selects_only_the_active_color(mocks: RecordingMocks) -> None:
    deploy(
        settings(
            replicas=2,
            strategy={"type": "blueGreen", "active_color": "green", "blue_image": BLUE, "green_image": GREEN},
        ),
        image=None,
    )
    deployments = by_kind(mocks, "Deployment")
    assert pod(deployments["dockyard-app-blue"])["containers"][0]["image"] == BLUE
    assert pod(deployments["dockyard-app-green"])["containers"][0]["image"] == GREEN
    services = by_kind(mocks, "Service")
    assert services["dockyard-app"]["spec"]["selector"]["dockyard.dev/track"] == "green"
    assert services["dockyard-app-preview"]["spec"]["selector"]["dockyard.dev/track"] == "blue"


def test_switching_color_changes_only_the_service_selectors() -> None:
    def render(active: str) -> list[tuple[str, str, dict[str, Any]]]:
        recording = RecordingMocks()
        pulumi.runtime.set_mocks(recording, project="dockyard", stack="unit", preview=False)
        strategy = {"type": "blueGreen", "active_color": active, "blue_image": BLUE, "green_image": GREEN}
        deploy(settings(replicas=2, strategy=strategy), image=None)
        return sorted((r.typ, r.name, r.inputs) for r in recording.resources)

    blue, green = render("blue"), render("green")
    changed = [(b[1], b[2], g[2]) for b, g in zip(blue, green, strict=True) if b != g]
    assert [name for name, *_ in changed] == ["app-preview", "app-service"]
    for _, before, after in changed:
        assert {k: v for k, v in before.items() if k != "spec"} == {k: v for k, v in after.items() if k != "spec"}
        assert before["spec"]["ports"] == after["spec"]["ports"]


def test_canary_splits_replicas_and_weights_the_ingress(mocks: RecordingMocks) -> None:
    deploy(
        settings(
            replicas=4,
            strategy={"type": "canary", "weight": 25, "canary_image": CANARY},
            ingress={"host": "shop.example.com"},
        )
    )
    deployments = by_kind(mocks, "Deployment")
    assert deployments["dockyard-app-stable"]["spec"]["replicas"] == 3
    assert deployments["dockyard-app-canary"]["spec"]["replicas"] == 1
    assert pod(deployments["dockyard-app-canary"])["containers"][0]["image"] == CANARY
    services = by_kind(mocks, "Service")
    assert services["dockyard-app"]["spec"]["selector"]["dockyard.dev/track"] == "stable"
    assert services["dockyard-app-canary"]["spec"]["selector"]["dockyard.dev/track"] == "canary"
    ingresses = by_kind(mocks, "Ingress")
    assert "annotations" not in ingresses["dockyard-app"]["metadata"]
    assert ingresses["dockyard-app-canary"]["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "25",
    }


def test_canary_without_ingress_serves_both_tracks(mocks: RecordingMocks) -> None:
    deploy(settings(replicas=4, strategy={"type": "canary", "weight": 50, "canary_image": CANARY}))
    services = by_kind(mocks, "Service")
    assert "dockyard.dev/track" not in services["dockyard-app"]["spec"]["selector"]
    assert sorted(by_kind(mocks, "Deployment")) == ["dockyard-app-canary", "dockyard-app-stable"]


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [(4, 25, (3, 1)), (3, 10, (2, 1)), (10, 0, (10, 0)), (2, 100, (0, 2)), (1, 50, (1, 1)), (5, 99, (1, 4))],
)
def test_split_replicas(total: int, weight: int, expected: tuple[int, int]) -> None:
    assert split_replicas(total, weight, has_canary=True) == expected


def test_no_canary_image_means_no_canary_pods() -> None:
    assert split_replicas(4, 50, has_canary=False) == (4, 0)


def test_physical_names_carry_the_stack(mocks: RecordingMocks) -> None:
    deploy(settings(), stack="prod")
    (namespace,) = by_kind(mocks, "Namespace").values()
    assert namespace["metadata"]["name"] == "shop-prod"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for kind in ("Deployment", "Service", "ConfigMap", "NetworkPolicy"):
        for resource in by_kind(mocks, kind).values():
            assert resource["metadata"]["namespace"] == "shop-prod"


def test_version_label_of_a_tag() -> None:
    assert version_label("ghcr.io/acme/app:1.2.3") == "1.2.3"
