"""Turns a validated stack config into component arguments. Keeps ``__main__`` a table of contents."""

from __future__ import annotations

from pathlib import Path

import pulumi

from components.build_context import context_hash
from components.config import BlueGreenStrategy, StackConfig
from components.image import AppImageArgs
from components.kubernetes_app import KubernetesAppArgs
from components.registry import ContainerRegistry, ContainerRegistryArgs
from components.tags import read_git_facts, release_identity

SOURCE_URL = "https://github.com/{repository}"


def registry_args(stack: StackConfig) -> ContainerRegistryArgs:
    registry = stack.env.registry
    return ContainerRegistryArgs(
        kind=registry.kind,
        server=registry.server,
        repository=registry.repository,
        username=registry.username,
        password=stack.secrets.registry_password,
    )


def image_args(stack: StackConfig, registry: ContainerRegistry) -> AppImageArgs:
    build = stack.env.image.build
    if build is None:
        raise ValueError(f"{stack.stack}: image_args needs dockyard:image.build")
    context = Path(build.context)
    repository = stack.env.github.repository
    source = SOURCE_URL.format(repository=repository) if repository else f"file:{build.context}"
    tags, metadata = release_identity(read_git_facts(context), context_hash(context, build.dockerfile), source)
    return AppImageArgs(
        builder=build.builder,
        image_name=registry.image_name,
        registry_server=registry.server,
        username=registry.username,
        password=registry.password,
        context=build.context,
        dockerfile=build.dockerfile,
        target=build.target,
        test_target=build.test_target,
        platform=build.platform,
        build_args=build.build_args,
        tags=tags,
        metadata=metadata,
    )


def promoted_image(stack: StackConfig) -> pulumi.Output[str]:
    """The digest a non-building stack serves: image.ref, or the active color's image for blue-green."""
    strategy = stack.env.kubernetes.strategy
    if isinstance(strategy, BlueGreenStrategy):
        active = strategy.image_of(strategy.active_color or "blue")
        if active is None:
            raise ValueError(f"{stack.stack}: blue-green without an image for the active color")
        return pulumi.Output.from_input(active)
    if stack.env.image.ref is None:
        raise ValueError(f"{stack.stack}: dockyard:image.ref is required on a stack that does not build")
    return pulumi.Output.from_input(stack.env.image.ref)


def app_args(stack: StackConfig, release: pulumi.Output[str], registry: ContainerRegistry) -> KubernetesAppArgs:
    blue_green = isinstance(stack.env.kubernetes.strategy, BlueGreenStrategy)
    return KubernetesAppArgs(
        stack=stack.stack,
        tier=stack.env.tier.value,
        namespace=stack.namespace,
        settings=stack.env.kubernetes,
        image=None if blue_green else release,
        app_secrets=stack.secrets.app_secrets,
        docker_config_json=registry.docker_config_json,
    )
