"""Registry kinds: the cloud registries' server and repository formats and their errors, CI's OIDC login to each on
every CI system (never a stored key), and, under mocks, no pull Secret for a cloud registry unless config asks."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pulumi
import pytest

from dockyard.model.config import ConfigError, parse_environment
from dockyard.model.registry import RegistryConfig
from dockyard.pipeline import circleci, github, gitlab, jenkins
from dockyard.pipeline.derive import derive_pipeline
from dockyard.pipeline.model import PipelineConfigError
from tests.stacks import PROJECT, dockyard_document, stack_config
from tests.unit.conftest import PASSWORD, RecordingMocks, accept_running_digests, set_stack_config

ROLE = "arn:aws:iam::123456789012:role/dockyard-ci"
ECR = {
    "kind": "ecr",
    "server": "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
    "repository": "acme/shop",
    "passwordEnv": "REGISTRY_TOKEN",
    "aws": {"roleArn": ROLE},
}
AZURE = {
    "clientId": "0a1b2c3d-0000-4000-8000-00000000abcd",
    "tenantId": "1a1b2c3d-0000-4000-8000-00000000abcd",
    "subscriptionId": "2a1b2c3d-0000-4000-8000-00000000abcd",
}
ACR = {"kind": "acr", "server": "acmeprod.azurecr.io", "repository": "shop", "passwordEnv": "REGISTRY_TOKEN"}
PROVIDER = "projects/123456/locations/global/workloadIdentityPools/ci-pool/providers/gitlab"
GCP = {"workloadIdentityProvider": PROVIDER, "serviceAccount": "dockyard-ci@acme-prod.iam.gserviceaccount.com"}
GAR = {
    "kind": "gar",
    "server": "europe-west4-docker.pkg.dev",
    "repository": "acme-prod/apps/shop",
    "passwordEnv": "REGISTRY_TOKEN",
    "gcp": GCP,
}
GCR = {
    "kind": "gcr",
    "server": "eu.gcr.io",
    "repository": "acme-prod/shop",
    "passwordEnv": "REGISTRY_TOKEN",
    "gcp": GCP,
}
CLOUDS = {"ecr": ECR, "acr": {**ACR, "azure": AZURE}, "gar": GAR, "gcr": GCR}
RUNNER = "registry.example.com/acme/dockyard-ci:1@sha256:" + "c" * 64
PYTHON = "python:3.11-slim@sha256:" + "d" * 64
DIGEST = "@sha256:" + "a" * 64


def problems(registry: dict[str, Any]) -> list[str]:
    document = {**dockyard_document("dev"), "registry": registry}
    with pytest.raises(ConfigError) as raised:
        parse_environment("dev", document)
    return raised.value.problems


# --- formats and errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("registry", list(CLOUDS.values()), ids=list(CLOUDS))
def test_each_cloud_kind_accepts_its_server_and_fills_the_token_user(registry: dict[str, Any]) -> None:
    config = RegistryConfig.model_validate(registry)
    assert config.kind.cloud
    assert config.username in ("AWS", "00000000-0000-0000-0000-000000000000", "oauth2accesstoken")
    assert config.image_name == f"{registry['server']}/{registry['repository']}"
    assert not config.wants_pull_secret, "a cloud registry is pulled through workload identity"
    assert config.cloud_login is not None


def test_ecr_knows_its_region_and_acr_its_name() -> None:
    assert RegistryConfig.model_validate(ECR).region == "eu-west-1"
    assert RegistryConfig.model_validate({**ACR, "azure": AZURE}).acr_name == "acmeprod"


def test_gcr_defaults_to_gcr_io_and_the_static_kinds_keep_their_pull_secret() -> None:
    assert RegistryConfig.model_validate({**GCR, "server": None}).host == "gcr.io"
    ghcr = RegistryConfig.model_validate({"kind": "ghcr", "repository": "acme/app", "username": "ci"})
    assert ghcr.wants_pull_secret
    assert RegistryConfig.model_validate({**ECR, "pullSecret": True}).wants_pull_secret


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        (
            {**ECR, "server": "123.dkr.ecr.eu-west-1.amazonaws.com"},
            "dev: dockyard:registry.server: found '123.dkr.ecr.eu-west-1.amazonaws.com'; allowed for ecr: "
            "<12-digit account>.dkr.ecr.<region>.amazonaws.com",
        ),
        (
            {**ECR, "server": None},
            "dev: dockyard:registry.server: missing; allowed for ecr: <12-digit account>.dkr.ecr.<region>.amazonaws.com",
        ),
        (
            {**ACR, "server": "acme.azurecr.com"},
            "dev: dockyard:registry.server: found 'acme.azurecr.com'; allowed for acr: <registry name, 5-50 "
            "lower-case letters or digits>.azurecr.io",
        ),
        (
            {**GAR, "server": "europe-west4.pkg.dev"},
            "dev: dockyard:registry.server: found 'europe-west4.pkg.dev'; allowed for gar: <region>-docker.pkg.dev, "
            "e.g. europe-west4-docker.pkg.dev",
        ),
        (
            {**GAR, "repository": "acme-prod/shop"},
            "dev: dockyard:registry.repository: found 'acme-prod/shop'; allowed for gar: "
            "<project>/<repository>/<image>, e.g. acme-prod/apps/shop",
        ),
        (
            {**GCR, "server": "gcr.example.com"},
            "dev: dockyard:registry.server: found 'gcr.example.com'; allowed for gcr: gcr.io, us.gcr.io, eu.gcr.io, "
            "asia.gcr.io",
        ),
        (
            {**GCR, "repository": "shop"},
            "dev: dockyard:registry.repository: found 'shop'; allowed for gcr: <project>/<image>, e.g. acme-prod/shop",
        ),
        (
            {**ECR, "username": "ci"},
            "dev: dockyard:registry.username: found 'ci'; allowed for ecr: AWS (the token's user) or leave it out",
        ),
        (
            {**ECR, "gcp": GCP},
            "dev: dockyard:registry.gcp: set for kind ecr; allowed: only aws",
        ),
    ],
)
def test_a_wrong_cloud_registry_gets_one_clear_error(registry: dict[str, Any], expected: str) -> None:
    assert expected in problems(registry)


def test_the_cloud_login_identifiers_are_checked_too() -> None:
    found = problems({**ECR, "aws": {"roleArn": "arn:aws:iam::1:user/me"}})
    assert found == [
        "dev: dockyard:registry.aws.roleArn: found 'arn:aws:iam::1:user/me'; allowed: "
        "arn:aws:iam::<12-digit account>:role/<name>"
    ]
    found = problems({**GAR, "gcp": {**GCP, "serviceAccount": "me@example.com"}})
    assert found == [
        "dev: dockyard:registry.gcp.serviceAccount: found 'me@example.com'; allowed: "
        "<name>@<project>.iam.gserviceaccount.com"
    ]


def test_every_problem_is_reported_at_once() -> None:
    found = problems({**GAR, "server": "x.pkg.dev", "repository": "a/b", "username": "me", "aws": {"roleArn": ROLE}})
    assert [line.split(":")[2].split(" ")[0] for line in found] == [
        "registry.server",
        "registry.repository",
        "registry.username",
        "registry.aws",
    ]


# --- CI's login, per CI system and registry ---------------------------------------------------------------------


def _stacks(registry: dict[str, Any]) -> dict[str, Any]:
    image = f"{registry['server'] or 'gcr.io'}/{registry['repository']}{DIGEST}"
    common = {"registry": registry, "github": {"enabled": True, "repository": "acme/shop"}}
    dev = {**common, "tier": "dev", "image": {"build": {}}, "kubernetes": {"mode": "cluster"}}
    staging = {**common, "tier": "staging", "image": {"ref": image}, "kubernetes": {"mode": "cluster"}}
    staging["promotion"] = {"upstream": "dev"}
    prod = {**staging, "tier": "prod", "promotion": {"upstream": "staging"}}
    prod["kubernetes"] = {"mode": "cluster", "replicas": 2, "resources": {"limits": {"cpu": "1", "memory": "256Mi"}}}
    prod["github"] = {**common["github"], "reviewers": [{"user": "release-lead", "id": 1}]}
    documents = (("dev", dev), ("staging", staging), ("prod", prod))
    return {name: parse_environment(name, document) for name, document in documents}


def _all_files(registry: dict[str, Any]) -> str:
    pipeline = derive_pipeline(_stacks(registry))
    files = {
        **github.render(pipeline),
        **gitlab.render(pipeline, RUNNER, PYTHON),
        **circleci.render(pipeline, RUNNER, PYTHON),
        **jenkins.render(pipeline, RUNNER, PYTHON),
    }
    return "\n".join(files.values())


@pytest.mark.parametrize("kind", list(CLOUDS))
def test_no_cloud_registry_login_uses_a_stored_password(kind: str) -> None:
    text = _all_files(CLOUDS[kind])
    assert "REGISTRY_PASSWORD" not in text, "a cloud registry's password is a token minted by the OIDC login"
    assert "registry-password" not in text
    # The program reads the token the job minted, in the variable passwordEnv names.
    assert 'REGISTRY_TOKEN="$(' in text


def test_ecr_logins() -> None:
    pipeline = derive_pipeline(_stacks(ECR))
    delivery = github.documents(pipeline)["delivery.yml"]["jobs"]
    configure = github.uses("aws-actions/configure-aws-credentials")
    for job_id in ("build", "scan", "supply-chain", "deploy-dev", "promote-staging"):
        steps = delivery[job_id]["steps"]
        (login,) = [step for step in steps if step.get("uses") == configure]
        assert login["with"] == {"role-to-assume": ROLE, "aws-region": "eu-west-1"}
        assert delivery[job_id]["permissions"]["id-token"] == "write"
    assert any(s.get("uses") == github.uses("aws-actions/amazon-ecr-login") for s in delivery["scan"]["steps"])
    build = next(s for s in delivery["build"]["steps"] if s.get("id") == "build")
    assert build["run"].startswith('REGISTRY_TOKEN="$(aws ecr get-login-password --region eu-west-1)"\n')
    lab = gitlab.document(pipeline, RUNNER, PYTHON)
    assert lab["build"]["id_tokens"] == {gitlab.OIDC_TOKEN: {"aud": "sts.amazonaws.com"}}
    assert "role_arn = %s\\nweb_identity_token_file" in "".join(lab["build"]["script"])
    assert ROLE in "".join(lab["build"]["script"])
    circle = circleci.document(pipeline, RUNNER, PYTHON)
    runs = [
        step["run"]["command"] for step in circle["jobs"]["scan"]["steps"] if isinstance(step, dict) and "run" in step
    ]
    assert any('"$CIRCLE_OIDC_TOKEN_V2"' in run for run in runs)
    assert any("aws ecr get-login-password --region eu-west-1" in run for run in runs)
    file = jenkins.document(pipeline, RUNNER, PYTHON)
    assert "withCredentials([string(credentialsId: 'dev-oidc-token', variable: 'DOCKYARD_OIDC_TOKEN')])" in file


def test_acr_and_google_logins() -> None:
    azure = derive_pipeline(_stacks({**ACR, "azure": AZURE}))
    steps = github.documents(azure)["delivery.yml"]["jobs"]["scan"]["steps"]
    assert steps[0]["uses"] == github.uses("azure/login")
    assert steps[0]["with"]["client-id"] == AZURE["clientId"]
    assert steps[1]["run"] == 'az acr login --name "$ACR_NAME"\n'
    lab = gitlab.document(azure, RUNNER, PYTHON)
    assert lab["scan"]["id_tokens"][gitlab.OIDC_TOKEN] == {"aud": "api://AzureADTokenExchange"}
    assert '--federated-token "$DOCKYARD_OIDC_TOKEN"' in "".join(lab["scan"]["script"])
    google = derive_pipeline(_stacks(GAR))
    steps = github.documents(google)["delivery.yml"]["jobs"]["supply-chain"]["steps"]
    assert steps[0]["with"] == {"workload_identity_provider": PROVIDER, "service_account": GCP["serviceAccount"]}
    assert steps[1]["run"] == 'gcloud auth configure-docker "$REGISTRY" --quiet\n'
    lab = gitlab.document(google, RUNNER, PYTHON)
    assert lab["build"]["id_tokens"][gitlab.OIDC_TOKEN] == {"aud": f"https://iam.googleapis.com/{PROVIDER}"}
    assert "gcloud auth print-access-token" in "".join(lab["build"]["script"])


def test_a_cloud_registry_without_its_oidc_login_or_token_variable_is_refused() -> None:
    with pytest.raises(PipelineConfigError, match=r"dev: registry\.aws: missing for kind ecr"):
        derive_pipeline(_stacks({key: value for key, value in ECR.items() if key != "aws"}))
    with pytest.raises(PipelineConfigError, match=r"dev: registry\.passwordEnv: missing for kind gar"):
        derive_pipeline(_stacks({key: value for key, value in GAR.items() if key != "passwordEnv"}))


# --- in-cluster pulls, under mocks ------------------------------------------------------------------------------


def _pull_secrets(mocks: RecordingMocks, registry: dict[str, Any]) -> list[Any]:
    @pulumi.runtime.test
    def run() -> None:
        pulumi.runtime.settings._set_stack("staging")
        config = {**stack_config("staging"), "dockyard:registry": registry}
        accept_running_digests("staging", config)
        set_stack_config(config)
        runpy.run_path(str(PROJECT / "__main__.py"), run_name="__main__")

    run()
    return [
        r
        for r in mocks.of_type("kubernetes:core/v1:Secret")
        if r.inputs.get("type") == "kubernetes.io/dockerconfigjson"
    ]


@pytest.fixture
def cloud_env(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # The token CI's OIDC login would have minted; the GitHub resources are not what this is about.
    monkeypatch.setenv("REGISTRY_TOKEN", PASSWORD)
    monkeypatch.setenv("DOCKYARD_SKIP_GITHUB", "1")
    return workdir


@pytest.mark.parametrize("kind", list(CLOUDS))
def test_a_cloud_registry_is_pulled_without_a_secret(mocks: RecordingMocks, cloud_env: Path, kind: str) -> None:
    assert _pull_secrets(mocks, CLOUDS[kind]) == []


def test_a_pull_secret_only_where_config_asks(mocks: RecordingMocks, cloud_env: Path) -> None:
    (secret,) = _pull_secrets(mocks, {**ECR, "pullSecret": True})
    assert secret.inputs["type"] == "kubernetes.io/dockerconfigjson"


def test_a_static_registry_still_gets_its_pull_secret(mocks: RecordingMocks, cloud_env: Path) -> None:
    registry = {"kind": "selfHosted", "server": "registry.example.com", "repository": "acme/app", "username": "ci"}
    assert len(_pull_secrets(mocks, {**registry, "passwordEnv": "REGISTRY_TOKEN"})) == 1
