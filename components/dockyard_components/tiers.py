"""Environment tiers: how strict the rules are for a stack."""

from __future__ import annotations

from enum import StrEnum


class Tier(StrEnum):
    """How strict the rules are: only ``dev`` builds; ``qa``, ``staging`` and ``prod`` deploy promoted digests."""

    DEV = "dev"
    QA = "qa"
    STAGING = "staging"
    PROD = "prod"

    @property
    def promoted_only(self) -> bool:
        """Deploys only promoted, digest-pinned images (and takes verified releases only, unless config says not)."""
        return self is not Tier.DEV

    @property
    def rank(self) -> int:
        """Position in the usual chain dev → qa → staging → prod."""
        return list(Tier).index(self)
