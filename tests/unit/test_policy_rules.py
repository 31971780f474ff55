"""The policy pack's rules on plain properties, and every committed stack's objects pass them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pulumi
import pytest

from dockyard.pipeline import github
from dockyard.pipeline.derive import derive_pipeline, read_stack_environments
from policies import rules
from tests.stacks import PROJECT, STACKS
from tests.unit.conftest import RecordingMocks, first_release
from tests.unit.test_manifest_schemas import unwrap
from tests.unit.test_program import run_program

GOOD_CONTAINER = {
    "name": "app",
    "image": "ghcr.io/acme/app@sha256:" + "1" * 64,
    "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}, "limits": {"cpu": "1", "memory": "64Mi"}},
    "securityContext": {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    },
    "env": [{"name": "LOG_LEVEL", "value": "info"}],
}


def deployment(tier: str = "prod", replicas: int = 2, **container: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "app", "labels": {rules.TIER_LABEL: tier}},
        "spec": {
            "replicas": replicas,
            "template": {
                "metadata": {"labels": {"app": "a"}},
                "spec": {"containers": [{**GOOD_CONTAINER, **container}]},
            },
        },
    }


def test_a_good_deployment_passes_every_rule() -> None:
    props = deployment()
    assert rules.unapproved_registries("Deployment", props, ["ghcr.io"]) == []
    assert rules.mutable_references("Deployment", props) == []
    assert rules.missing_resources("Deployment", props) == []
    assert rules.insecure_pods("Deployment", props) == []
    assert rules.plaintext_secret_env("Deployment", props) == []


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("nginx:1.27", "docker.io"),
        ("quay.io/x/y@sha256:" + "1" * 64, "quay.io"),
        ("localhost:5000/a", "localhost:5000"),
    ],
)
def test_unapproved_registries(image: str, registry: str) -> None:
    (problem,) = rules.unapproved_registries("Deployment", deployment(image=image), ["ghcr.io"])
    assert f"comes from {registry}" in problem


@pytest.mark.parametrize(
    "image", ["ghcr.io/acme/app:1.2.3", "ghcr.io/acme/app:latest@sha256:" + "1" * 64, "ghcr.io/acme/app"]
)
def test_mutable_references_in_prod(image: str) -> None:
    assert rules.mutable_references("Deployment", deployment(image=image))


def test_tags_are_fine_in_dev() -> None:
    assert rules.mutable_references("Deployment", deployment(tier="dev", image="ghcr.io/acme/app:1.2.3")) == []


def test_missing_limits() -> None:
    problems = rules.missing_resources("Deployment", deployment(resources={"requests": {"cpu": "1"}}))
    assert problems == [
        "container app: no memory request",
        "container app: no cpu limit",
        "container app: no memory limit",
    ]


def test_insecure_pod() -> None:
    problems = rules.insecure_pods("Deployment", deployment(securityContext={"privileged": True}))
    assert len(problems) == 4


def test_literal_secret_env() -> None:
    env = [{"name": "DB_PASSWORD", "value": "hunter2"}, {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {}}}]
    assert rules.plaintext_secret_env("Deployment", deployment(env=env)) == [
        "container app: env DB_PASSWORD holds a literal value; take it from a Secret (secretKeyRef)"
    ]


def test_prod_availability_needs_two_replicas_and_a_pdb() -> None:
    single = ("Deployment", deployment(replicas=1))
    assert rules.prod_availability([single]) == [
        "Deployment app: 1 replica(s) in prod; at least 2",
        "Deployment app: no PodDisruptionBudget selects its pods in prod",
    ]
    pdb = ("PodDisruptionBudget", {"spec": {"selector": {"matchLabels": {"app": "a"}}}})
    assert rules.prod_availability([("Deployment", deployment(replicas=3)), pdb]) == []
    hpa = ("HorizontalPodAutoscaler", {"spec": {"scaleTargetRef": {"name": "app"}, "minReplicas": 3}})
    without_replicas = copy.deepcopy(deployment())
    del without_replicas["spec"]["replicas"]
    assert rules.prod_availability([("Deployment", without_replicas), hpa, pdb]) == []


def test_prod_environment_reviewers() -> None:
    assert rules.environment_without_reviewers({"environment": "prod", "reviewers": []}, ["prod"])
    assert not rules.environment_without_reviewers({"environment": "prod", "reviewers": [{"users": [1]}]}, ["prod"])
    assert not rules.environment_without_reviewers({"environment": "dev"}, ["prod"])


def test_unpinned_actions() -> None:
    content = (
        "steps:\n  - uses: actions/checkout@v4\n  - uses: actions/setup-python@" + "a" * 40 + "\n  - uses: ./local\n"
    )
    assert rules.unpinned_actions({"file": ".github/workflows/ci.yml", "content": content}) == [
        ".github/workflows/ci.yml: actions/checkout@v4 is not pinned to a full commit SHA"
    ]


def test_generated_workflows_pin_every_action() -> None:
    files = github.render(derive_pipeline(read_stack_environments(PROJECT)))
    assert files
    for name, content in files.items():
        assert rules.unpinned_actions({"file": f".github/workflows/{Path(name).name}", "content": content}) == []


@pytest.mark.parametrize("stack", STACKS)
def test_committed_stacks_pass_the_workload_rules(stack: str, mocks: RecordingMocks, workdir: Path) -> None:
    # A stack with no release yet runs no pods: its first release is what gets checked.
    pulumi.runtime.test(lambda: run_program(stack, first_release(stack)))()
    objects = [(r.typ.rsplit(":", 1)[-1], unwrap(r.inputs)) for r in mocks.resources if r.typ.startswith("kubernetes:")]
    workloads = [(kind, props) for kind, props in objects if kind == "Deployment"]
    assert workloads
    for kind, props in workloads:
        assert rules.unapproved_registries(kind, props, ["ghcr.io", "127.0.0.1:5443"]) == []
        assert rules.mutable_references(kind, props) == []
        assert rules.missing_resources(kind, props) == []
        assert rules.insecure_pods(kind, props) == []
        assert rules.plaintext_secret_env(kind, props) == []
    assert rules.prod_availability(objects) == []
