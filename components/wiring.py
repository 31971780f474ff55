"""Turns a validated stack config into component arguments. Keeps ``__main__`` a table of contents."""

from __future__ import annotations

from pathlib import Path

import pulumi

from components.build_context import context_hash
from components.config import StackConfig
from components.image import AppImageArgs
from components.kubernetes_app import KubernetesAppArgs
from components.registry import ContainerRegistry, ContainerRegistryArgs
from components.signing import SignedImageArgs
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
    """The digest a non-building stack serves, as its strategy says (image.ref, or the active color's image)."""
    served = stack.env.served_image
    if served is None:
        raise ValueError(f"{stack.stack}: a stack that does not build serves a promoted image; none is configured")
    return pulumi.Output.from_input(served)


def app_args(stack: StackConfig, release: pulumi.Output[str], registry: ContainerRegistry) -> KubernetesAppArgs:
    return KubernetesAppArgs(
        stack=stack.stack,
        tier=stack.env.tier.value,
        namespace=stack.namespace,
        settings=stack.env.kubernetes,
        image=release,
        app_secrets=stack.secrets.app_secrets,
        docker_config_json=registry.docker_config_json,
    )


def signing_args(stack: StackConfig, registry: ContainerRegistry, image: pulumi.Output[str]) -> SignedImageArgs:
    """Sign what the build pushed, with the stack's key pair; the public key verifies it before the update ends."""
    signing = stack.env.signing
    secrets = stack.secrets
    if signing is None or secrets.cosign_private_key is None or secrets.cosign_password is None:
        raise ValueError(f"{stack.stack}: signing_args needs dockyard:signing and the cosign key secrets")
    return SignedImageArgs(
        image_ref=image,
        registry_server=registry.server,
        username=registry.username,
        password=registry.password,
        ca_file=stack.env.registry.ca_bundle,
        private_key=secrets.cosign_private_key,
        key_password=secrets.cosign_password,
        public_key=(Path.cwd() / signing.public_key_file).read_text(),
    )
