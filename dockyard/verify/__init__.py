"""Verification of what a stack deployed: :mod:`.verifier` (the command, ``promote --verify``), :mod:`.local_run`
(run the image here) and :mod:`.kube` (the live Kubernetes API). The names the rest of Dockyard uses are here."""

from __future__ import annotations

from dockyard.verify.common import VerifierError
from dockyard.verify.kube import ClusterReader, KubeApi, KubeconfigError, cluster_checks, connect
from dockyard.verify.local_run import HEALTH_TIMEOUT, LocalRun
from dockyard.verify.verifier import (
    VerifiedPromotion,
    Verifier,
    expected_images,
    manifest_check,
    promote_verified,
)

__all__ = [
    "HEALTH_TIMEOUT",
    "ClusterReader",
    "KubeApi",
    "KubeconfigError",
    "LocalRun",
    "VerifiedPromotion",
    "Verifier",
    "VerifierError",
    "cluster_checks",
    "connect",
    "expected_images",
    "manifest_check",
    "promote_verified",
]
