"""The components as a Pulumi component provider, for programs in any Pulumi language (``pulumi package add``).

The schema (package ``dockyard``, types ``dockyard:index:<Component>``) is inferred by Pulumi from each
component's ``<Component>Args`` TypedDict and its declared outputs.
"""

from __future__ import annotations

from importlib.metadata import version

from pulumi.provider.experimental import component_provider_host

from dockyard_components.github_ci import CiPipeline
from dockyard_components.image import AppImage
from dockyard_components.kubernetes_app import KubernetesApp
from dockyard_components.registry import ContainerRegistry
from dockyard_components.scanner import ScannedImage
from dockyard_components.signing import SignedImage

PACKAGE = "dockyard"
COMPONENTS = [ContainerRegistry, AppImage, ScannedImage, SignedImage, KubernetesApp, CiPipeline]


def serve() -> None:
    """Run the provider (the engine starts it through PulumiPlugin.yaml; it never returns)."""
    component_provider_host(COMPONENTS, name=PACKAGE, version=version("dockyard-components"))
