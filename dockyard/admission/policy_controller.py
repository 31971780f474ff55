"""What guards a real cluster: a sigstore policy-controller ``ClusterImagePolicy`` written from a stack's trust
policy, the same source the program, the CLI and the local webhook read.

policy-controller runs in-cluster behind a Service, which the local kwok nodes cannot serve, so locally Dockyard's own
webhook stands in (:mod:`dockyard.admission.server`). The policy names the stack's image repository (any tag or
digest of it), one authority per trusted signer, and the SBOM attestation each must also have signed when the policy
requires one. policy-controller admits an image only when every policy matching it passes, so stacks sharing a
repository get the stricter union.
"""

from __future__ import annotations

from typing import Any

from dockyard.model.trust import SBOM, TrustPolicy

#: The policy-controller release whose CRD these objects are written for (tests validate against its schema).
POLICY_CONTROLLER_VERSION = "v0.13.1"
#: Where keyless certificates come from (sigstore's public good instance; CI's OIDC token gets one).
FULCIO_URL = "https://fulcio.sigstore.dev"
#: policy-controller only enforces in namespaces with this label.
INCLUDE_LABEL = "policy.sigstore.dev/include"


def cluster_image_policy(policy: TrustPolicy, repository: str) -> dict[str, Any]:
    """The ``ClusterImagePolicy`` that admits images of ``repository`` (registry/repository) only as ``policy`` does."""
    attestations = [{"name": "sbom", "predicateType": SBOM.predicate_type}] if SBOM in policy.requirements else []
    authorities: list[dict[str, Any]] = []
    for index, signer in enumerate(policy.signers, start=1):
        authority: dict[str, Any] = {"name": f"signer-{index}"}
        if signer.public_key is not None:
            authority["key"] = {"data": signer.public_key, "hashAlgorithm": "sha256"}
        elif signer.identity is not None:
            identity = signer.identity
            subject = (
                {"subject": identity.identity}
                if identity.identity is not None
                else {"subjectRegExp": identity.identity_regexp}
            )
            authority["keyless"] = {"url": FULCIO_URL, "identities": [{"issuer": identity.issuer, **subject}]}
        if attestations:
            authority["attestations"] = attestations
        authorities.append(authority)
    return {
        "apiVersion": "policy.sigstore.dev/v1beta1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": f"dockyard-{policy.stack}", "labels": {"app.kubernetes.io/managed-by": "dockyard"}},
        # Pinned or not: an image of the repository by tag must meet the policy too (it cannot, unsigned by tag).
        "spec": {"images": [{"glob": f"{repository}*"}], "authorities": authorities, "mode": "enforce"},
    }
