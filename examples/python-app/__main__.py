"""Another team's program: its registry, its image built and tested with podman, and a rolling KubernetesApp, from
Dockyard's components installed as a library (``pip install dockyard-components``), with plain Inputs.

Everything machine-specific comes from the stack's config. tests/engine/test_adoption.py runs this program on the
real engine from a fresh virtualenv outside the repository, against the local registry and cluster.
"""

import pulumi
import pulumi_kubernetes as k8s

from dockyard_components import AppImage, Builder, ContainerRegistry, KubernetesApp, RegistryKind, StrategyType

config = pulumi.Config()

registry = ContainerRegistry(
    "registry",
    {
        "kind": RegistryKind.SELF_HOSTED,
        "server": config.require("registryServer"),
        "repository": config.require("repository"),
        "username": config.require("registryUser"),
        "password": config.require_secret("registryPassword"),
    },
)
image = AppImage(
    "app",
    {
        "image_name": registry.image_name,
        "registry_server": registry.server,
        "username": registry.username,
        "password": config.require_secret("registryPassword"),
        "tags": [config.require("tag")],
        "builder": Builder.PODMAN,
        "context": "app",
        "target": "runtime",
        "test_target": "test",
        "build_args": config.require_object("buildArgs"),
    },
)
cluster = k8s.Provider("local-cluster", context=config.require("kubeContext"))
app = KubernetesApp(
    "app",
    {
        "namespace": config.require("namespace"),
        "image": image.ref,
        "replicas": 1,
        "strategy": {"type": StrategyType.ROLLING, "max_surge": "1", "max_unavailable": "0"},
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}},
        "env": {"LOG_LEVEL": "debug"},
        "docker_config_json": registry.docker_config_json,
        "rollout_timeout_seconds": 180,
    },
    opts=pulumi.ResourceOptions(providers=[cluster]),
)

pulumi.export("image_ref", image.ref)
pulumi.export("namespace", app.namespace)
pulumi.export("deployments", {track: d.metadata.name for track, d in app.deployments.items()})
