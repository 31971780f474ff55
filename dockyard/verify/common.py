"""What the three ways of looking share: the verifier's error type and how a checked image is shown."""

from __future__ import annotations

from dockyard.promotion import DockyardError


class VerifierError(DockyardError):
    """The verifier cannot look (no image_ref output, no kubeconfig, an unreachable cluster, a refused login)."""


def short_image(image: str) -> str:
    """``sha256:`` and the first 12 hex digits of a digest-pinned reference; any other reference as it is."""
    digest = image.rsplit("@", 1)[-1]
    return digest[:19] if digest.startswith("sha256:") else image
