"""Release gates: one pure function of the facts, :func:`evaluate`, returning every reason to refuse at once.

The facts of a promotion (the source's output and last update, the registry's answer, the newest verification) or of
a rollback (the registry's answer and the trust policy's for the image it goes back to) are fetched first, by
:mod:`dockyard.releases.moves`; judging them here needs no engine, no registry and no clock, so every refusal is
unit-tested on plain values. A rule both moves share (the registry holds the image, the trust policy accepts it)
reads the same facts of both, so it refuses both in the same words.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from dockyard.model.config import EnvironmentConfig
from dockyard.releases.ledger import Verification
from dockyard_components.image_ref import ImageReferenceError, parse_image_reference


@dataclass(frozen=True)
class RegistryAnswer:
    """Whether an image exists in a stack's registry; ``problem`` when the registry could not be asked."""

    exists: bool | None
    problem: str | None = None


@dataclass(frozen=True)
class CopyAnswer:
    """The source's digest copied into a target that has its own registry: the copy's reference, or why not."""

    reference: str | None
    problem: str | None = None


@dataclass(frozen=True)
class PromotionFacts:
    """Everything the gates judge about promoting ``source``'s release into ``target``."""

    source: str
    target: str
    target_env: EnvironmentConfig
    now: datetime
    #: The source's ``image_ref`` output.
    image: str | None
    #: Result and end of the source's newest update (None: never deployed).
    last_result: str | None
    last_deployed: datetime | None
    #: The target registry's answer for ``image`` (None when the image was not worth asking about).
    registry: RegistryAnswer | None
    #: The newest verification of ``image`` on the source: from the registry's attestations that the target's trusted
    #: key signed when the target has a trust policy, else from the ledger.
    verification: Verification | None
    #: What verifying ``image``'s signature and SBOM attestation with the target's trusted key found (one line per
    #: refusal; empty: trusted; None: not asked, because the target has no trust policy or the image is unusable).
    signature: list[str] | None = None
    #: Why the source's verification attestations could not be read (None: read, or not asked).
    verification_problem: str | None = None
    #: What re-scanning ``image`` against the target's current vulnerability DB found (one line per refusal: the
    #: findings, or the scanner unavailable; empty: clean; None: not asked: the target requires no scan, or the
    #: image is unusable).
    vulnerabilities: list[str] | None = None
    #: The copy of ``image`` into the target's own registry (None: the target pulls from the source's repository; no
    #: reference and no problem: a gate before the copy refused, so none was made). ``registry``, ``signature``,
    #: ``vulnerabilities`` and ``verification`` are then about the copy.
    copy: CopyAnswer | None = None

    @property
    def rules(self) -> tuple[Rule, ...]:
        return RULES

    @property
    def arriving(self) -> str | None:
        """The reference the target receives: the copy in its registry, else the source's ``image``."""
        return self.copy.reference if self.copy is not None else self.image


@dataclass(frozen=True)
class RollbackFacts:
    """Everything the gates judge about rolling ``target`` back to ``image``."""

    target: str
    target_env: EnvironmentConfig
    image: str
    #: The target registry's answer for ``image``.
    registry: RegistryAnswer | None
    #: What the target's trust policy found (None: not asked: no policy, or the registry already refused).
    signature: list[str] | None = None

    @property
    def rules(self) -> tuple[Callable[[RollbackFacts], list[str]], ...]:
        return ROLLBACK_RULES

    @property
    def arriving(self) -> str | None:
        return self.image


class Arrival(Protocol):
    """The facts every move that puts a digest into a stack has: the stack, its config, the image it receives
    (``arriving``: a promotion's copy in the target's own registry), and what its registry and trust policy said of
    that image."""

    @property
    def target(self) -> str: ...

    @property
    def target_env(self) -> EnvironmentConfig: ...

    @property
    def arriving(self) -> str | None: ...

    @property
    def registry(self) -> RegistryAnswer | None: ...

    @property
    def signature(self) -> list[str] | None: ...


Rule = Callable[[PromotionFacts], list[str]]


def order(facts: PromotionFacts) -> list[str]:
    upstream = facts.target_env.promotion.upstream
    if upstream is None:
        return [f"{facts.target} accepts no promotions (dockyard:promotion.upstream is not set)"]
    if upstream != facts.source:
        return [f"{facts.target} accepts releases from {upstream} only, not from {facts.source}"]
    return []


def freeze(facts: PromotionFacts) -> list[str]:
    return [
        f"{facts.target} is frozen from {w.start.isoformat()} to {w.end.isoformat()} ({w.reason})"
        for w in facts.target_env.promotion.freeze_windows
        if w.start <= facts.now < w.end
    ]


def source_update(facts: PromotionFacts) -> list[str]:
    if facts.last_result is None:
        return [f"{facts.source} has never been deployed"]
    if facts.last_result != "succeeded":
        return [f"{facts.source}'s last update {facts.last_result}; promote only what deployed successfully"]
    return []


def soak(facts: PromotionFacts) -> list[str]:
    minutes = facts.target_env.promotion.soak_minutes
    if not minutes or facts.last_result is None:  # never deployed: source_update says so
        return []
    if facts.last_deployed is None:
        return [f"{facts.source} has no completed deployment to soak"]
    deployed = facts.last_deployed
    # A time without a zone is UTC, as the engine reports update times.
    soaked = facts.now - (deployed.replace(tzinfo=UTC) if deployed.tzinfo is None else deployed)
    required = timedelta(minutes=minutes)
    if soaked < required:
        remaining = math.ceil((required - soaked).total_seconds() / 60)
        return [f"{facts.source} has soaked {int(soaked.total_seconds() // 60)} min of {minutes}; wait {remaining} min"]
    return []


def pinned_image(facts: PromotionFacts) -> list[str]:
    return image_problems(facts.source, facts.image)


def image_problems(source: str, image: str | None) -> list[str]:
    """The source serves a digest-pinned image (what promotion may copy)."""
    if not image:
        return [
            f"{source} serves no release: it has no image_ref output (promote one into it, or run pulumi up --stack {source})"
        ]
    try:
        reference = parse_image_reference(image)
    except ImageReferenceError as error:
        return [f"{source}'s image_ref: {error}"]
    if not reference.is_digest_pinned:
        return [f"{source}'s image_ref {image} is not digest-pinned"]
    return []


def in_registry(facts: Arrival) -> list[str]:
    """The target's registry holds the image (promotion and rollback both move only to what the cluster can pull)."""
    answer = facts.registry
    if facts.arriving is None or answer is None:
        return []
    if answer.problem is not None:
        return [f"cannot check {facts.target}'s registry: {answer.problem}"]
    if answer.exists is False:
        return [f"{facts.arriving} does not exist in {facts.target}'s registry {facts.target_env.registry.host}"]
    return []


def copied(facts: PromotionFacts) -> list[str]:
    """A target with its own registry receives the digest there first (:mod:`dockyard.releases.arrival`)."""
    return [facts.copy.problem] if facts.copy is not None and facts.copy.problem is not None else []


def verified(facts: PromotionFacts) -> list[str]:
    """Targets that take verified releases only (qa, staging, prod by default) need the digest's newest
    verification on the source to have passed."""
    env = facts.target_env
    # No image, or no copy of it in the target's registry: nothing was asked (the gates before say why).
    if not env.requires_verified_releases or not facts.image or not facts.arriving or pinned_image(facts):
        return []
    digest = facts.image.rsplit("@", 1)[-1]
    why = f"{facts.target} (tier {env.tier}) takes verified releases only"
    if facts.verification_problem is not None:
        return [f"{why}: cannot read {facts.source}'s verification of {digest}: {facts.verification_problem}"]
    last = facts.verification
    if last is None:
        where = " with a verification attestation signed by a key or identity it trusts" if env.signing else ""
        return [
            f"{why}: {facts.source}'s {digest} has never been verified{where} (dockyard verify --stack {facts.source})"
        ]
    if not last.passed:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in last.failed_checks) or "no check passed"
        return [
            f"{why}: {facts.source}'s {digest} failed verification at {last.at.isoformat(timespec='seconds')} "
            f"({failed})"
        ]
    return []


def target_ready(facts: PromotionFacts) -> list[str]:
    """A release still in progress on the target (a canary) is finished or aborted before the next one starts."""
    return facts.target_env.kubernetes.strategy.unfinished(facts.target)


def trusted(facts: Arrival) -> list[str]:
    """A target with ``dockyard:signing`` takes only digests signed (and SBOM-attested) by a signer it trusts."""
    if not facts.signature:
        return []
    return [f"{facts.target}'s trust policy refuses it: {problem}" for problem in facts.signature]


def scanned(facts: PromotionFacts) -> list[str]:
    """A target with ``dockyard:signing.scan`` takes only digests that pass a scan against its DB as it is now."""
    return [
        f"{facts.target} requires a passing vulnerability scan: {problem}" for problem in facts.vulnerabilities or []
    ]


#: The gates that judge the source and the calendar: a promotion they refuse copies nothing into the target's registry.
BEFORE_COPY: tuple[Rule, ...] = (order, freeze, source_update, soak, pinned_image)
#: Every gate of a promotion, in the order its refusals are listed.
RULES: tuple[Rule, ...] = (
    order,
    freeze,
    source_update,
    soak,
    pinned_image,
    copied,
    in_registry,
    trusted,
    scanned,
    verified,
    target_ready,
)


def stale_file(stack: str, file_serves: str | None, stack_serves: str | None, *, builds: bool = False) -> list[str]:
    """A move writes onto the stack file as checked out: if that file does not name the release the stack serves
    (its ``image_ref`` output, from its last update), it is an older commit's (a pipeline's checkout from before the
    promotions committed since, say), and applying it would put an old stable track or the other color back, or
    take the served release away (a file from before the first release). A building stack's file names no release."""
    if stack_serves is None or file_serves == stack_serves or (file_serves is None and builds):
        return []
    serves = file_serves or "no release"
    return [
        f"Pulumi.{stack}.yaml serves {serves} but {stack} serves {stack_serves} (its last update): the stack "
        "file is stale; move from the default branch's file, where each promotion is committed"
    ]


#: The gates of a rollback: it moves only to what the cluster can pull and the stack's trust policy accepts.
ROLLBACK_RULES: tuple[Callable[[RollbackFacts], list[str]], ...] = (in_registry, trusted)

Facts = TypeVar("Facts", PromotionFacts, RollbackFacts)


def evaluate(facts: Facts, rules: tuple[Callable[[Facts], list[str]], ...] | None = None) -> list[str]:
    """Every reason to refuse the move (empty: it may go ahead); ``rules``: only those of its gates."""
    return [problem for rule in (facts.rules if rules is None else rules) for problem in rule(facts)]
