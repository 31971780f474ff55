"""One stack as a command sees it: its ``Pulumi.<stack>.yaml`` read once, validated, and resolved on demand.

A command reads each stack it touches once (:meth:`StackView.read`) and hands the view to whatever needs the stack's
config, its registry credentials or the image it serves; a move that changes the file gives the next view
(:meth:`StackView.after`) without reading the file again.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from dockyard.model.config import NAMESPACE, EnvironmentConfig, parse_environment, plaintext_keys, stack_document
from dockyard.model.credentials import RegistryCredentials, registry_credentials
from dockyard.model.strategies import ConfigValue, ConfigWrite

#: Decrypts a secret key of the stack (``dockyard:registryPassword``), e.g. with the engine's ``config get``.
Decrypt = Callable[[str], str]


def _no_secrets(key: str) -> str:
    raise LookupError(f"{key}: this view of the stack reads no secrets")


@dataclass(frozen=True)
class StackView:
    """A stack's name, its parsed file and its validated config; secrets and credentials are read when first asked."""

    name: str
    env: EnvironmentConfig
    #: The parsed stack file (``{config: {dockyard:...: ...}}``), secure values as written.
    document: Mapping[str, Any] = field(default_factory=dict)
    decrypt: Decrypt = field(default=_no_secrets, repr=False, compare=False)

    @classmethod
    def read(cls, project_dir: Path, stack: str, decrypt: Decrypt = _no_secrets) -> StackView:
        """Read and validate ``stack``'s file; an unknown stack or invalid config raises ``ConfigError``."""
        document = stack_document(project_dir, stack)
        return cls(stack, parse_environment(stack, plaintext_keys(document)), document, decrypt)

    def secret(self, key: str) -> str | None:
        """A secret of the stack (``dockyard:...``), decrypted; None when its file does not set it (nothing runs)."""
        if key not in (self.document.get("config") or {}):
            return None
        return self.decrypt(key)

    @cached_property
    def credentials(self) -> RegistryCredentials:
        """What the CLI logs in to the stack's registry with, by the one credential rule."""
        return registry_credentials(self.env.registry, lambda key: self.secret(f"{NAMESPACE}:{key}"))

    @property
    def served_image(self) -> str | None:
        """The image the stack's traffic goes to, as its strategy says (None on a building stack)."""
        return self.env.served_image

    def after(self, write: ConfigWrite) -> StackView:
        """The stack once ``write`` is applied to its file, validated as the engine will find it; nothing is read."""
        document = edited(self.document, write)
        return StackView(self.name, parse_environment(self.name, plaintext_keys(document)), document, self.decrypt)


def edited(document: Mapping[str, Any], write: ConfigWrite) -> dict[str, Any]:
    """``document`` (a parsed ``Pulumi.<stack>.yaml``) with ``write`` applied, as ``pulumi config set --path`` and
    ``config rm --path`` would: a value sets its key (creating parents), ``None`` removes it."""
    result = copy.deepcopy(dict(document))
    if not isinstance(result.get("config"), dict):
        result["config"] = {}
    for path, value in write.values.items():
        top, *rest = path.split(".")
        *parents, leaf = [f"{NAMESPACE}:{top}", *rest]
        node = result["config"]
        for key in parents:
            if not isinstance(node.get(key), dict):
                if value is None:
                    break  # nothing there to remove
                node[key] = {}
            node = node[key]
        else:
            if value is None:
                node.pop(leaf, None)
            else:
                node[leaf] = value
    return result


def values_at(document: Mapping[str, Any], paths: Iterable[str]) -> dict[str, ConfigValue]:
    """The values a parsed ``Pulumi.<stack>.yaml`` holds at ``dockyard:`` ``paths`` (None where unset)."""
    found: dict[str, ConfigValue] = {}
    for path in paths:
        top, *rest = path.split(".")
        node: Any = (document.get("config") or {}).get(f"{NAMESPACE}:{top}")
        for part in rest:
            node = node.get(part) if isinstance(node, dict) else None
        found[path] = node if isinstance(node, str | int) else None
    return found
