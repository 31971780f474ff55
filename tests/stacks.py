"""Helpers to read the committed ``Pulumi.<stack>.yaml`` files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dockyard.model.config import SECRET_KEYS, read_stack_file

PROJECT = Path(__file__).resolve().parent.parent
STACKS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in PROJECT.glob("Pulumi.*.yaml"))


def stack_config(stack: str) -> dict[str, Any]:
    """The plaintext config keys of a committed stack file, namespaced (``dockyard:tier``).

    Encrypted keys are left out: only the engine can decrypt them (the engine tests cover them).
    """
    document = yaml.safe_load((PROJECT / f"Pulumi.{stack}.yaml").read_text())
    return {
        key: value
        for key, value in (document.get("config") or {}).items()
        if key.removeprefix("dockyard:") not in SECRET_KEYS
    }


def dockyard_document(stack: str) -> dict[str, Any]:
    """The ``dockyard:`` keys without their namespace, as ``parse_environment`` takes them."""
    return read_stack_file(PROJECT / f"Pulumi.{stack}.yaml")
