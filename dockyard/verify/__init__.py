"""Verification of what a stack deployed: :mod:`.verifier` (the command and its subjects), :mod:`.local_run`
(run the image here), :mod:`.kube` (the cluster checks over the API's objects) and :mod:`.kube_api` (the live API
through the official client, imported only when a cluster is read). The names the rest of Dockyard uses are here."""

from __future__ import annotations

from dockyard.verify.common import VerifierError
from dockyard.verify.kube import ClusterReader, cluster_checks
from dockyard.verify.local_run import HEALTH_TIMEOUT, LocalRun
from dockyard.verify.verifier import Subject, Verifier, expected_images, manifest_check, subject_of

__all__ = [
    "HEALTH_TIMEOUT",
    "ClusterReader",
    "LocalRun",
    "Subject",
    "Verifier",
    "VerifierError",
    "cluster_checks",
    "expected_images",
    "manifest_check",
    "subject_of",
]
