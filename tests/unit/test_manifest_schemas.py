"""Every Kubernetes object every committed stack produces is valid for the named Kubernetes version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest

from tests.k8s_schema import KUBERNETES_VERSION, schema_errors
from tests.stacks import STACKS
from tests.unit.conftest import SECRET_SIG, RecordingMocks, first_release
from tests.unit.test_program import run_program


def unwrap(value: Any) -> Any:
    """Mock inputs keep secrets wrapped; the manifest a cluster sees has the plain value."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return unwrap(value["value"])
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value


@pytest.mark.parametrize("stack", STACKS)
def test_every_manifest_validates(stack: str, mocks: RecordingMocks, workdir: Path) -> None:
    # A stack with no release yet runs no pods: its first release is what gets checked.
    pulumi.runtime.test(lambda: run_program(stack, first_release(stack)))()
    manifests = [
        unwrap(r.inputs) for r in mocks.resources if r.typ.startswith("kubernetes:") and "apiVersion" in r.inputs
    ]
    kinds = {m["kind"] for m in manifests}
    assert {"Namespace", "Deployment", "Service", "ConfigMap", "NetworkPolicy"} <= kinds
    errors = [e for m in manifests for e in schema_errors(m)]
    assert not errors, f"invalid for Kubernetes {KUBERNETES_VERSION}:\n" + "\n".join(errors)


def test_the_validator_rejects_a_broken_manifest() -> None:
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "three", "selector": {"matchLabels": {"a": "b"}}, "template": {}},
    }
    assert schema_errors(broken)
    unknown_field = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "datta": {}}
    assert schema_errors(unknown_field)
