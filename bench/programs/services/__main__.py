"""``services`` copies of a prod-shaped KubernetesApp (Pulumi.prod.yaml's spec), rendered to a directory.

The spec is written with the components' own Args, as another team's program would: the benchmark measures the
component, not Dockyard's config loading.
"""

import pulumi
import pulumi_kubernetes as k8s

from dockyard_components.kubernetes_app import KubernetesApp, KubernetesAppArgs, StrategyType
from dockyard_components.tiers import Tier

BLUE = "ghcr.io/acme/dockyard-app@sha256:" + "3f" * 32
GREEN = "ghcr.io/acme/dockyard-app@sha256:" + "9a" * 32

count = pulumi.Config().require_int("services")
provider = k8s.Provider("render", render_yaml_to_directory="rendered", kubeconfig="")  # not $KUBECONFIG
for index in range(count):
    KubernetesApp(
        f"svc{index}",
        KubernetesAppArgs(
            namespace=f"bench-{index}",
            stack=f"bench{index}",
            tier=Tier.PROD,
            replicas=3,
            resources={"requests": {"cpu": "200m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}},
            strategy={
                "type": StrategyType.BLUE_GREEN,
                "active_color": "blue",
                "blue_image": BLUE,
                "green_image": GREEN,
            },
            autoscaling={"min_replicas": 3, "max_replicas": 10, "cpu_utilization": 70},
            ingress={"host": f"svc{index}.example.com"},
        ),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )
