"""Retention: which digests of a stack repository stay, and why. One pure function of the facts, :func:`judge`.

A digest stays when any of these references it: a stack's config (any track: stable, canary, a color), what a stack
serves (its last update's ``image_ref``: a building stack's release is named nowhere else), a stack's history within
``keep_days`` (the image each update named, served, and replaced: what a rollback may go back to), or a release tag
(``1.2.3``, ``1.2``, ``1``: :func:`~dockyard_components.tags.is_release_tag`). An unreferenced digest built within
``keep_days`` stays too: it may be a build whose ``up`` is still running, or one a pipeline is about to promote, and
nothing names it yet. A digest whose age cannot be read (an image config without ``created``) stays: an unknown age
is no reason to delete. Everything else is deleted, with its ``sha256-<hex>.*`` tags (cosign's ``.sig``/``.att``,
syft's ``.sbom``, the referrers fallback): they belong to their digest and are judged with it, never on their own.

The facts (tags, build times, references) are fetched by :mod:`dockyard.releases.prune`; judging them here needs no
registry, engine or clock, so every reason to keep or delete is unit-tested on plain values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dockyard_components.tags import is_release_tag

#: A tag that belongs to a digest: ``sha256-<hex>`` alone (OCI's referrers fallback) or with a suffix (``.sig``…).
_ATTACHED = re.compile(r"^sha256-(?P<hex>[0-9a-f]{64})(\..+)?$")


def subject_of(tag: str) -> str | None:
    """The digest ``tag`` belongs to (``sha256-<hex>.sig`` → ``sha256:<hex>``); None for a tag of its own."""
    found = _ATTACHED.match(tag)
    return f"sha256:{found['hex']}" if found else None


@dataclass(frozen=True)
class Listing:
    """What a repository holds: its own tags and the tags attached to digests, and each digest's build time."""

    repository: str
    #: Each tag of its own (not ``sha256-…``) → the digest it names.
    tags: Mapping[str, str]
    #: Every ``sha256-<hex>…`` tag.
    attached: tuple[str, ...] = ()
    #: Each digest the registry still holds → when it was built (None: the image does not say). A digest named only
    #: by attached tags that is missing here is gone: only its signatures are left.
    created: Mapping[str, datetime | None] = field(default_factory=dict)

    @property
    def digests(self) -> list[str]:
        """Every digest the repository's tags name or belong to."""
        attached = (subject_of(tag) for tag in self.attached)
        return sorted({*self.tags.values(), *(digest for digest in attached if digest)})


@dataclass(frozen=True)
class Reference:
    """An image something names (``registry/repo@sha256:…``), and who names it, as a kept digest says why."""

    image: str
    why: str

    @property
    def repository(self) -> str:
        return self.image.split("@", 1)[0]

    @property
    def digest(self) -> str:
        return self.image.split("@", 1)[1] if "@" in self.image else ""


@dataclass(frozen=True)
class Verdict:
    """What happens to one digest of a repository, and why."""

    repository: str
    digest: str
    keep: bool
    reasons: tuple[str, ...]
    #: Its own tags (they go with it) and its attached tags (deleted first when it is).
    tags: tuple[str, ...] = ()
    attached: tuple[str, ...] = ()


def _age(delta: timedelta) -> str:
    days = delta.days
    return f"{days} day{'s' if days != 1 else ''}" if days else f"{int(delta.total_seconds() // 3600)} h"


def judge(listing: Listing, references: Iterable[Reference], now: datetime, keep_days: int) -> list[Verdict]:
    """Every digest of ``listing``: kept, with every reason, or deleted, with the reason (``references`` of other
    repositories do not count: a copy elsewhere does not keep this one)."""
    named: dict[str, list[str]] = {}
    for reference in references:
        if reference.repository == listing.repository:
            named.setdefault(reference.digest, []).append(reference.why)
    verdicts = []
    for digest in listing.digests:
        tags = tuple(sorted(tag for tag, named_digest in listing.tags.items() if named_digest == digest))
        attached = tuple(sorted(tag for tag in listing.attached if subject_of(tag) == digest))
        reasons = list(dict.fromkeys(named.get(digest, [])))
        reasons += [f"release tag {tag}" for tag in tags if is_release_tag(tag)]
        keep, why = _keep(listing, digest, now, keep_days) if not reasons else (True, reasons)
        verdicts.append(Verdict(listing.repository, digest, keep, tuple(why), tags, attached))
    return verdicts


def _keep(listing: Listing, digest: str, now: datetime, keep_days: int) -> tuple[bool, list[str]]:
    """An unreferenced digest: kept while young or of unknown age; deleted when old, or when only its signatures are
    left."""
    if digest not in listing.created:
        return False, ["the image is gone; only its attached tags are left"]
    created = listing.created[digest]
    if created is None:
        return True, ["unreferenced, but its build time is unknown"]
    age = now - created
    if age < timedelta(days=keep_days):
        return True, [f"unreferenced, built {_age(age)} ago (within --keep-days {keep_days})"]
    return False, [f"unreferenced, built {_age(age)} ago (over --keep-days {keep_days})"]
