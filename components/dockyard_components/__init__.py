"""Dockyard's Pulumi components for container delivery, usable on their own with plain Pulumi Inputs.

``from dockyard_components import AppImage, ContainerRegistry, KubernetesApp`` in a Python program, or
``pulumi package add`` of the provider folder (``PulumiPlugin.yaml``) from any other Pulumi language.

The package imports lazily (PEP 562): importing one module of it (``dockyard_components.image_ref``, as the dockyard
CLI does) does not load the others and pulumi_kubernetes; a name is imported from its module when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard_components.github_ci import CiPipeline, CiPipelineArgs, ReviewerArgs, ReviewerType
    from dockyard_components.image import AppImage, AppImageArgs, Builder, IntegrationArgs
    from dockyard_components.image_ref import ImageReference, ImageReferenceError, parse_image_reference
    from dockyard_components.kubernetes_app import (
        AutoscalingArgs,
        IngressArgs,
        KubernetesApp,
        KubernetesAppArgs,
        ResourceAmountsArgs,
        ResourcesArgs,
        StrategyArgs,
        StrategyType,
    )
    from dockyard_components.registry import ContainerRegistry, ContainerRegistryArgs, RegistryKind
    from dockyard_components.scanner import ScannedImage, ScannedImageArgs
    from dockyard_components.signing import SignedImage, SignedImageArgs
    from dockyard_components.tags import BuildMetadata
    from dockyard_components.tiers import Tier

#: The module that defines each public name.
_HOMES = {
    "AppImage": "image",
    "AppImageArgs": "image",
    "AutoscalingArgs": "kubernetes_app",
    "BuildMetadata": "tags",
    "Builder": "image",
    "CiPipeline": "github_ci",
    "CiPipelineArgs": "github_ci",
    "ContainerRegistry": "registry",
    "ContainerRegistryArgs": "registry",
    "ImageReference": "image_ref",
    "ImageReferenceError": "image_ref",
    "IngressArgs": "kubernetes_app",
    "IntegrationArgs": "image",
    "KubernetesApp": "kubernetes_app",
    "KubernetesAppArgs": "kubernetes_app",
    "RegistryKind": "registry",
    "ResourceAmountsArgs": "kubernetes_app",
    "ResourcesArgs": "kubernetes_app",
    "ReviewerArgs": "github_ci",
    "ReviewerType": "github_ci",
    "ScannedImage": "scanner",
    "ScannedImageArgs": "scanner",
    "SignedImage": "signing",
    "SignedImageArgs": "signing",
    "StrategyArgs": "kubernetes_app",
    "StrategyType": "kubernetes_app",
    "Tier": "tiers",
    "parse_image_reference": "image_ref",
}

__all__ = [
    "AppImage",
    "AppImageArgs",
    "AutoscalingArgs",
    "BuildMetadata",
    "Builder",
    "CiPipeline",
    "CiPipelineArgs",
    "ContainerRegistry",
    "ContainerRegistryArgs",
    "ImageReference",
    "ImageReferenceError",
    "IngressArgs",
    "IntegrationArgs",
    "KubernetesApp",
    "KubernetesAppArgs",
    "RegistryKind",
    "ResourceAmountsArgs",
    "ResourcesArgs",
    "ReviewerArgs",
    "ReviewerType",
    "ScannedImage",
    "ScannedImageArgs",
    "SignedImage",
    "SignedImageArgs",
    "StrategyArgs",
    "StrategyType",
    "Tier",
    "parse_image_reference",
]


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value  # found directly from now on
    return value
