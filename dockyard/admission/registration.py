"""The ``ValidatingWebhookConfiguration`` that sends Pods and pod templates of enforced namespaces to the webhook.

Two webhooks, one per failure policy, chosen by the namespace's tier label: a prod-tier namespace fails closed
(the API server refuses what it cannot have checked), the others fail open (a webhook outage does not stop dev and
staging). Break-glass: ``kubectl label namespace NS dockyard.dev/break-glass=<ticket>`` takes that namespace out of
admission until the label is removed (the label needs rights on Namespaces, i.e. a cluster admin).
"""

from __future__ import annotations

import base64
from typing import Any

from dockyard_components.k8s_specs import ADMISSION_ENFORCED, ADMISSION_LABEL, TIER_LABEL

NAME = "dockyard-trust-policy"
BREAK_GLASS_LABEL = "dockyard.dev/break-glass"
FAIL_CLOSED_TIERS = ("prod",)
#: The API server's wait for an answer, its maximum: a digest seen for the first time costs a few cosign calls
#: against the registry, which took up to 17 s on this machine under a full CI's load (0.7 s when quiet).
TIMEOUT_SECONDS = 30

_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]},
    {"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments", "replicasets", "statefulsets"]},
    {"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["daemonsets"]},
    {"apiGroups": ["batch"], "apiVersions": ["v1"], "resources": ["jobs", "cronjobs"]},
]


def webhook_configuration(
    url: str, ca_pem: str, *, name: str = NAME, only_labelled: dict[str, str] | None = None
) -> dict[str, Any]:
    """The configuration for a webhook at ``url`` whose certificate chains to ``ca_pem``. ``only_labelled`` narrows
    it to namespaces with those labels too (a test's own registration, beside the cluster's)."""
    extra = [{"key": key, "operator": "In", "values": [value]} for key, value in (only_labelled or {}).items()]

    def webhook(failure: str, tier_operator: str) -> dict[str, Any]:
        return {
            "name": f"{'fail-closed' if failure == 'Fail' else 'fail-open'}.{name}.dockyard.dev",
            "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem.encode()).decode()},
            "rules": [{**rule, "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"} for rule in _RULES],
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": ADMISSION_LABEL, "operator": "In", "values": [ADMISSION_ENFORCED]},
                    {"key": TIER_LABEL, "operator": tier_operator, "values": list(FAIL_CLOSED_TIERS)},
                    {"key": BREAK_GLASS_LABEL, "operator": "DoesNotExist"},
                    *extra,
                ]
            },
            "failurePolicy": failure,
            "matchPolicy": "Equivalent",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": TIMEOUT_SECONDS,
        }

    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "dockyard"}},
        "webhooks": [webhook("Fail", "In"), webhook("Ignore", "NotIn")],
    }
