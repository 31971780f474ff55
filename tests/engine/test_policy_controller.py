"""What guards real clusters: the ClusterImagePolicy written from each committed stack's trust policy is accepted by
the live API server under sigstore policy-controller's own CRD (the pinned release's, from the Go module proxy), with
kubectl's strict field validation: a field the CRD does not know is refused, so acceptance means the shape is right.

policy-controller itself cannot run here (its webhook needs an in-cluster Service; kwok nodes run no Pods): the
local cluster's admission is Dockyard's webhook (tests/engine/test_supply_chain.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dockyard.admission.policy_controller import POLICY_CONTROLLER_VERSION, cluster_image_policy
from dockyard.model.config import environment_from_file
from dockyard.model.trust import TrustPolicy
from tests.engine.harness import LOCAL_CONTEXT
from tests.stacks import PROJECT, STACKS

pytestmark = pytest.mark.engine


def kubectl(env: dict[str, str], *args: str, document: Any = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--context", LOCAL_CONTEXT, *args],
        input=yaml.safe_dump(document) if document is not None else None,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def crd_installed(local_cluster: dict[str, str]) -> dict[str, str]:
    module = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/sigstore/policy-controller@{POLICY_CONTROLLER_VERSION}"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    crd = yaml.safe_load(
        (Path(json.loads(module.stdout)["Dir"]) / "config" / "300-clusterimagepolicy.yaml").read_text()
    )
    # Its versions share one schema; converting between them is policy-controller's own webhook, which cannot run
    # here, so the API server converts by apiVersion alone. The schema, and so the validation, is the release's.
    crd["spec"]["conversion"] = {"strategy": "None"}
    env = {**os.environ, **local_cluster}
    applied = kubectl(env, "apply", "--server-side", "--force-conflicts", "-f", "-", document=crd)
    assert applied.returncode == 0, applied.stderr
    established = kubectl(
        env, "wait", "--for", "condition=Established", "crd/clusterimagepolicies.policy.sigstore.dev", "--timeout=60s"
    )
    assert established.returncode == 0, established.stderr
    return env


def policy_of(stack: str) -> dict[str, Any]:
    env = environment_from_file(PROJECT, stack)
    assert env.signing is not None
    return cluster_image_policy(TrustPolicy.of(stack, env.signing, PROJECT), env.registry.image_name)


SIGNING_STACKS = [s for s in STACKS if environment_from_file(PROJECT, s).signing is not None]


@pytest.mark.parametrize("stack", SIGNING_STACKS)
def test_each_stacks_cluster_image_policy_is_valid_for_policy_controller(
    crd_installed: dict[str, str], stack: str
) -> None:
    result = kubectl(
        crd_installed, "apply", "--dry-run=server", "--validate=strict", "-f", "-", document=policy_of(stack)
    )
    assert result.returncode == 0, result.stderr
    assert f"clusterimagepolicy.policy.sigstore.dev/dockyard-{stack} created (server dry run)" in result.stdout


def test_a_field_policy_controller_does_not_know_is_refused(crd_installed: dict[str, str]) -> None:
    """The check above can fail: the same policy with a misspelt field is refused by the same validation."""
    document = policy_of("prod")
    document["spec"]["authorities"][0]["keyles"] = document["spec"]["authorities"][0].pop("keyless")
    result = kubectl(crd_installed, "apply", "--dry-run=server", "--validate=strict", "-f", "-", document=document)
    assert result.returncode != 0
    assert 'unknown field "spec.authorities[0].keyles"' in result.stderr
