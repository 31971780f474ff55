"""Dockyard's Pulumi components for container delivery, usable on their own with plain Pulumi Inputs.

``from dockyard_components import AppImage, ContainerRegistry, KubernetesApp`` in a Python program, or
``pulumi package add`` of the provider folder (``PulumiPlugin.yaml``) from any other Pulumi language.
"""

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
