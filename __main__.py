"""Dockyard: one stack is one environment. Load its config, compose the components, export what others need."""

import pulumi

from components import config, wiring
from components.cluster import kubernetes_provider
from components.image import AppImage
from components.kubernetes_app import KubernetesApp
from components.registry import ContainerRegistry

stack = config.load()

registry = ContainerRegistry("registry", wiring.registry_args(stack))

# Build once: only building stacks (local, dev) create an image; the others deploy a promoted digest.
image = AppImage("image", wiring.image_args(stack, registry)) if stack.env.image.build else None
release = image.ref if image else wiring.promoted_image(stack)

app = KubernetesApp(
    "app",
    wiring.app_args(stack, release, registry),
    opts=pulumi.ResourceOptions(providers=[kubernetes_provider("kubernetes", stack)]),
)

pulumi.export("environment", stack.stack)
pulumi.export("image_ref", release)
pulumi.export("namespace", app.namespace)
pulumi.export("url", app.url)
