"""Dockyard: reusable Pulumi components for container delivery.

Import what you need, e.g. ``from components import AppImage, ContainerRegistry, KubernetesApp``.
"""

from components.config import ConfigError, EnvironmentConfig, StackConfig, StackSecrets, load
from components.image_ref import ImageReference, ImageReferenceError, parse_image_reference

__all__ = [
    "ConfigError",
    "EnvironmentConfig",
    "ImageReference",
    "ImageReferenceError",
    "StackConfig",
    "StackSecrets",
    "load",
    "parse_image_reference",
]
