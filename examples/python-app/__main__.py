"""Another team's program: its own image, built and deployed with Dockyard's components and plain Inputs."""

import pulumi
import pulumi_kubernetes as k8s

from dockyard_components import AppImage, ContainerRegistry, KubernetesApp, RegistryKind, StrategyType

config = pulumi.Config()
registry = ContainerRegistry(
    "registry",
    {
        "kind": RegistryKind.SELF_HOSTED,
        "server": config.require("registryServer"),
        "repository": "payments/api",
        "username": config.require("registryUser"),
        "password": config.require_secret("registryPassword"),
    },
)
image = AppImage(
    "image",
    {
        "image_name": registry.image_name,
        "registry_server": registry.server,
        "username": registry.username,
        "password": config.require_secret("registryPassword"),
        "context": "app",
        "target": "runtime",
        "test_target": "test",
        "tags": ["payments-1.4.0"],
    },
)
cluster = k8s.Provider("cluster", context=config.get("kubeContext"))
app = KubernetesApp(
    "app",
    {
        "namespace": f"payments-{pulumi.get_stack()}",
        "image": image.ref,
        "replicas": 2,
        "strategy": {"type": StrategyType.ROLLING, "max_surge": "1"},
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
        "docker_config_json": registry.docker_config_json,
    },
    opts=pulumi.ResourceOptions(providers=[cluster]),
)
pulumi.export("image", image.ref)
pulumi.export("url", app.url)
