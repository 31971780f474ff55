"""One admission decision, pure: which images an object would run, and whether the namespace's policy admits them.

The webhook sees Pods and the pod templates of the workload kinds, so a refusal reaches the user who applies a
Deployment (not only, later, its ReplicaSet's events). An update that runs the same images as before is admitted
without a check: controllers scale ReplicaSets and relabel Pods all day, and those must not wait on a registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dockyard.admission.namespace import NamespacePolicy
from dockyard_components.image_ref import ImageReferenceError, parse_image_reference

#: Where each admitted kind keeps its pod spec.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
#: A refusal is read in kubectl's one-line error: long cosign reasons are cut.
_MESSAGE_LIMIT = 1500

Images = dict[str, str]
#: Checks digest-pinned images (what each is → image) and says why each refused one is refused.
Check = Callable[[NamespacePolicy, Images, list[str]], dict[str, list[str]]]


def pod_spec(kind: str, obj: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The pod spec inside ``obj`` of ``kind``; None for a kind that carries none."""
    path = POD_SPEC_PATHS.get(kind)
    if path is None or obj is None:
        return None
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else None


def images(spec: Mapping[str, Any] | None) -> Images:
    """Each container's image, named as a refusal names it (``containers[app]``)."""
    found: Images = {}
    for field in _CONTAINER_LISTS:
        for container in (spec or {}).get(field) or []:
            found[f"{field}[{container.get('name', '?')}]"] = str(container.get("image", ""))
    return found


def pull_secret_names(spec: Mapping[str, Any] | None) -> list[str]:
    return [str(ref["name"]) for ref in (spec or {}).get("imagePullSecrets") or [] if ref.get("name")]


def _unpinned(image: str) -> str | None:
    try:
        if parse_image_reference(image).is_digest_pinned:
            return None
    except ImageReferenceError:
        pass
    return f"{image or '(no image)'} is not pinned by digest (allowed: registry/repository@sha256:<64 hex digits>)"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    message: str | None = None


def decide(request: Mapping[str, Any], namespace: NamespacePolicy | None, check: Check) -> Decision:
    """Whether ``request`` (an AdmissionReview's ``request``) may run in a namespace with ``namespace``'s policy."""
    kind = str(request.get("kind", {}).get("kind", ""))
    spec = pod_spec(kind, request.get("object"))
    running = images(spec)
    if namespace is None or not running:
        return Decision(True)
    if request.get("operation") == "UPDATE" and running == images(pod_spec(kind, request.get("oldObject"))):
        return Decision(True)
    problems = {what: [reason] for what, image in running.items() if (reason := _unpinned(image))}
    pinned = {what: image for what, image in running.items() if what not in problems}
    if pinned:
        problems |= check(namespace, pinned, pull_secret_names(spec))
    if not problems:
        return Decision(True)
    name = request.get("name") or (request.get("object") or {}).get("metadata", {}).get("generateName", "")
    lines = "; ".join(f"{what}: {' '.join(reasons)}" for what, reasons in sorted(problems.items()))
    message = f"{namespace.policy.stack}'s trust policy refuses {kind} {name}: {lines}"
    return Decision(False, message if len(message) <= _MESSAGE_LIMIT else message[: _MESSAGE_LIMIT - 3] + "...")


def response(uid: str, decision: Decision) -> dict[str, Any]:
    """The AdmissionReview (v1) that answers request ``uid``."""
    answer: dict[str, Any] = {"uid": uid, "allowed": decision.allowed}
    if decision.message is not None:
        answer["status"] = {"code": 403, "reason": "Forbidden", "message": decision.message}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer}
