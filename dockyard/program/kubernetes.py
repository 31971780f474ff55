"""The Kubernetes provider of a stack: a real cluster, or manifests rendered to a directory."""

from __future__ import annotations

import os
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from dockyard.model.config import LOCAL_CLUSTER_CONTEXT, NAMESPACE, ConfigError
from dockyard.model.problems import Problem
from dockyard.program.stack_config import StackConfig


def prepare_private_directory(directory: Path) -> None:
    """Create ``directory`` readable by its owner only: rendered manifests include Secrets."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for parent in directory.parents:
        if parent == Path("."):
            break
        if parent.name == "rendered":
            os.chmod(parent, 0o700)


def kubernetes_provider(name: str, stack: StackConfig) -> k8s.Provider:
    """``render`` and ``helm``: write YAML to the stack's render directory (GitOps hand-off, local stacks; helm mode's
    chart is made from it by ``dockyard chart``).
    ``cluster``: apply with the stack's kubeconfig secret and context (or the ambient kubeconfig)."""
    settings = stack.env.kubernetes
    if settings.renders:
        directory = Path(stack.render_directory)
        prepare_private_directory(directory)
        # kubeconfig="": the SDK would otherwise take $KUBECONFIG, which the provider refuses beside rendering.
        return k8s.Provider(name, render_yaml_to_directory=str(directory), kubeconfig="")
    if settings.local_cluster and stack.secrets.kubeconfig is None and not os.environ.get("KUBECONFIG"):
        # Without this the provider falls back to ~/.kube/config and fails on a missing context much later.
        raise ConfigError(
            [
                Problem(
                    stack.stack,
                    f"{NAMESPACE}:kubernetes.context",
                    f"{LOCAL_CLUSTER_CONTEXT} needs KUBECONFIG",
                    "allowed: scripts/local-cluster.sh start, then source scripts/local-env.sh (it exports KUBECONFIG)",
                )
            ]
        )
    return k8s.Provider(
        name,
        # None: the ambient kubeconfig (KUBECONFIG), which never enters the state.
        kubeconfig=stack.secrets.kubeconfig,
        context=settings.context,
        # Refuse to guess a namespace: every object names its own.
        enable_server_side_apply=True,
        opts=pulumi.ResourceOptions(additional_secret_outputs=["kubeconfig"]),
    )
