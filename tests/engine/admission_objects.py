"""Objects a user applies with kubectl to see what the cluster's admission does: a Pod and a Deployment that meet
Pod Security's restricted profile (so only the trust policy can refuse them), and namespaces labelled as a stack's
program labels its own (:class:`~dockyard.admission.namespace.NamespacePolicy`)."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml

from tests.engine.harness import LOCAL_CONTEXT, Result, Workspace

_SECURITY = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def pod(name: str, namespace: str, image: str, pull_secret: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": image, "securityContext": _SECURITY}]}
    if pull_secret is not None:
        spec["imagePullSecrets"] = [{"name": pull_secret}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def deployment(name: str, namespace: str, image: str, pull_secret: str | None) -> dict[str, Any]:
    template = pod(name, namespace, image, pull_secret)
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": template["spec"]},
        },
    }


def apply(workspace: Workspace, *documents: dict[str, Any]) -> Result:
    """``kubectl apply -f -`` of ``documents`` as a user would (exit code and output kept, never raised)."""
    completed = subprocess.run(
        ["kubectl", "--context", LOCAL_CONTEXT, "apply", "-f", "-"],
        input=yaml.safe_dump_all(documents),
        env=workspace.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)
