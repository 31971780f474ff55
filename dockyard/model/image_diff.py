"""What a reviewer needs to see of a release: each image change as old → new (repository, short digest, version).

A preview lists ``spec.template.spec.containers[0].image`` as a changed property without its values. These pure
functions read the old and new inputs of a workload (from ``pulumi preview --json`` or the engine's events, which
carry the same inputs) and say which image each container ran and will run, with its version label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dockyard_components.image_ref import ImageReferenceError, parse_image_reference, short_image

#: The pod template label KubernetesApp sets from the image (its tag, or ``sha256-<12 hex>``).
VERSION_LABEL = "app.kubernetes.io/version"
#: The OCI label a build sets to the release version (dockyard_components.tags).
OCI_VERSION_LABEL = "org.opencontainers.image.version"
WORKLOAD_TYPES = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:DaemonSet")

Inputs = Mapping[str, Any]


@dataclass(frozen=True)
class ImageChange:
    """The image one container of one workload runs before and after a change (None: the workload is new/gone)."""

    workload: str
    container: str
    old: str | None
    new: str | None
    old_version: str | None = None
    new_version: str | None = None

    def render(self, versions: Callable[[str], str | None] = lambda _: None) -> str:
        """``workload: repo sha256:<12> (version) → sha256:<12> (version)``; ``versions`` may name a better version
        (the image's OCI version label) than the one the inputs carry."""
        old = _describe(self.old, versions(self.old) if self.old else None, self.old_version)
        new = _describe(self.new, versions(self.new) if self.new else None, self.new_version)
        old_repo, new_repo = _repository(self.old), _repository(self.new)
        container = "" if self.container == "app" else f" ({self.container})"
        if old_repo and old_repo == new_repo:
            return f"{self.workload}{container}: {old_repo} {old} → {new}"
        return f"{self.workload}{container}: {_with_repo(old_repo, old)} → {_with_repo(new_repo, new)}"


def _repository(image: str | None) -> str | None:
    if image is None:
        return None
    try:
        return parse_image_reference(image).name
    except ImageReferenceError:
        return None


def _with_repo(repository: str | None, described: str) -> str:
    return f"{repository} {described}" if repository else described


def _short(image: str) -> str:
    """The short digest of a pinned image, the tag of a tagged one; a value the preview cannot know yet (a build's
    output) as the engine shows it."""
    try:
        reference = parse_image_reference(image)
    except ImageReferenceError:
        return image
    return short_image(image) if reference.digest else (reference.tag or image)


def _describe(image: str | None, looked_up: str | None, labelled: str | None) -> str:
    if image is None:
        return "(none)"
    shown, version = _short(image), looked_up or labelled
    # The version label of a digest-pinned image without a better version is its digest again: said once.
    return f"{shown} ({version})" if version and version != shown.replace(":", "-") else shown


def _at(inputs: Inputs | None, *path: str) -> Mapping[str, Any]:
    """The mapping at ``path`` in ``inputs``; empty where a level is missing or not a mapping (a preview shows a
    value it cannot know yet, such as labels computed from a build's output, as a string)."""
    found: Any = inputs
    for key in path:
        found = found.get(key) if isinstance(found, Mapping) else None
    return found if isinstance(found, Mapping) else {}


def containers(inputs: Inputs | None) -> dict[str, str]:
    """Container name → image of a workload's pod template inputs (init containers too)."""
    spec = _at(inputs, "spec", "template", "spec")
    found = [c for key in ("initContainers", "containers") if isinstance(spec.get(key), list) for c in spec[key]]
    return {str(c.get("name")): str(c.get("image")) for c in found if isinstance(c, Mapping) and c.get("image")}


def version_label(inputs: Inputs | None) -> str | None:
    value = _at(inputs, "spec", "template", "metadata", "labels").get(VERSION_LABEL)
    return str(value) if value else None


def image_changes(workload: str, old: Inputs | None, new: Inputs | None) -> list[ImageChange]:
    """Every container whose image differs between the old and new inputs of ``workload``."""
    before, after = containers(old), containers(new)
    return [
        ImageChange(
            workload,
            name,
            before.get(name),
            after.get(name),
            version_label(old) if name in before else None,
            version_label(new) if name in after else None,
        )
        for name in sorted(before.keys() | after.keys())
        if before.get(name) != after.get(name)
    ]
