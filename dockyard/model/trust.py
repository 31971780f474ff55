"""A stack's trust policy, decided in one place: what a digest must carry before the stack runs it.

``dockyard:signing`` names whom the stack trusts (``publicKeyFile``, keyless ``identities``, or both) and what a
digest carries beside the signature (``requireSbom``). The same rule binds every path a digest takes into a stack:
the CLI's gates before a promotion or rollback writes it (:mod:`dockyard.releases.trust`) and the program before
any Deployment of a ``preview`` or ``up`` is registered (:mod:`dockyard.program.trust_check`).

How: cosign asks the registry (signatures and attestations live there beside the image), through
:class:`~dockyard_components.cosign.SigningTools`, logged in by the one credential rule
(:mod:`dockyard.model.credentials`). A key verifies offline (``--insecure-ignore-tlog``); a keyless identity needs
Fulcio's roots and Rekor, so it verifies online only. An accepted digest is remembered per digest and policy
(:class:`TrustCache`), so an unchanged stack costs a file read; a refusal is never remembered.

Where a new requirement goes: a :class:`Requirement` is an attestation of one predicate type, signed by a trusted
signer, optionally judged (``accept``: e.g. a vulnerability scan that must pass) and remembered for at most
``max_age`` (a scan goes stale as advisories are published; a signature does not).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from dockyard.model.config import SigningConfig
from dockyard.model.credentials import RegistryCredentials
from dockyard_components.cosign import CosignError, KeylessIdentity, SigningTools, ToolUnavailableError

#: Names the directory where accepted digests are remembered (default ``$DOCKYARD_CACHE/trust``, that is
#: ``~/.cache/dockyard/trust``).
CACHE_ENV = "DOCKYARD_TRUST_CACHE"


def cache_directory(environ: Mapping[str, str] = os.environ) -> Path:
    if environ.get(CACHE_ENV):
        return Path(environ[CACHE_ENV])
    return Path(environ.get("DOCKYARD_CACHE") or Path.home() / ".cache" / "dockyard") / "trust"


Statement = dict[str, Any]


class TrustPolicyError(Exception):
    """The trust policy itself cannot be read (its key file is missing); nothing can be accepted."""


@dataclass(frozen=True)
class Signer:
    """One signer the policy trusts: the stack's public key (``name`` is its file), or a keyless identity."""

    name: str
    public_key: str | None = None
    identity: KeylessIdentity | None = None


@dataclass(frozen=True)
class Requirement:
    """An attestation a digest must carry, signed by a trusted signer."""

    #: How a refusal names it: ``has no SBOM attestation``.
    what: str
    #: cosign's ``--type`` (``spdxjson``, ``vuln``, or a predicate URI).
    predicate_type: str
    #: Judges the verified statements; returns why they do not satisfy the requirement (None: they do). Unset: any
    #: verified statement does.
    accept: Callable[[Sequence[Statement]], str | None] | None = field(default=None, compare=False)
    #: How long an acceptance is remembered; None: for good (what a signer signed about a digest stays true).
    max_age: timedelta | None = None


SBOM = Requirement("SBOM attestation", "spdxjson")


@dataclass(frozen=True)
class TrustPolicy:
    """Whom ``stack`` trusts and what a digest it runs must carry, read from its ``dockyard:signing``."""

    stack: str
    signers: tuple[Signer, ...]
    requirements: tuple[Requirement, ...]

    @classmethod
    def of(cls, stack: str, signing: SigningConfig, project_dir: Path) -> TrustPolicy:
        """``signing`` with its key file read; a missing key file raises :class:`TrustPolicyError`."""
        signers = []
        if signing.public_key_file is not None:
            key_file = project_dir / signing.public_key_file
            if not key_file.is_file():
                raise TrustPolicyError(f"{stack}'s trust policy names {signing.public_key_file}, which does not exist")
            signers.append(Signer(signing.public_key_file, public_key=key_file.read_text()))
        for trusted in signing.identities:
            identity = KeylessIdentity(trusted.issuer, trusted.identity, trusted.identity_regexp)
            signers.append(Signer(str(identity), identity=identity))
        return cls(stack, tuple(signers), (SBOM,) if signing.require_sbom else ())

    def document(self) -> dict[str, Any]:
        """The policy as JSON: what the program writes on the stack's namespace for the admission webhook
        (:mod:`dockyard.admission`), so the cluster enforces the same policy the program and the CLI do."""
        return {
            "stack": self.stack,
            "keys": [{"name": s.name, "publicKey": s.public_key} for s in self.signers if s.public_key is not None],
            "identities": [
                {"issuer": i.issuer, "identity": i.identity, "identityRegexp": i.identity_regexp}
                for i in (s.identity for s in self.signers)
                if i is not None
            ],
            "requireSbom": SBOM in self.requirements,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> TrustPolicy:
        """The policy :meth:`document` wrote; a malformed document raises :class:`TrustPolicyError`."""
        try:
            signers = [Signer(str(key["name"]), public_key=str(key["publicKey"])) for key in document["keys"]]
            for trusted in document["identities"]:
                identity = KeylessIdentity(trusted["issuer"], trusted.get("identity"), trusted.get("identityRegexp"))
                signers.append(Signer(str(identity), identity=identity))
            stack = str(document["stack"])
            requirements = (SBOM,) if document["requireSbom"] else ()
        except (KeyError, TypeError, ValueError) as error:
            raise TrustPolicyError(f"a malformed trust policy document ({error!r})") from None
        if not signers:
            raise TrustPolicyError(f"{stack}'s trust policy document names no signer")
        return cls(stack, tuple(signers), requirements)

    @property
    def public_key(self) -> str | None:
        return next((signer.public_key for signer in self.signers if signer.public_key is not None), None)

    @property
    def trusted(self) -> str:
        """The signers, as a refusal names them."""
        return " or ".join(signer.name for signer in self.signers)

    def fingerprint(self, image: str) -> str:
        """What an acceptance of ``image`` under this policy is remembered by: the digest, every signer (the key's
        content, not its file name) and every requirement."""
        document = {
            "image": image,
            "signers": [[s.public_key, str(s.identity) if s.identity else None] for s in self.signers],
            "requirements": [[r.predicate_type, r.what] for r in self.requirements],
        }
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()

    @property
    def max_age(self) -> timedelta | None:
        ages = [r.max_age for r in self.requirements if r.max_age is not None]
        return min(ages) if ages else None


class Verifier(Protocol):
    """What checking a digest asks of cosign (:class:`~dockyard_components.cosign.SigningTools`; fakes in tests)."""

    def verify(self, image_ref: str, *, identity: KeylessIdentity | None = None) -> None: ...

    def verify_attestation(
        self, image_ref: str, *, predicate_type: str, identity: KeylessIdentity | None = None
    ) -> list[Statement]: ...


def one_line(reason: str) -> str:
    """cosign's reason on one line: a refusal is one line of ``preview`` output."""
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    reason = next((line for line in reversed(lines) if "rror" in line), lines[-1] if lines else "no output")
    return reason if len(reason) <= 200 else reason[:197] + "..."


def signed_statements(
    tools: Verifier, policy: TrustPolicy, image: str, predicate_type: str
) -> tuple[list[Statement], list[str]]:
    """The statements of ``predicate_type`` on ``image`` that any trusted signer signed, and each signer's reason
    where none of its statements verified (cosign's whole message)."""
    statements: list[Statement] = []
    reasons: list[str] = []
    for signer in policy.signers:
        try:
            statements += tools.verify_attestation(image, predicate_type=predicate_type, identity=signer.identity)
        except ToolUnavailableError:
            raise
        except CosignError as error:
            reasons.append(str(error))
    return statements, reasons


def refusals(policy: TrustPolicy, image: str, tools: Verifier) -> list[str]:
    """Why ``policy`` refuses ``image`` (one line each); empty when it carries everything the policy asks. A tool
    that cannot answer (not installed, timed out) is a refusal that says so, never a pass."""
    try:
        return _refusals(policy, image, tools)
    except ToolUnavailableError as error:
        return [f"cannot check {image} against {policy.stack}'s trust policy: {one_line(str(error))}"]


def _refusals(policy: TrustPolicy, image: str, tools: Verifier) -> list[str]:
    reasons = []
    for signer in policy.signers:
        try:
            tools.verify(image, identity=signer.identity)
            break
        except ToolUnavailableError:
            raise
        except CosignError as error:
            reasons.append(one_line(str(error)))
    else:
        return [f"{image} carries no signature by {policy.trusted} that {policy.stack} trusts ({'; '.join(reasons)})"]
    problems = []
    for requirement in policy.requirements:
        statements, reasons = signed_statements(tools, policy, image, requirement.predicate_type)
        if not statements:
            missing = "; ".join(one_line(reason) for reason in reasons)
            problems.append(f"{image} has no {requirement.what} signed by {policy.trusted} ({missing})")
        elif requirement.accept is not None and (judged := requirement.accept(statements)) is not None:
            problems.append(f"{image}: {judged}")
    return problems


@dataclass(frozen=True)
class TrustCache:
    """Digests a policy accepted, one file each (named by :meth:`TrustPolicy.fingerprint`). Only acceptances are
    kept: a refused digest is asked again every time, so signing it later is enough."""

    directory: Path = field(default_factory=cache_directory)

    def accepted(self, policy: TrustPolicy, image: str, now: datetime | None = None) -> bool:
        path = self.directory / f"{policy.fingerprint(image)}.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        if record.get("image") != image:
            return False
        max_age = policy.max_age
        if max_age is None:
            return True
        checked = datetime.fromisoformat(record["checked"])
        return (now or datetime.now(UTC)) - checked <= max_age

    def remember(self, policy: TrustPolicy, image: str, now: datetime | None = None) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = self.directory / f"{policy.fingerprint(image)}.json"
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            checked = (now or datetime.now(UTC)).isoformat()
            partial.write_text(json.dumps({"image": image, "stack": policy.stack, "checked": checked}))
            partial.replace(path)
        except OSError:
            pass  # a cache that cannot be written only costs the next run another check


def check_images(
    policy: TrustPolicy,
    images: Mapping[str, str],
    open_tools: Callable[[], AbstractContextManager[Verifier]],
    cache: TrustCache | None = None,
) -> dict[str, list[str]]:
    """Why ``policy`` refuses each of ``images`` (what it is → image), by what it is; accepted ones are left out.
    Digests the cache holds cost nothing; cosign runs (once per distinct digest) only for the others."""
    cache = cache if cache is not None else TrustCache()
    unknown = sorted({image for image in images.values() if not cache.accepted(policy, image)})
    found: dict[str, list[str]] = {}
    if unknown:
        with open_tools() as tools:
            for image in unknown:
                found[image] = refusals(policy, image, tools)
                if not found[image]:
                    cache.remember(policy, image)
    return {what: found[image] for what, image in images.items() if found.get(image)}


def registry_tools(
    registry_host: str, credentials: RegistryCredentials, policy: TrustPolicy | None = None, **keys: str | None
) -> SigningTools:
    """syft and cosign logged in to a stack's registry with ``credentials``, holding the policy's key (if any) or
    ``keys`` (``public_key``, ``private_key``, ``key_password``)."""
    public_key = keys.pop("public_key", None) or (policy.public_key if policy is not None else None)
    return SigningTools(
        registry_server=registry_host,
        username=credentials.username,
        password=credentials.password,
        ca_file=credentials.ca_file,
        public_key=public_key,
        private_key=keys.get("private_key"),
        key_password=keys.get("key_password"),
    )
