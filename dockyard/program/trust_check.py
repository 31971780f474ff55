"""The stack's trust policy, enforced by the program on every ``preview`` and ``up``, before any resource exists.

Every digest a Deployment of the stack will run (stable, canary, blue, green: the strategy's tracks, read through
:attr:`~dockyard.model.config.EnvironmentConfig.running_images`) is checked by the one rule of
:mod:`dockyard.model.trust`, the rule the CLI's promotion and rollback gates apply. A refusal stops the program before
it registers anything, so nothing is deployed: the engine prints one line per refused image.

A building stack's own release is not among those digests: it exists only once the build pushed it, and the same
update signs it with the stack's key and verifies the signature and SBOM attestation with ``publicKeyFile``
(:class:`~dockyard_components.signing.SignedImage`) before its Deployment, which depends on that step, changes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pulumi

from dockyard.model.config import NAMESPACE
from dockyard.model.credentials import registry_credentials
from dockyard.model.trust import TrustCache, TrustPolicy, TrustPolicyError, check_images, registry_tools
from dockyard.program.stack_config import StackConfig


class TrustRefusal(pulumi.RunError):
    """The stack's trust policy refuses an image it would run; a ``RunError``, so the engine prints the lines alone."""


def _stack_secret(key: str) -> str | None:
    # Read for cosign's private docker config only (0600, removed after the check); never printed or exported.
    value = pulumi.runtime.config.get_config(f"{NAMESPACE}:{key}")
    return value if isinstance(value, str) else None


def enforce(
    stack: StackConfig,
    project_dir: Path,
    *,
    environ: Mapping[str, str] = os.environ,
    cache: TrustCache | None = None,
) -> TrustPolicy | None:
    """Raise :class:`TrustRefusal` when ``stack``'s trust policy refuses an image one of its Deployments would run;
    else the policy (None: the stack has none), which the namespace carries for admission."""
    signing = stack.env.signing
    if signing is None:
        return None
    try:
        policy = TrustPolicy.of(stack.stack, signing, project_dir)
    except TrustPolicyError as error:
        raise TrustRefusal(f"{error}; nothing is deployed") from None
    images = stack.env.running_images
    if not images:
        return policy
    registry = stack.env.registry
    credentials = registry_credentials(registry, _stack_secret, environ)
    refused = check_images(policy, images, lambda: registry_tools(registry.host, credentials, policy), cache)
    if refused:
        raise TrustRefusal(
            "\n".join(
                f"{stack.stack}'s trust policy refuses the {track} track's image, nothing is deployed: "
                + "; ".join(problems)
                for track, problems in refused.items()
            )
        )
    return policy
