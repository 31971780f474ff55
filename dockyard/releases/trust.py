"""The target's trust policy, checked on a digest before a promotion or rollback writes anything.

A stack with ``dockyard:signing`` accepts only digests signed by the key in ``signing.publicKeyFile`` and, unless
``requireSbom`` is false, carrying an SPDX SBOM attestation signed by that key. cosign does the checking against
the registry (signatures live there beside the image), so the answer is the same on any Pulumi backend.

A stack with ``signing.scan`` also takes only digests that pass a trivy scan against its vulnerability DB as the DB
is at the time of the move: an advisory published after the build refuses the promotion.
"""

from __future__ import annotations

from pathlib import Path

from dockyard.model.stack import StackView
from dockyard_components.cosign import CosignError, SigningTools
from dockyard_components.scanner import ScanError, scan


def registry_signing_tools(
    stack: StackView,
    *,
    public_key: str | None = None,
    private_key: str | None = None,
    key_password: str | None = None,
) -> SigningTools:
    """syft and cosign logged in to a stack's registry with the CLI's credentials, and the keys."""
    credentials = stack.credentials
    return SigningTools(
        registry_server=stack.env.registry.host,
        username=credentials.username,
        password=credentials.password,
        ca_file=credentials.ca_file,
        public_key=public_key,
        private_key=private_key,
        key_password=key_password,
    )


def trust_problems(project_dir: Path, stack: StackView, image: str) -> list[str]:
    """Why ``stack``'s trust policy refuses ``image``; empty when it is accepted (or the stack has no policy)."""
    target, signing = stack.name, stack.env.signing
    if signing is None:
        return []
    key_file = project_dir / signing.public_key_file
    if not key_file.is_file():
        return [f"{target}'s trust policy names {signing.public_key_file}, which does not exist"]
    problems = []
    with registry_signing_tools(stack, public_key=key_file.read_text()) as tools:
        try:
            tools.verify(image)
        except CosignError as error:
            problems.append(f"{image} carries no signature by {signing.public_key_file} that {target} trusts ({error})")
            return problems
        if signing.require_sbom:
            try:
                tools.verify_attestation(image, predicate_type="spdxjson")
            except CosignError as error:
                problems.append(f"{image} has no SBOM attestation signed by {signing.public_key_file} ({error})")
    return problems


def scan_problems(stack: StackView, image: str) -> list[str]:
    """Why ``stack``'s required scan refuses ``image`` now (one line: the findings, or "scanner unavailable");
    empty when it passes or the stack requires no scan."""
    required = stack.env.signing.scan if stack.env.signing else None
    if required is None:
        return []
    with registry_signing_tools(stack) as tools:
        try:
            scan(tools, image, db_repository=required.db_repository, severities=required.severities)
        except ScanError as error:
            return [str(error)]
    return []
