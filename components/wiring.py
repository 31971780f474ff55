"""Turns a validated stack config into component arguments. Keeps ``__main__`` a table of contents."""

from __future__ import annotations

import weakref
from pathlib import Path

import pulumi

from components.build_context import context_hash
from components.config import StackConfig
from components.image import AppImageArgs
from components.kubernetes_app import KubernetesAppArgs
from components.registry import ContainerRegistry, ContainerRegistryArgs
from components.registry_auth import RegistryCredentialCheck
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


#: One credential check per registry component: the build and the pull Secret share it.
_credential_checks: weakref.WeakKeyDictionary[ContainerRegistry, RegistryCredentialCheck] = weakref.WeakKeyDictionary()


def credential_check(stack: StackConfig, registry: ContainerRegistry) -> RegistryCredentialCheck | None:
    """The registry's credential, verified against the registry whenever it changes (None without a password)."""
    if registry.password is None:
        return None
    if registry not in _credential_checks:
        config = stack.env.registry
        key = "dockyard:registryPassword"
        if config.password_env:
            key += f" (this stack reads ${config.password_env}, dockyard:registry.passwordEnv)"
        _credential_checks[registry] = RegistryCredentialCheck(
            "registry-credentials",
            {
                "server": registry.server,
                "repository": config.repository,
                "username": registry.username,
                "password": registry.password,
                "password_env": config.password_env,
                "password_key": key,
                "ca_file": config.ca_bundle,
            },
            opts=pulumi.ResourceOptions(parent=registry),
        )
    return _credential_checks[registry]


def _checked(
    stack: StackConfig, registry: ContainerRegistry, value: pulumi.Output[str] | None
) -> pulumi.Output[str] | None:
    """``value`` (a credential) once the registry has accepted it: what takes it waits for the check."""
    check = credential_check(stack, registry)
    return check.gate(value) if check is not None and value is not None else value


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
        password=_checked(stack, registry, registry.password),
        context=build.context,
        dockerfile=build.dockerfile,
        target=build.target,
        test_target=build.test_target,
        platform=build.platform,
        build_args=build.build_args,
        tags=tags,
        metadata=metadata,
        cache_repo=build.cache_repo,
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
        # Cloud registries are pulled through the cluster's workload identity: a Secret would hold a token that
        # expires within hours (components/registry_config.py), so only config asks for one.
        docker_config_json=(
            _checked(stack, registry, registry.docker_config_json) if stack.env.registry.wants_pull_secret else None
        ),
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
