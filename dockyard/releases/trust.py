"""The target's trust policy, checked on a digest before a promotion or rollback writes anything.

The rule (whom a stack trusts, what a digest must carry, the cache of acceptances) is :mod:`dockyard.model.trust`'s,
shared with the program, which applies it again on every ``preview`` and ``up``. Here the CLI logs cosign in to the
stack's registry with the credentials it reads through the engine.
"""

from __future__ import annotations

from pathlib import Path

from dockyard.model.stack import StackView
from dockyard.model.trust import TrustPolicy, TrustPolicyError, check_images, registry_tools
from dockyard_components.cosign import SigningTools


def registry_signing_tools(
    stack: StackView,
    *,
    public_key: str | None = None,
    private_key: str | None = None,
    key_password: str | None = None,
) -> SigningTools:
    """syft and cosign logged in to a stack's registry with the CLI's credentials, and the keys."""
    return registry_tools(
        stack.env.registry.host,
        stack.credentials,
        public_key=public_key,
        private_key=private_key,
        key_password=key_password,
    )


def trust_problems(project_dir: Path, stack: StackView, image: str) -> list[str]:
    """Why ``stack``'s trust policy refuses ``image``; empty when it is accepted (or the stack has no policy)."""
    signing = stack.env.signing
    if signing is None:
        return []
    try:
        policy = TrustPolicy.of(stack.name, signing, project_dir)
    except TrustPolicyError as error:
        return [str(error)]
    refused = check_images(
        policy, {image: image}, lambda: registry_tools(stack.env.registry.host, stack.credentials, policy)
    )
    return refused.get(image, [])
