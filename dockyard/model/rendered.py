"""The objects render mode wrote: every YAML document under a stack's render directory.

Read by the verifier (the Deployments must pin the stack's images) and by ``dockyard chart`` (the chart's templates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def rendered_objects(directory: Path) -> list[dict[str, Any]]:
    """Every object under ``directory`` (``**/*.yaml``, in path order), as the Kubernetes provider wrote it."""
    return [
        document
        for path in sorted(directory.rglob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if isinstance(document, dict)
    ]
