"""Verification outcomes as signed in-toto attestations on the verified digest, in the registry beside the image.

Why the registry: a promotion gate must read the upstream's verification wherever the team keeps its Pulumi state,
and a shared backend has no directory beside the state for the ledger. The registry already holds the image, its
signature and its SBOM attestation; a verification is one more attestation there: predicate type
:data:`~dockyard_components.cosign.VERIFICATION_PREDICATE`, the ledger record as predicate (stack, image, checks, time,
outcome), signed with the verified stack's cosign key. A target reads back only what a signer its trust policy
names (``signing.publicKeyFile``, or a keyless identity) verifies, so a verification cannot be forged by anyone who can merely push.

Stacks without ``dockyard:signing`` keep the ledger (:mod:`.ledger`) as their only record: without a trusted
key there is nothing to check a registry claim against. The ledger stays for every stack as the local cache the
metrics and rollbacks read.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

from dockyard.model.config import NAMESPACE
from dockyard.model.stack import StackView
from dockyard.model.trust import TrustPolicy, TrustPolicyError, registry_tools, signed_statements
from dockyard.releases.errors import DockyardError
from dockyard.releases.ledger import Verification
from dockyard.releases.trust import registry_signing_tools
from dockyard_components.cosign import NO_ATTESTATION, VERIFICATION_PREDICATE, CosignError, attestation_tag
from dockyard_components.image_ref import parse_image_reference

#: cosign appends an attestation by reading the digest's ``.att`` manifest and pushing it back with one more layer; a
#: registry has no compare-and-swap on tags, so two writers at once (two teams verifying the same digest) can push
#: over each other. Publishing reads its record back after longer than one writer's read-to-push takes (well under a
#: second) and writes again if it was lost.
SETTLE_SECONDS = 1.0
PUBLISH_TRIES = 4


class AttestationError(DockyardError):
    """A verification could not be attested or read back; the message names the key or the registry to fix."""


class SigningProject(Protocol):
    """What publishing reads of a project (:class:`~dockyard.releases.project.Project`; a fake in unit tests)."""

    @property
    def directory(self) -> Path: ...

    @property
    def backend(self) -> str: ...

    def secret_config(self, stack: str, key: str, /) -> str | None: ...


def predicate(record: Verification, backend: str) -> dict[str, Any]:
    """The in-toto predicate of one verification: the ledger's record, and the backend that makes its stack name
    unique (another team's ``local`` may verify the same digest)."""
    return {**record.to_json(), "backend": backend}


def publish(project: SigningProject, view: StackView, record: Verification) -> str:
    """Attest ``record`` on its digest with the stack's cosign key; returns the tag the attestation lives under."""
    stack = view.name
    if view.env.signing is None:
        raise AttestationError(f"{stack} has no dockyard:signing, so its verifications stay in the ledger only")
    private_key = project.secret_config(stack, f"{NAMESPACE}:cosignPrivateKey")
    key_password = project.secret_config(stack, f"{NAMESPACE}:cosignPassword")
    if private_key is None:
        raise AttestationError(
            f"{stack}: dockyard:cosignPrivateKey is not set, so its verification of {record.image} cannot be "
            f"attested where promotions read it; set it with pulumi config set --secret dockyard:cosignPrivateKey "
            f"--stack {stack} < cosign.key (and dockyard:cosignPassword)"
        )
    with registry_signing_tools(view, private_key=private_key, key_password=key_password) as tools:
        for _ in range(PUBLISH_TRIES):
            try:
                tools.attest(record.image, predicate(record, project.backend), predicate_type=VERIFICATION_PREDICATE)
            except CosignError as error:
                raise AttestationError(f"{stack}: attesting the verification of {record.image}: {error}") from None
            time.sleep(SETTLE_SECONDS)
            if record in attested_verifications(project.directory, project.backend, stack, view, record.image):
                break
        else:
            raise AttestationError(
                f"{stack}: the verification of {record.image} was attested {PUBLISH_TRIES} times and never read "
                f"back: either other writers of {attestation_tag(record.image)} pushed over it each time (run "
                f"dockyard verify --stack {stack} again), or signing.publicKeyFile is not the public half of "
                f"dockyard:cosignPrivateKey; the ledger has the outcome"
            )
    return attestation_tag(record.image)


def attested_verifications(
    project_dir: Path, backend: str, source: str, target: StackView, image: str
) -> list[Verification]:
    """``source``'s (in ``backend``) verifications of ``image`` that a signer the target trusts signed, oldest
    first."""
    signing = target.env.signing
    if signing is None:
        raise AttestationError("the target has no dockyard:signing: there is no key to trust attestations with")
    try:
        policy = TrustPolicy.of(target.name, signing, project_dir)
    except TrustPolicyError as error:
        raise AttestationError(str(error)) from None
    with registry_tools(target.env.registry.host, target.credentials, policy) as tools:
        statements, reasons = signed_statements(tools, policy, image, VERIFICATION_PREDICATE)
    failures = [reason for reason in reasons if not any(marker in reason for marker in NO_ATTESTATION)]
    if not statements and failures:
        raise AttestationError(f"reading the verification attestations of {image}: {'; '.join(failures)}")
    digest = parse_image_reference(image).digest
    records = [
        Verification.from_json(statement["predicate"])
        for statement in statements
        if statement.get("predicateType") == VERIFICATION_PREDICATE
        and digest in _subject_digests(statement)
        and statement["predicate"].get("backend") == backend
    ]
    # A signed statement about this digest must also speak of it, and of source, in its predicate.
    mine = [r for r in records if r.stack == source and parse_image_reference(r.image).digest == digest]
    return sorted(mine, key=lambda r: r.at)


def _subject_digests(statement: dict[str, Any]) -> set[str]:
    return {
        f"{algorithm}:{value}"
        for subject in statement.get("subject") or []
        for algorithm, value in (subject.get("digest") or {}).items()
    }
