"""Promotion gates as pure functions: each returns the reasons to refuse (empty when the gate passes)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from components.config import EnvironmentConfig, Tier
from components.image_ref import ImageReferenceError, parse_image_reference
from dockyard.records import Verification


def order_problems(source: str, target: str, target_env: EnvironmentConfig) -> list[str]:
    upstream = target_env.promotion.upstream
    if upstream is None:
        return [f"{target} accepts no promotions (dockyard:promotion.upstream is not set)"]
    if upstream != source:
        return [f"{target} accepts releases from {upstream} only, not from {source}"]
    return []


def freeze_problems(target: str, target_env: EnvironmentConfig, now: datetime) -> list[str]:
    return [
        f"{target} is frozen from {w.start.isoformat()} to {w.end.isoformat()} ({w.reason})"
        for w in target_env.promotion.freeze_windows
        if w.start <= now < w.end
    ]


def soak_problems(source: str, target_env: EnvironmentConfig, deployed_at: datetime | None, now: datetime) -> list[str]:
    required = timedelta(minutes=target_env.promotion.soak_minutes)
    if not required:
        return []
    if deployed_at is None:
        return [f"{source} has no completed deployment to soak"]
    # The Automation API reports naive UTC times.
    if deployed_at.tzinfo is None:
        deployed_at = deployed_at.replace(tzinfo=UTC)
    soaked = now - deployed_at
    if soaked < required:
        remaining = math.ceil((required - soaked).total_seconds() / 60)
        return [
            f"{source} has soaked {int(soaked.total_seconds() // 60)} min of {target_env.promotion.soak_minutes}; wait {remaining} min"
        ]
    return []


def source_update_problems(source: str, last_result: str | None) -> list[str]:
    if last_result is None:
        return [f"{source} has never been deployed"]
    if last_result != "succeeded":
        return [f"{source}'s last update {last_result}; promote only what deployed successfully"]
    return []


def image_problems(source: str, image_ref: str | None) -> list[str]:
    if not image_ref:
        return [f"{source} has no image_ref output (run pulumi up --stack {source} first)"]
    try:
        reference = parse_image_reference(image_ref)
    except ImageReferenceError as error:
        return [f"{source}'s image_ref: {error}"]
    if not reference.is_digest_pinned:
        return [f"{source}'s image_ref {image_ref} is not digest-pinned"]
    return []


#: Tiers that take only releases whose digest passed ``dockyard verify`` on the source stack.
VERIFIED_TIERS = (Tier.STAGING, Tier.PROD)


def requires_verification(target_env: EnvironmentConfig) -> bool:
    return target_env.tier in VERIFIED_TIERS


def verification_problems(
    source: str, target: str, target_env: EnvironmentConfig, image_ref: str, last: Verification | None
) -> list[str]:
    """Staging and prod take a digest only when its newest verification on ``source`` passed."""
    if not requires_verification(target_env):
        return []
    digest = image_ref.rsplit("@", 1)[-1]
    if last is None:
        return [
            f"{target} (tier {target_env.tier}) takes verified releases only: {source}'s {digest} has never been "
            f"verified (dockyard verify --stack {source})"
        ]
    if not last.passed:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in last.failed_checks) or "no check passed"
        return [
            f"{target} (tier {target_env.tier}) takes verified releases only: {source}'s {digest} failed "
            f"verification at {last.at.isoformat(timespec='seconds')} ({failed})"
        ]
    return []
