"""A Deployment that breaks exactly the rule named by config ``case`` (``good`` breaks none)."""

import copy

import pulumi
import pulumi_kubernetes as k8s

DIGEST = "ghcr.io/acme/app@sha256:" + "1" * 64
GOOD_CONTAINER = {
    "name": "app",
    "image": DIGEST,
    "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}, "limits": {"cpu": "100m", "memory": "32Mi"}},
    "securityContext": {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    },
}
LABELS = {"app": "case"}


def broken(case: str) -> tuple[dict, int, str]:
    """(container, replicas, tier) for a case."""
    container = copy.deepcopy(GOOD_CONTAINER)
    replicas, tier = 2, "prod"
    if case == "approved-registries":
        container["image"] = "docker.io/library/nginx@sha256:" + "2" * 64
    elif case == "immutable-images":
        container["image"] = "ghcr.io/acme/app:1.2.3"
    elif case == "resource-limits":
        del container["resources"]["limits"]
    elif case == "pod-security":
        container["securityContext"]["allowPrivilegeEscalation"] = True
    elif case == "no-plaintext-secret-env":
        container["env"] = [{"name": "DB_PASSWORD", "value": "not-a-real-password"}]
    elif case == "prod-availability":
        replicas = 1
    elif case != "good":
        raise ValueError(f"unknown case {case}")
    return container, replicas, tier


case = pulumi.Config().require("case")
container, replicas, tier = broken(case)
provider = k8s.Provider("render", render_yaml_to_directory="rendered", kubeconfig="")  # not $KUBECONFIG
options = pulumi.ResourceOptions(provider=provider)
metadata = {"name": "case", "labels": {**LABELS, "dockyard.dev/tier": tier}}
k8s.apps.v1.Deployment(
    "case",
    metadata=metadata,
    spec={
        "replicas": replicas,
        "selector": {"matchLabels": LABELS},
        "template": {"metadata": {"labels": LABELS}, "spec": {"containers": [container]}},
    },
    opts=options,
)
if case != "prod-availability":
    k8s.policy.v1.PodDisruptionBudget(
        "case",
        metadata=metadata,
        spec={"maxUnavailable": 1, "selector": {"matchLabels": LABELS}},
        opts=options,
    )
