"""The one rule for where a stack's registry password is, for every registry kind.

``registry.passwordEnv`` names an environment variable (CI writes a cloud registry's short-lived token there); without
it the password is the stack's secret ``dockyard:registryPassword``. The program (config loading), the credential
check's provider and every CLI path that talks to the registry read it through :func:`registry_password`, each with
its own way of reading a secret of the stack (a secret Output, the provider's config, the engine's ``config get``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from dockyard.model.registry import RegistryConfig

#: The stack's secret that holds the password when no ``registry.passwordEnv`` is set (without the namespace).
PASSWORD_KEY = "registryPassword"

T = TypeVar("T")


def registry_password(
    password_env: str | None,
    environ: Mapping[str, str],
    secret: Callable[[str], T | None],
    plain: Callable[[str], T],
) -> T | None:
    """The password: ``environ[password_env]`` when a variable is named (None when it is unset), else
    ``secret(PASSWORD_KEY)``. ``plain`` wraps a value read from the environment the way ``secret`` returns one."""
    if password_env:
        value = environ.get(password_env)
        return None if value is None else plain(value)
    return secret(PASSWORD_KEY)


def password_source(password_env: str | None) -> str:
    """Where a stack's registry password is set, as a refusal names it."""
    source = f"dockyard:{PASSWORD_KEY}"
    if password_env:
        source += f" (this stack reads ${password_env}, dockyard:registry.passwordEnv)"
    return source


@dataclass(frozen=True)
class RegistryCredentials:
    """What the CLI logs in to a stack's registry with; ``password`` None asks anonymously."""

    username: str
    password: str | None
    ca_file: str | None


def registry_credentials(
    registry: RegistryConfig, secret: Callable[[str], str | None], environ: Mapping[str, str] = os.environ
) -> RegistryCredentials:
    """The CLI's credentials for ``registry``: the password by :func:`registry_password`, the CA from ``caFile`` or
    ``DOCKYARD_REGISTRY_CA``."""
    password = registry_password(registry.password_env, environ, secret, str)
    return RegistryCredentials(registry.username, password, registry.ca_bundle)
