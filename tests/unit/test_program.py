"""The whole program (``__main__.py``) under mocks, once per committed stack."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from dockyard.admission.namespace import NamespacePolicy
from dockyard.model.config import ConfigError, environment_from_file
from dockyard.model.trust import TrustPolicy
from dockyard_components.k8s_specs import ADMISSION_ENFORCED, ADMISSION_LABEL
from tests.stacks import PROJECT, stack_config
from tests.unit.conftest import (
    APP_SECRET,
    FAKE_DIGEST,
    PASSWORD,
    RecordingMocks,
    accept_running_digests,
    plaintext_paths,
    secret_paths,
    set_stack_config,
)

COSIGN_KEY = "sentinel-cosign-private-key"
#: The local stack signs what it builds; its key pair is secret config (encrypted in Pulumi.local.yaml).
SIGNING_SECRETS = {"dockyard:cosignPrivateKey": COSIGN_KEY, "dockyard:cosignPassword": "sentinel-cosign-password"}


def run_program(stack: str, extra: dict[str, Any] | None = None, secret_keys: list[str] | None = None) -> None:
    """Run ``__main__.py`` for a committed stack; its encrypted signing key pair is stood in for by sentinels."""
    committed = yaml.safe_load((PROJECT / f"Pulumi.{stack}.yaml").read_text())["config"]
    signing = SIGNING_SECRETS if "dockyard:cosignPrivateKey" in committed else {}
    config = {**stack_config(stack), **signing, **(extra or {})}
    accept_running_digests(stack, config)
    pulumi.runtime.settings._set_stack(stack)
    set_stack_config(config, [*signing, *(secret_keys or [])])
    runpy.run_path(str(PROJECT / "__main__.py"), run_name="__main__")


def deployments(mocks: RecordingMocks) -> dict[str, dict[str, Any]]:
    return {r.inputs["metadata"]["name"]: r.inputs for r in mocks.of_type("kubernetes:apps/v1:Deployment")}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


@pulumi.runtime.test
def _run_local(mocks: RecordingMocks, workdir: Path) -> None:
    run_program("local")


def test_local_builds_with_podman_and_deploys_the_pushed_digest(mocks: RecordingMocks, workdir: Path) -> None:
    _run_local(mocks, workdir)
    build = mocks.named("image-podman-build")
    assert build.inputs["target"] == "runtime"
    assert build.inputs["test_target"] == "test"
    (provider,) = mocks.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["context"] == "dockyard-local"
    assert "renderYamlToDirectory" not in provider.inputs
    (deployment,) = deployments(mocks).values()
    assert container(deployment)["image"] == f"127.0.0.1:5443/dockyard/app@{FAKE_DIGEST}"
    assert not [r for r in mocks.resources if r.typ.startswith("github:")]
    namespaces = [r.inputs["metadata"]["name"] for r in mocks.of_type("kubernetes:core/v1:Namespace")]
    assert namespaces == ["dockyard-app-local"]


def test_local_signs_the_pushed_digest_with_its_key_as_a_secret(mocks: RecordingMocks, workdir: Path) -> None:
    _run_local(mocks, workdir)
    signing = mocks.named("signed-cosign")
    assert signing.inputs["image_ref"] == f"127.0.0.1:5443/dockyard/app@{FAKE_DIGEST}", "the digest that was pushed"
    assert signing.inputs["public_key"] == (workdir / "keys" / "dockyard-local-cosign.pub").read_text()
    for sentinel in (COSIGN_KEY, SIGNING_SECRETS["dockyard:cosignPassword"], PASSWORD):
        assert secret_paths(signing.inputs, sentinel), f"{sentinel} must reach the signer as a secret"
        leaks = {r.name: plaintext_paths(r.inputs, sentinel) for r in mocks.resources}
        assert not {name: paths for name, paths in leaks.items() if paths}


def test_local_cluster_without_kubeconfig_stops_with_the_next_step(
    mocks: RecordingMocks, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG")
    with pytest.raises(ConfigError) as raised:
        _run_local(mocks, workdir)
    assert raised.value.problems == [
        "local: dockyard:kubernetes.context: dockyard-local needs KUBECONFIG; allowed: scripts/local-cluster.sh "
        "start, then source scripts/local-env.sh (it exports KUBECONFIG)"
    ]
    assert not mocks.resources, "nothing is registered before the error"


@pulumi.runtime.test
def _run_local_rendered(mocks: RecordingMocks, workdir: Path) -> None:
    kubernetes = {**stack_config("local")["dockyard:kubernetes"], "mode": "render"}
    kubernetes.pop("context")
    run_program("local", {"dockyard:kubernetes": kubernetes})


def test_render_mode_writes_owner_only_manifests_for_gitops(mocks: RecordingMocks, workdir: Path) -> None:
    _run_local_rendered(mocks, workdir)
    (provider,) = mocks.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["renderYamlToDirectory"] == "rendered/local"
    assert provider.inputs["kubeconfig"] == "", "never $KUBECONFIG: the provider refuses it beside rendering"
    assert (workdir / "rendered" / "local").stat().st_mode & 0o077 == 0, "rendered Secrets are owner-only"


@pulumi.runtime.test
def _run_prod(mocks: RecordingMocks, workdir: Path) -> None:
    run_program("prod")


def test_prod_never_builds_and_runs_both_colors(mocks: RecordingMocks, workdir: Path) -> None:
    _run_prod(mocks, workdir)
    assert not mocks.of_type("pulumi-python:dynamic:Resource")
    assert not mocks.of_type("docker:index/image:Image")
    by_name = deployments(mocks)
    assert sorted(by_name) == ["dockyard-app-blue", "dockyard-app-green"]
    for deployment in by_name.values():
        assert "@sha256:" in container(deployment)["image"]
        assert deployment["spec"]["replicas"] == 3, "starts at the HPA's minReplicas"
    service = next(
        r for r in mocks.of_type("kubernetes:core/v1:Service") if r.inputs["metadata"]["name"] == "dockyard-app"
    )
    assert service.inputs["spec"]["selector"]["dockyard.dev/track"] == "blue"
    assert len(mocks.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")) == 2
    assert len(mocks.of_type("kubernetes:policy/v1:PodDisruptionBudget")) == 1


def test_prod_writes_its_trust_policy_on_its_namespace_for_admission(mocks: RecordingMocks, workdir: Path) -> None:
    _run_prod(mocks, workdir)
    (namespace,) = mocks.of_type("kubernetes:core/v1:Namespace")
    metadata = namespace.inputs["metadata"]
    assert metadata["labels"][ADMISSION_LABEL] == ADMISSION_ENFORCED
    carried = NamespacePolicy.read(metadata["annotations"])
    assert carried is not None
    signing = environment_from_file(PROJECT, "prod").signing
    assert signing is not None
    assert carried.policy == TrustPolicy.of("prod", signing, PROJECT), "the namespace carries the stack's own policy"
    assert [str(s.identity) for s in carried.policy.signers if s.identity], "prod trusts the delivery workflow"


@pulumi.runtime.test
def _run_dev(mocks: RecordingMocks, workdir: Path) -> None:
    run_program("dev")


def test_a_stack_without_a_trust_policy_asks_no_admission(mocks: RecordingMocks, workdir: Path) -> None:
    _run_dev(mocks, workdir)
    (namespace,) = mocks.of_type("kubernetes:core/v1:Namespace")
    assert ADMISSION_LABEL not in namespace.inputs["metadata"]["labels"]
    assert not namespace.inputs["metadata"].get("annotations")


@pulumi.runtime.test
def _run_local_prod_with_secrets(mocks: RecordingMocks, workdir: Path) -> None:
    run_program(
        "local-prod",
        {"dockyard:appSecrets": {"API_KEY": APP_SECRET}},
        secret_keys=["dockyard:appSecrets"],
    )


def test_secrets_reach_only_secret_inputs(mocks: RecordingMocks, workdir: Path) -> None:
    _run_local_prod_with_secrets(mocks, workdir)
    for sentinel in (PASSWORD, APP_SECRET):
        leaks = {r.name: plaintext_paths(r.inputs, sentinel) for r in mocks.resources}
        assert not {name: paths for name, paths in leaks.items() if paths}, f"{sentinel} leaked in plaintext"
        holders = sorted(r.name for r in mocks.resources if secret_paths(r.inputs, sentinel))
        assert holders, f"{sentinel} never reached a resource: the test would prove nothing"
    assert sorted(r.name for r in mocks.resources if secret_paths(r.inputs, PASSWORD)) == ["app-registry"]
    assert sorted(r.name for r in mocks.resources if secret_paths(r.inputs, APP_SECRET)) == ["app-secrets"]


@pulumi.runtime.test
def _run_staging(mocks: RecordingMocks, workdir: Path) -> None:
    run_program("staging")


def test_staging_canary_at_weight_zero_runs_only_stable(mocks: RecordingMocks, workdir: Path) -> None:
    _run_staging(mocks, workdir)
    assert sorted(deployments(mocks)) == ["dockyard-app-stable"]
    ingresses = mocks.of_type("kubernetes:networking.k8s.io/v1:Ingress")
    assert [i.inputs["spec"]["rules"][0]["host"] for i in ingresses] == ["staging.dockyard.example.com"]


@pytest.mark.parametrize(
    ("stack", "selectors"),
    [
        ("local-staging", {"dockyard-app": None}),
        ("local-prod", {"dockyard-app": "blue", "dockyard-app-preview": "green"}),
    ],
)
def test_a_stack_with_no_release_runs_no_pods_and_its_services_wait(
    mocks: RecordingMocks, workdir: Path, stack: str, selectors: dict[str, str | None]
) -> None:
    """No placeholder digest: no Deployment (nor autoscaler), the Services there with their tracks' selectors."""
    pulumi.runtime.test(lambda: run_program(stack))()
    assert deployments(mocks) == {}
    assert mocks.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler") == []
    services = {
        r.inputs["metadata"]["name"]: r.inputs["spec"]["selector"] for r in mocks.of_type("kubernetes:core/v1:Service")
    }
    assert {name: selector.get("dockyard.dev/track") for name, selector in services.items()} == selectors


BUILD_SECRET = "sentinel-build-secret"


def with_build_secrets(ids: list[str]) -> dict[str, Any]:
    image = stack_config("local")["dockyard:image"]
    return {"dockyard:image": {**image, "build": {**image["build"], "secrets": ids}}}


def test_build_secrets_reach_the_build_only_as_a_secret(mocks: RecordingMocks, workdir: Path) -> None:
    pulumi.runtime.test(
        lambda: run_program(
            "local",
            {**with_build_secrets(["npm_token"]), "dockyard:buildSecrets": {"npm_token": BUILD_SECRET}},
            secret_keys=["dockyard:buildSecrets"],
        )
    )()
    leaks = {r.name: plaintext_paths(r.inputs, BUILD_SECRET) for r in mocks.resources}
    assert not {name: paths for name, paths in leaks.items() if paths}
    assert sorted(r.name for r in mocks.resources if secret_paths(r.inputs, BUILD_SECRET)) == ["image-podman-build"]
    assert mocks.named("image-podman-build").inputs["secret_ids"] == ["npm_token"]


@pytest.mark.parametrize(
    ("ids", "values", "problem"),
    [
        (
            ["npm_token"],
            None,
            "local: dockyard:buildSecrets: no value for npm_token (listed in image.build.secrets); allowed: "
            "pulumi config set --secret --path 'dockyard:buildSecrets.<id>' ...",
        ),
        (
            [],
            {"npm_token": BUILD_SECRET},
            "local: dockyard:buildSecrets: npm_token not listed in image.build.secrets; allowed: the ids "
            "image.build.secrets lists: none",
        ),
    ],
)
def test_build_secret_ids_and_values_must_match(
    mocks: RecordingMocks, workdir: Path, ids: list[str], values: dict[str, str] | None, problem: str
) -> None:
    extra = with_build_secrets(ids)
    if values is not None:
        extra["dockyard:buildSecrets"] = values
    with pytest.raises(ConfigError) as caught:
        pulumi.runtime.test(lambda: run_program("local", extra, secret_keys=["dockyard:buildSecrets"]))()
    assert caught.value.problems == [problem]
    assert BUILD_SECRET not in str(caught.value)
