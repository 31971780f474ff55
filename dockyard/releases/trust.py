"""The target's trust policy, checked on a digest before a promotion or rollback writes anything.

The rule (whom a stack trusts, what a digest must carry, the cache of acceptances) is :mod:`dockyard.model.trust`'s,
shared with the program, which applies it again on every ``preview`` and ``up``. Here the CLI logs cosign in to the
stack's registry with the credentials it reads through the engine.

A stack with ``signing.scan`` also takes only digests that pass a trivy scan against its vulnerability DB as the DB
is at the time of the move: an advisory published after the build refuses the promotion.
"""

from __future__ import annotations

from pathlib import Path

from dockyard.model.stack import StackView
from dockyard.model.trust import TrustPolicy, TrustPolicyError, check_images, registry_tools
from dockyard.releases.registry_client import RegistryUnreachableError, index_platforms
from dockyard_components.cosign import SigningTools
from dockyard_components.scanner import ScanError, scan


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


def scan_problems(stack: StackView, image: str) -> list[str]:
    """Why ``stack``'s required scan refuses ``image`` now (one line: the findings, or "scanner unavailable");
    empty when it passes or the stack requires no scan."""
    required = stack.env.signing.scan if stack.env.signing else None
    if required is None:
        return []
    try:
        # An image index: each platform's image is scanned (trivy alone takes the host's).
        platforms = index_platforms(image, stack.credentials)
    except RegistryUnreachableError as error:
        return [f"scanner unavailable: {error}"]
    with registry_signing_tools(stack) as tools:
        try:
            scan(
                tools, image, db_repository=required.db_repository, severities=required.severities, platforms=platforms
            )
        except ScanError as error:
            return [str(error)]
    return []
