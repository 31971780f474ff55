"""What a stack's namespace tells the admission webhook: the stack's trust policy, and the CA its registry's TLS
chains to (public: it lets the webhook read signatures, it cannot make one verify), as one JSON annotation."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dockyard.model.trust import TrustPolicy, TrustPolicyError
from dockyard_components.k8s_specs import TRUST_POLICY_ANNOTATION


@dataclass(frozen=True)
class NamespacePolicy:
    """The trust policy a namespace's Pods must meet, and the CA of its registry (PEM, or None: the system's)."""

    policy: TrustPolicy
    registry_ca: str | None = None

    def annotation(self) -> str:
        """The annotation's value (sorted keys: the same policy is the same text, so no spurious diff)."""
        return json.dumps({"policy": self.policy.document(), "registryCa": self.registry_ca}, sort_keys=True)

    @classmethod
    def of(cls, policy: TrustPolicy, ca_bundle: str | None) -> NamespacePolicy:
        """``policy`` with the CA file ``ca_bundle`` names read (an unreadable file: the system's CAs)."""
        try:
            registry_ca = Path(ca_bundle).read_text() if ca_bundle else None
        except OSError:
            registry_ca = None
        return cls(policy, registry_ca)

    @classmethod
    def read(cls, annotations: Mapping[str, str] | None) -> NamespacePolicy | None:
        """The policy a namespace's annotations carry; None when it carries none. A malformed annotation raises
        :class:`~dockyard.model.trust.TrustPolicyError`: a namespace that asks for admission and cannot say what it
        trusts admits nothing."""
        text = (annotations or {}).get(TRUST_POLICY_ANNOTATION)
        if text is None:
            return None
        try:
            document = json.loads(text)
            registry_ca = document.get("registryCa")
            policy = TrustPolicy.from_document(document["policy"])
        except (ValueError, KeyError, AttributeError) as error:
            raise TrustPolicyError(f"{TRUST_POLICY_ANNOTATION} is malformed ({error})") from None
        return cls(policy, registry_ca if isinstance(registry_ca, str) else None)
