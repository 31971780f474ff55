"""Image tags and OCI label values from git facts: short commit sha, semver from a ``v*`` tag, branch name.

Tags are for people; deployments always use the digest. The function is pure so every rule is unit-tested.
"""

# No `from __future__ import annotations`: BuildMetadata is part of AppImage's schema (see image.py).

import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypedDict

import semver

_TAG_FORBIDDEN = re.compile(r"[^A-Za-z0-9_.-]+")
SHORT_SHA_LENGTH = 7


@dataclass(frozen=True)
class GitFacts:
    """What the tag strategy needs to know about the checkout being built."""

    commit: str
    branch: str | None = None
    tag: str | None = None
    committed_at: str | None = None
    dirty: bool = False


def _sanitize(branch: str) -> str:
    # Docker tags allow [A-Za-z0-9_.-], start with a word character, at most 128 characters.
    cleaned = _TAG_FORBIDDEN.sub("-", branch).strip(".-")
    return cleaned[:128] or "branch"


def image_tags(facts: GitFacts) -> list[str]:
    """Tags for one build, most specific first, without duplicates.

    - ``sha-<7 hex>`` always;
    - for a ``v*`` git tag that is valid semver: ``1.2.3``, ``1.2``, ``1`` (pre-releases get only the full version);
    - the sanitized branch name, when building a branch.
    """
    if not re.fullmatch(r"[0-9a-f]{7,40}", facts.commit):
        raise ValueError(f"commit {facts.commit!r} is not a hex git object id")
    tags = [f"sha-{facts.commit[:SHORT_SHA_LENGTH]}"]
    if facts.tag and facts.tag.startswith("v"):
        try:
            version = semver.Version.parse(facts.tag[1:])
        except ValueError:
            version = None
        if version is not None:
            tags.append(str(version))
            if not version.prerelease:
                tags += [f"{version.major}.{version.minor}", f"{version.major}"]
    if facts.branch:
        tags.append(_sanitize(facts.branch))
    return list(dict.fromkeys(tags))


def is_release_tag(tag: str) -> bool:
    """A tag :func:`image_tags` gives a release: ``1.2.3`` (a pre-release too), ``1.2`` or ``1``; never ``sha-…`` or
    a branch's."""
    try:
        semver.Version.parse(tag)
        return True
    except ValueError:
        parts = tag.split(".")
        return len(parts) <= 2 and all(part.isdigit() and str(int(part)) == part for part in parts)


def read_git_facts(directory: Path) -> GitFacts | None:
    """Facts about the last commit that touched ``directory``; ``None`` outside a git checkout.

    Using the last commit of the build context (not HEAD) keeps tags and labels stable when only other files
    change, so an unrelated commit causes no rebuild.
    """

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(
                ["git", "-C", str(directory), *args], capture_output=True, text=True, check=False, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return (result.stdout.strip() or None) if result.returncode == 0 else None

    commit = git("log", "-1", "--format=%H", "--", ".")
    if commit is None:
        return None
    return GitFacts(
        commit=commit,
        branch=git("symbolic-ref", "--short", "-q", "HEAD"),
        tag=git("describe", "--tags", "--exact-match", "--match", "v*", commit),
        committed_at=git("show", "-s", "--format=%cI", commit),
        dirty=git("status", "--porcelain", "--", ".") is not None,
    )


class BuildMetadata(TypedDict):
    """Facts baked into the image as OCI labels (``org.opencontainers.image.*``) and the matching build args."""

    created: str
    """Build time, RFC 3339; derived from the commit, never the clock, so rebuilding the same sources is no diff."""
    revision: str
    """VCS revision (commit sha, ``-dirty`` when uncommitted changes were built)."""
    version: str
    """Release version (semver)."""
    source: str
    """URL of the source repository."""


def source_date_epoch(created: str) -> int:
    """``created`` (RFC 3339, the commit's time) as SOURCE_DATE_EPOCH: seconds since the epoch, for
    ``podman build --timestamp``."""
    return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())


def metadata_build_args(metadata: BuildMetadata) -> dict[str, str]:
    """The build args the Dockerfile turns into its labels and ``/version`` answer."""
    return {
        "BUILD_DATE": metadata["created"],
        "VCS_REF": metadata["revision"],
        "VERSION": metadata["version"],
        "SOURCE": metadata["source"],
    }


def metadata_labels(metadata: BuildMetadata) -> dict[str, str]:
    return {
        "org.opencontainers.image.created": metadata["created"],
        "org.opencontainers.image.revision": metadata["revision"],
        "org.opencontainers.image.version": metadata["version"],
        "org.opencontainers.image.source": metadata["source"],
    }


def release_identity(facts: GitFacts | None, sources_hash: str, source: str) -> tuple[list[str], BuildMetadata]:
    """Tags and label values for a build of sources hashing to ``sources_hash``.

    Everything is derived from the sources, never from the clock, so building the same sources twice gives the
    same inputs (no diff, no rebuild). Uncommitted changes get a ``-dirty-<hash>`` tag so a tag never moves.
    """
    if facts is None:
        short = sources_hash[:12]
        return [f"src-{short}"], BuildMetadata(
            created="1970-01-01T00:00:00Z",
            revision=f"src-{short}",
            version=f"0.0.0+src.{short}",
            source=source,
        )
    tags = image_tags(facts)
    revision = facts.commit
    if facts.dirty:
        revision = f"{facts.commit}-dirty"
        tags = [f"{tags[0]}-dirty-{sources_hash[:8]}"]
    version = tags[1] if facts.tag and len(tags) > 1 and not facts.dirty else f"0.0.0+{tags[0]}"
    created = facts.committed_at or "1970-01-01T00:00:00Z"
    return tags, BuildMetadata(created=created, revision=revision, version=version, source=source)
