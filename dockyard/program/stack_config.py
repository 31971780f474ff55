"""The program's view of its stack: the engine's config for the current stack, validated, with its secrets as secret
``Output`` values, before any resource is registered. :func:`load` raises :class:`ConfigError` listing every problem.

Secrets never enter the pydantic models: the keys listed in :data:`SECRET_KEYS` are read with ``Config.get_secret``
and kept in :class:`StackSecrets`; the registry password by the one credential rule (:mod:`dockyard.model.credentials`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from dockyard.model.config import (
    ENCRYPTED_LEAF_KEYS,
    NAMESPACE,
    SECRET_KEYS,
    ConfigError,
    EnvironmentConfig,
    parse_environment,
    read_stack_document,
    stack_file,
    written_keys,
)
from dockyard.model.credentials import PASSWORD_KEY, registry_password
from dockyard.model.problems import Problem
from dockyard_components.app_spec import ENV_NAME_PATTERN


@dataclass(frozen=True)
class StackSecrets:
    """Secret settings, only ever held as secret ``Output`` values."""

    registry_password: pulumi.Output[str] | None
    kubeconfig: pulumi.Output[str] | None
    app_secrets: pulumi.Output[dict[str, str]] | None
    ci_pulumi_passphrase: pulumi.Output[str] | None
    cosign_private_key: pulumi.Output[str] | None = None
    cosign_password: pulumi.Output[str] | None = None
    #: ``dockyard:buildSecrets``: the values of ``image.build.secrets``, by id.
    build_secrets: pulumi.Output[dict[str, str]] | None = None


@dataclass(frozen=True)
class StackConfig:
    """A validated stack: its name, its settings and its secrets."""

    stack: str
    env: EnvironmentConfig
    secrets: StackSecrets

    @property
    def namespace(self) -> str:
        return self.env.kubernetes.namespace_of(self.stack)

    @property
    def render_directory(self) -> str:
        return self.env.kubernetes.rendered_to(self.stack)


def _namespace_keys() -> dict[str, Any]:
    """Every ``dockyard:*`` key the engine passed, with its raw value (strings, JSON for objects)."""
    raw = {**pulumi.runtime.config.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
    prefix = f"{NAMESPACE}:"
    return {key.removeprefix(prefix): value for key, value in raw.items() if key.startswith(prefix)}


def _decode(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def load(stack: str | None = None, project_dir: Path | None = None) -> StackConfig:
    """Read and validate the current stack's config. Raises :class:`ConfigError` listing every problem.

    ``project_dir`` (default: the working directory, where the engine runs the program) holds the stack file and
    the build context.
    """
    stack = stack or pulumi.get_stack()
    project_dir = project_dir or Path.cwd()
    config = pulumi.Config(NAMESPACE)
    raw = _namespace_keys()
    # The engine passes each key decrypted and flags it secret when any value inside it is encrypted
    # (sdk/go/common/resource/config: object.Secure() is "any"), so a plaintext value written beside encrypted ones
    # (`pulumi config set --path 'dockyard:appSecrets.X' v`, no --secret) reaches the program indistinguishable from
    # them. Only the stack file says which values are `secure:`; without one (config from elsewhere) nothing is in git.
    path = stack_file(project_dir, stack)
    written = written_keys(read_stack_document(path)) if path.is_file() else {}
    problems: list[Problem] = []
    refused: set[str] = set()
    document: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ENCRYPTED_LEAF_KEYS:
            # The engine hands them over decrypted: the model takes the stack file's ciphertext instead (the program
            # never uses them; without a stack file there is nothing of them to check).
            if key in written:
                document[key] = written[key]
            continue
        secret = pulumi.runtime.config.is_config_secret(f"{NAMESPACE}:{key}")
        if key in SECRET_KEYS:
            if not secret:
                problems.append(
                    Problem(
                        stack,
                        f"{NAMESPACE}:{key}",
                        "stored in plaintext",
                        f"allowed: an encrypted value (pulumi config set --secret {NAMESPACE}:{key} ...)",
                    )
                )
            elif key in written:
                problems += [
                    Problem(
                        stack,
                        f"{NAMESPACE}:{leaf}",
                        "stored in plaintext beside encrypted values",
                        f"allowed: an encrypted value (pulumi config set --secret --path '{NAMESPACE}:{leaf}' ...)",
                    )
                    for leaf in _plaintext_leaves(written[key], key)
                ]
            continue
        if secret:
            # Decrypting a structured key into a model would strip its secret flag, so refuse it.
            problems.append(
                Problem(
                    stack,
                    f"{NAMESPACE}:{key}",
                    "stored as a secret",
                    f"allowed: secrets only under {', '.join(sorted(SECRET_KEYS))}",
                )
            )
            refused.add(key)
            continue
        document[key] = _decode(value)

    env: EnvironmentConfig | None = None
    try:
        env = parse_environment(stack, document)
    except ConfigError as error:
        # A key refused above is not also reported as missing.
        repeated = {Problem(stack, f"{NAMESPACE}:{key}", "missing", "required") for key in refused}
        problems = [p for p in error.found if p not in repeated] + problems

    app_secrets = config.get_secret_object("appSecrets") if "appSecrets" in raw else None
    if env is not None:
        problems += _secret_problems(stack, env, raw, os.environ) + _build_path_problems(stack, env, project_dir)
        problems += _signing_problems(stack, env, raw, project_dir)
    if problems or env is None:
        raise ConfigError(problems)

    password = registry_password(env.registry.password_env, os.environ, config.get_secret, _secret_text)
    if password is None and env.registry.password_env:
        # A preview needs no credentials; `up` refuses above before anything is touched.
        pulumi.log.warn(f"{env.registry.password_env} is not set: previewing without registry credentials")
    secrets = StackSecrets(
        registry_password=password,
        kubeconfig=config.get_secret("kubeconfig"),
        app_secrets=app_secrets,
        ci_pulumi_passphrase=config.get_secret("ciPulumiPassphrase"),
        cosign_private_key=config.get_secret("cosignPrivateKey"),
        cosign_password=config.get_secret("cosignPassword"),
        build_secrets=config.get_secret_object("buildSecrets") if "buildSecrets" in raw else None,
    )
    return StackConfig(stack=stack, env=env, secrets=secrets)


def _secret_text(value: str) -> pulumi.Output[str]:
    return pulumi.Output.secret(value)


def _secret_problems(
    stack: str, env: EnvironmentConfig, raw: Mapping[str, Any], environ: Mapping[str, str]
) -> list[Problem]:
    problems = []
    password_env = env.registry.password_env
    if password_env and PASSWORD_KEY in raw:
        problems.append(
            Problem(
                stack,
                f"{NAMESPACE}:registry.passwordEnv",
                f"set together with {NAMESPACE}:{PASSWORD_KEY}",
                "allowed: one source for the registry password",
            )
        )
    elif password_env and password_env not in environ and not pulumi.runtime.is_dry_run():
        problems.append(
            Problem(
                stack,
                f"{NAMESPACE}:registry.passwordEnv",
                f"environment variable {password_env} is not set",
                f"allowed: export it (scripts/local-services.sh env) or use {NAMESPACE}:{PASSWORD_KEY}",
            )
        )
    if env.image.build is not None and PASSWORD_KEY not in raw and not password_env:
        problems.append(
            Problem(
                stack,
                f"{NAMESPACE}:{PASSWORD_KEY}",
                "missing on a building stack",
                f"allowed: pulumi config set --secret {NAMESPACE}:{PASSWORD_KEY}, or registry.passwordEnv",
            )
        )
    if "appSecrets" in raw:
        value = _decode(raw["appSecrets"])
        # Only the shape is checked here; the values stay inside the secret Output.
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and ENV_NAME_PATTERN.match(k) and isinstance(v, str) for k, v in value.items()
        ):
            problems.append(
                Problem(
                    stack,
                    f"{NAMESPACE}:appSecrets",
                    "not an object of NAME: string",
                    "allowed: an object of environment variable names to string values",
                )
            )
    return problems + _build_secret_problems(stack, env, raw)


def _build_secret_problems(stack: str, env: EnvironmentConfig, raw: Mapping[str, Any]) -> list[Problem]:
    """``dockyard:buildSecrets`` holds a string for exactly the ids ``image.build.secrets`` lists (only its keys and
    the values' types are looked at)."""
    wanted = set(env.image.build.secrets) if env.image.build is not None else set()
    if "buildSecrets" not in raw:
        if not wanted:
            return []
        found: Any = {}
    else:
        found = _decode(raw["buildSecrets"])
    key = f"{NAMESPACE}:buildSecrets"
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        return [Problem(stack, key, "not an object of id: string", "allowed: an object of build secret ids to values")]
    problems = []
    if missing := sorted(wanted - set(found)):
        problems.append(
            Problem(
                stack,
                key,
                f"no value for {', '.join(missing)} (listed in image.build.secrets)",
                f"allowed: pulumi config set --secret --path '{key}.<id>' ...",
            )
        )
    if extra := sorted(set(found) - wanted):
        problems.append(
            Problem(
                stack,
                key,
                f"{', '.join(extra)} not listed in image.build.secrets",
                f"allowed: the ids image.build.secrets lists: {', '.join(sorted(wanted)) or 'none'}",
            )
        )
    return problems


def _plaintext_leaves(value: Any, path: str) -> list[str]:
    """Key paths under ``path`` whose values a stack file holds unencrypted (an encrypted one is ``{secure: ...}``)."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return []
        return [leaf for key, item in value.items() for leaf in _plaintext_leaves(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [leaf for i, item in enumerate(value) for leaf in _plaintext_leaves(item, f"{path}[{i}]")]
    return [path]


def _build_path_problems(stack: str, env: EnvironmentConfig, project_dir: Path) -> list[Problem]:
    """The build context and its Dockerfile exist, so a typo stops here and not in a traceback mid-deployment."""
    build = env.image.build
    if build is None:
        return []
    context = project_dir / build.context
    if not context.is_dir():
        return [
            Problem(
                stack,
                f"{NAMESPACE}:image.build.context",
                f"found {build.context!r}, no such directory in {project_dir}",
                "allowed: the build context directory, relative to the project",
            )
        ]
    if not (context / build.dockerfile).is_file():
        return [
            Problem(
                stack,
                f"{NAMESPACE}:image.build.dockerfile",
                f"found {build.dockerfile!r}, no such file in {context}",
                "allowed: the Dockerfile's path inside image.build.context",
            )
        ]
    return []


def _signing_problems(stack: str, env: EnvironmentConfig, raw: Mapping[str, Any], project_dir: Path) -> list[Problem]:
    """A stack with a signing key names a public key that exists, and holds the private key and its password."""
    signing = env.signing
    if signing is None or signing.public_key_file is None:
        # Keyless identities only: CI signs with its OIDC identity; the stack holds no key pair.
        stray = [key for key in ("cosignPrivateKey", "cosignPassword") if key in raw]
        where = "dockyard:signing" if signing is None else "dockyard:signing.publicKeyFile"
        return [
            Problem(
                stack,
                f"{NAMESPACE}:{key}",
                f"set without {where}",
                "allowed: signing.publicKeyFile beside it",
            )
            for key in stray
        ]
    problems = []
    if not (project_dir / signing.public_key_file).is_file():
        problems.append(
            Problem(
                stack,
                f"{NAMESPACE}:signing.publicKeyFile",
                f"found {signing.public_key_file!r}, no such file in {project_dir}",
                "allowed: a cosign public key (PEM) in the project, e.g. from cosign generate-key-pair",
            )
        )
    # Every stack with a key signs: its builds, and the verification attestations the next stack's gate reads.
    problems += [
        Problem(
            stack,
            f"{NAMESPACE}:{key}",
            "missing on a stack that signs (builds and verifications)",
            f"allowed: pulumi config set --secret {NAMESPACE}:{key} ... (cosign generate-key-pair)",
        )
        for key in ("cosignPrivateKey", "cosignPassword")
        if key not in raw
    ]
    return problems
