"""``services`` copies of the prod stack's KubernetesApp, rendered to a directory."""

from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from dockyard.model.config import environment_from_file
from dockyard_components.kubernetes_app import KubernetesApp, KubernetesAppArgs

count = pulumi.Config().require_int("services")
prod = environment_from_file(Path(pulumi.Config().require("project")), "prod")
settings = prod.kubernetes.model_copy(update={"mode": "render"})
provider = k8s.Provider("render", render_yaml_to_directory="rendered", kubeconfig="")  # not $KUBECONFIG
for index in range(count):
    KubernetesApp(
        f"svc{index}",
        KubernetesAppArgs(
            stack=f"bench{index}",
            tier="prod",
            namespace=f"bench-{index}",
            settings=settings,
            image=None,
            app_secrets=None,
            docker_config_json=None,
        ),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )
