"""Parsing of container image references (``registry/repository[:tag][@sha256:digest]``).

The grammar follows the distribution project's reference grammar closely enough to reject what a registry
would reject: lower-case path components, a tag of at most 128 characters, a sha256 digest of 64 hex digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"sha256:[a-f0-9]{64}"

_REFERENCE = re.compile(
    rf"^(?:(?P<registry>{_DOMAIN})/)?(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_DIGEST_ONLY = re.compile(rf"^{_DIGEST}$")


class ImageReferenceError(ValueError):
    """An image reference that a registry would not accept."""


@dataclass(frozen=True)
class ImageReference:
    """A parsed image reference. ``registry`` is empty when the reference names none (Docker Hub)."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def is_digest_pinned(self) -> bool:
        return self.digest is not None

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def pinned(self) -> str:
        """The immutable form ``registry/repository@sha256:...``; only valid for digest-pinned references."""
        if self.digest is None:
            raise ImageReferenceError(f"{self} is not pinned to a digest")
        return f"{self.name}@{self.digest}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_image_reference(text: str) -> ImageReference:
    """Parse ``text``; raise :class:`ImageReferenceError` with the rule it breaks."""
    match = _REFERENCE.match(text)
    if match is None:
        raise ImageReferenceError(
            f"{text!r} is not an image reference; expected registry/repository[:tag][@sha256:<64 hex digits>] "
            "with a lower-case repository"
        )
    registry = match["registry"] or ""
    # "host/name" is ambiguous: the first part is a registry only when it looks like a host.
    if registry and not ("." in registry or ":" in registry or registry == "localhost"):
        return ImageReference("", f"{registry}/{match['repository']}", match["tag"], match["digest"])
    return ImageReference(registry, match["repository"], match["tag"], match["digest"])


def is_digest(text: str) -> bool:
    return _DIGEST_ONLY.match(text) is not None


def short_image(image: str) -> str:
    """``sha256:`` and the first 12 hex digits of a digest-pinned reference; any other reference as it is."""
    digest = image.rsplit("@", 1)[-1]
    return digest[:19] if digest.startswith("sha256:") else image
