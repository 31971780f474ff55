"""The delivery rules as pure functions over resource properties: each returns the violations it finds.

Kept free of the policy SDK so every rule is unit-tested with plain dictionaries; ``__main__`` wires them into the
CrossGuard pack with their enforcement levels.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

TIER_LABEL = "dockyard.dev/tier"
#: Tiers that deploy only promoted, digest-pinned images (dockyard.model.config.Tier.promoted_only; the pack stays free
#: of the project's modules, and a unit test keeps the two the same).
PROMOTED_TIERS = ("qa", "staging", "prod")
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIALS?)", re.IGNORECASE)
PINNED_USES = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*-?\s*uses:\s*['\"]?([^'\"\s#]+)", re.MULTILINE)
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")

Props = Mapping[str, Any]


def tier_of(props: Props) -> str | None:
    labels = (props.get("metadata") or {}).get("labels") or {}
    tier = labels.get(TIER_LABEL)
    return str(tier) if tier else None


def pod_spec(kind: str, props: Props) -> Props | None:
    spec = props.get("spec") or {}
    if kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    template = spec.get("template") or {}
    result = template.get("spec")
    return result if isinstance(result, Mapping) else None


def containers(kind: str, props: Props) -> list[Props]:
    spec = pod_spec(kind, props) or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def registry_of(image: str) -> str:
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def unapproved_registries(kind: str, props: Props, allowed: Sequence[str]) -> list[str]:
    return [
        f"container {c.get('name')}: image {c.get('image')} comes from {registry_of(str(c.get('image')))}; "
        f"approved registries: {', '.join(allowed)}"
        for c in containers(kind, props)
        if registry_of(str(c.get("image", ""))) not in allowed
    ]


def mutable_references(kind: str, props: Props) -> list[str]:
    if tier_of(props) not in PROMOTED_TIERS:
        return []
    problems = []
    for c in containers(kind, props):
        image = str(c.get("image", ""))
        if "@sha256:" not in image:
            problems.append(
                f"container {c.get('name')}: image {image} is mutable in {tier_of(props)}; deploy registry/repo@sha256:<digest>"
            )
        elif image.split("@", 1)[0].endswith(":latest"):
            problems.append(f"container {c.get('name')}: image {image} names 'latest'; use the digest alone")
    return problems


def missing_resources(kind: str, props: Props) -> list[str]:
    problems = []
    for c in containers(kind, props):
        resources = c.get("resources") or {}
        for section in ("requests", "limits"):
            for amount in ("cpu", "memory"):
                if not (resources.get(section) or {}).get(amount):
                    problems.append(f"container {c.get('name')}: no {amount} {section[:-1]}")
    return problems


def insecure_pods(kind: str, props: Props) -> list[str]:
    spec = pod_spec(kind, props) or {}
    pod_context = spec.get("securityContext") or {}
    problems = []
    for c in containers(kind, props):
        context = c.get("securityContext") or {}
        name = c.get("name")
        if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
            problems.append(f"container {name}: runAsNonRoot is not true")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"container {name}: readOnlyRootFilesystem is not true")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"container {name}: allowPrivilegeEscalation is not false")
        if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
            problems.append(f"container {name}: capabilities do not drop ALL")
    return problems


def plaintext_secret_env(kind: str, props: Props) -> list[str]:
    return [
        f"container {c.get('name')}: env {e.get('name')} holds a literal value; take it from a Secret (secretKeyRef)"
        for c in containers(kind, props)
        for e in c.get("env") or []
        if SECRET_NAME.search(str(e.get("name", ""))) and e.get("value") not in (None, "")
    ]


def prod_availability(resources: Iterable[tuple[str, Props]]) -> list[str]:
    """Prod Deployments run ≥ 2 replicas (or an HPA with minReplicas ≥ 2) and are covered by a PDB."""
    items = list(resources)
    deployments = [p for kind, p in items if kind == "Deployment" and tier_of(p) == "prod"]
    hpa_floor = {
        ((p.get("spec") or {}).get("scaleTargetRef") or {}).get("name"): (p.get("spec") or {}).get("minReplicas", 1)
        for kind, p in items
        if kind == "HorizontalPodAutoscaler"
    }
    pdb_selectors = [
        ((p.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        for kind, p in items
        if kind == "PodDisruptionBudget"
    ]
    problems = []
    for deployment in deployments:
        name = (deployment.get("metadata") or {}).get("name")
        spec = deployment.get("spec") or {}
        # The engine hands numbers to policies as floats.
        floor = hpa_floor.get(name, spec.get("replicas", 1))
        replicas = int(floor) if isinstance(floor, int | float) else None
        if replicas is None or replicas < 2:
            problems.append(f"Deployment {name}: {replicas} replica(s) in prod; at least 2")
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not any(selector and all(labels.get(k) == v for k, v in selector.items()) for selector in pdb_selectors):
            problems.append(f"Deployment {name}: no PodDisruptionBudget selects its pods in prod")
    return problems


def environment_without_reviewers(props: Props, prod_environments: Sequence[str]) -> list[str]:
    name = props.get("environment")
    if name not in prod_environments:
        return []
    reviewers = props.get("reviewers") or []
    if not any((r.get("users") or []) or (r.get("teams") or []) for r in reviewers):
        return [f"GitHub environment {name} has no required reviewers"]
    return []


def unpinned_actions(props: Props) -> list[str]:
    path = str(props.get("file", ""))
    if not path.startswith(".github/workflows/"):
        return []
    problems = []
    for action in USES_LINE.findall(str(props.get("content", ""))):
        if action.startswith(("./", "docker://")):
            continue
        if not PINNED_USES.match(action):
            problems.append(f"{path}: {action} is not pinned to a full commit SHA")
    return problems
