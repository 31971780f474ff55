"""Offline validation of Kubernetes manifests against the OpenAPI schemas of one named Kubernetes version."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

#: The Kubernetes version every manifest is validated against (schemas ship with kubernetes-validate).
KUBERNETES_VERSION = "1.34.0"


def schema_errors(manifest: dict[str, Any]) -> list[str]:
    """Problems of one manifest under strict validation (unknown fields are errors); empty when valid."""
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = "/".join(str(p) for p in error.path)
        return [f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}: {where}: {error.message}"]
    return []
