"""What the three ways of looking share: the verifier's error type."""

from __future__ import annotations

from dockyard.releases.errors import DockyardError


class VerifierError(DockyardError):
    """The verifier cannot look (no image_ref output, no kubeconfig, an unreachable cluster, a refused login)."""
