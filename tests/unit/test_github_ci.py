"""CiPipeline under Pulumi mocks, built from the committed stack configs with sentinel secrets.

A recording monitor keeps every registration as serialized for the engine (secrets still wrapped), so the tests see
both whether a sentinel reaches a resource and whether it arrives marked secret.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
from google.protobuf import json_format  # type: ignore[import-untyped]
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings

from dockyard.model.config import EnvironmentConfig, Tier
from dockyard.pipeline import github
from dockyard.pipeline.derive import read_stack_environments
from dockyard.program import args as wiring
from dockyard.program.stack_config import StackConfig, StackSecrets
from dockyard_components import github_ci

ROOT = Path(__file__).resolve().parents[2]
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
GITHUB_STACKS = ["dev", "prod", "staging"]


@dataclass
class Registration:
    type: str
    name: str
    parent: str
    urn: str
    inputs: dict[str, Any]
    """Inputs as serialized for the engine: secrets appear as ``{SECRET_SIG_KEY: SECRET_SIG, "value": ...}``."""


@dataclass
class Recorder:
    registrations: list[Registration] = field(default_factory=list)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def of_type(self, token: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == token]

    def github(self) -> list[Registration]:
        return [r for r in self.registrations if r.type.startswith("github:")]


class Mocks(pulumi.runtime.Mocks):
    """Resources echo their inputs; any invoke is unexpected (the component must not read GitHub)."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise AssertionError(f"unexpected invoke {args.token}")


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: Mocks, recorder: Recorder) -> None:
        super().__init__(mocks)
        self.recorder = recorder

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        self.recorder.registrations.append(
            Registration(
                type=request.type,
                name=request.name,
                parent=request.parent,
                urn=response.urn,
                inputs=json_format.MessageToDict(request.object),
            )
        )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802
        self.recorder.outputs[request.urn] = json_format.MessageToDict(request.outputs)
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


_SETTINGS = (
    "monitor",
    "engine",
    "project",
    "stack",
    "organization",
    "root_directory",
    "dry_run",
    "parallel",
    "legacy_apply_enabled",
    "monitor_features",
    "package_refs",
    "callbacks",
)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """Mocks with a recording monitor; the runtime settings and root resource are restored afterwards."""
    saved = {name: getattr(pulumi_settings.SETTINGS, name) for name in _SETTINGS}
    saved_root = pulumi_settings.get_root_resource()
    recorder = Recorder()
    mocks = Mocks()
    try:
        pulumi.runtime.set_mocks(mocks, preview=False, monitor=RecordingMonitor(mocks, recorder))
        yield recorder
    finally:
        for name, value in saved.items():
            setattr(pulumi_settings.SETTINGS, name, value)
        pulumi_settings.ROOT.set(saved_root)


def run(program: Callable[[], None]) -> None:
    """Run ``program`` and wait until every registration it started has reached the monitor."""
    pulumi.runtime.test(program)()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def environments() -> dict[str, EnvironmentConfig]:
    # Parses each Pulumi.<stack>.yaml's dockyard: keys with dockyard.model.config.parse_environment.
    return read_stack_environments(ROOT)


def sentinel(stack: str, key: str) -> str:
    return f"sentinel-{stack}-{key}"


def stack_config(stack: str, env: EnvironmentConfig, **missing: bool) -> StackConfig:
    def secret(key: str) -> pulumi.Output[str] | None:
        return None if missing.get(key) else pulumi.Output.secret(sentinel(stack, key))

    return StackConfig(
        stack=stack,
        env=env,
        secrets=StackSecrets(
            registry_password=secret("registry"),
            kubeconfig=secret("kubeconfig"),
            app_secrets=pulumi.Output.secret({"APP_TOKEN": sentinel(stack, "app")}),
            ci_pulumi_passphrase=secret("passphrase"),
        ),
    )


def build(stack: str, environments: dict[str, EnvironmentConfig], **missing: bool) -> None:
    config = stack_config(stack, environments[stack], **missing)

    def program() -> None:
        github_ci.CiPipeline("ci", wiring.pipeline_args(config, project_dir=ROOT))

    run(program)


def _contains(value: Any, text: str) -> bool:
    return text in json.dumps(value)


# --- secrets ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", GITHUB_STACKS)
def test_secrets_reach_only_the_environment_secrets_and_arrive_marked_secret(
    stack: str, environments: dict[str, EnvironmentConfig], recorder: Recorder
) -> None:
    build(stack, environments)

    secrets = recorder.of_type("github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret")
    expected = {
        ("REGISTRY_PASSWORD", stack): sentinel(stack, "registry"),
        ("KUBECONFIG", stack): sentinel(stack, "kubeconfig"),
        ("PULUMI_CONFIG_PASSPHRASE", stack): sentinel(stack, "passphrase"),
        ("PULUMI_CONFIG_PASSPHRASE", f"{stack}-preview"): sentinel(stack, "passphrase"),
    }
    actual = {}
    for registration in secrets:
        value = registration.inputs["value"]
        assert value[SECRET_SIG_KEY] == SECRET_SIG, f"{registration.name}: value is not registered as a secret"
        actual[(registration.inputs["secretName"], registration.inputs["environment"])] = value["value"]
        others = {k: v for k, v in registration.inputs.items() if k != "value"}
        assert not _contains(others, "sentinel-"), f"{registration.name}: a secret leaked into another input"
    assert actual == expected

    for registration in recorder.registrations:
        if registration in secrets:
            continue
        assert not _contains(registration.inputs, "sentinel-"), f"{registration.type} {registration.name}"
    for urn, outputs in recorder.outputs.items():
        assert not _contains(outputs, "sentinel-"), f"component outputs of {urn}"
    assert not _contains(recorder.outputs, sentinel(stack, "app")), "app secrets never go to GitHub"


def test_a_missing_secret_is_skipped_with_a_warning(
    environments: dict[str, EnvironmentConfig], recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        build("dev", environments, kubeconfig=True)
    names = {r.inputs["secretName"] for r in recorder.of_type(_SECRET)}
    assert names == {"REGISTRY_PASSWORD", "PULUMI_CONFIG_PASSPHRASE"}
    assert any("dockyard:kubeconfig is not set" in message for message in caplog.messages)


_SECRET = "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret"
_ENVIRONMENT = "github:index/repositoryEnvironment:RepositoryEnvironment"
_POLICY = "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy"
_VARIABLE = "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable"


# --- environments ----------------------------------------------------------------------------------------------


def _environment(recorder: Recorder, name: str) -> dict[str, Any]:
    [registration] = [r for r in recorder.of_type(_ENVIRONMENT) if r.inputs["environment"] == name]
    return registration.inputs


def test_prod_environment_is_gated_by_the_configured_reviewers(
    environments: dict[str, EnvironmentConfig], recorder: Recorder
) -> None:
    build("prod", environments)
    prod = _environment(recorder, "prod")
    reviewers = environments["prod"].github.reviewers
    assert prod["reviewers"] == [
        {
            "users": [float(r.id) for r in reviewers if r.user is not None],
            "teams": [float(r.id) for r in reviewers if r.team is not None],
        }
    ]
    assert prod["reviewers"][0]["teams"] == [4210001.0]
    assert prod["reviewers"][0]["users"] == [9120002.0]
    assert prod["preventSelfReview"] is True
    assert prod["canAdminsBypass"] is False
    # The wait timer runs beside the review: at least prod's promotion soak (120 min), not only its 5 min timer.
    assert prod["waitTimer"] == 120.0
    assert prod["deploymentBranchPolicy"] == {"customBranchPolicies": True, "protectedBranches": False}
    policies = sorted(
        (r.inputs.get("branchPattern", ""), r.inputs.get("tagPattern", ""), r.inputs["environment"])
        for r in recorder.of_type(_POLICY)
    )
    assert policies == [("", "v*", "prod"), ("main", "", "prod")]

    preview = _environment(recorder, "prod-preview")
    assert preview["reviewers"] == prod["reviewers"]
    assert preview["preventSelfReview"] is True
    assert "deploymentBranchPolicy" not in preview, "pull-request branches must be able to preview"


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_lower_tier_environments_have_no_reviewers_or_policies(
    stack: str, environments: dict[str, EnvironmentConfig], recorder: Recorder
) -> None:
    assert environments[stack].tier != Tier.PROD
    build(stack, environments)
    for name in (stack, f"{stack}-preview"):
        environment = _environment(recorder, name)
        assert not environment.get("reviewers")
        assert "deploymentBranchPolicy" not in environment
    # The promotion soak holds deployments (the pipeline's promotion waits instead of being refused); never previews.
    soak = environments[stack].promotion.soak_minutes
    assert _environment(recorder, stack).get("waitTimer") == (float(soak) if soak else None)
    assert "waitTimer" not in _environment(recorder, f"{stack}-preview")
    assert recorder.of_type(_POLICY) == []


def test_environment_variables_are_non_secret_settings(
    environments: dict[str, EnvironmentConfig], recorder: Recorder
) -> None:
    build("staging", environments)
    variables = {r.inputs["variableName"]: r.inputs["value"] for r in recorder.of_type(_VARIABLE)}
    assert variables == {
        "REGISTRY_HOST": "ghcr.io",
        "IMAGE_NAME": "ghcr.io/acme/dockyard-app",
        "REGISTRY_USERNAME": "acme-ci",
        "PULUMI_STACK": "staging",
        "K8S_NAMESPACE": "dockyard-app-staging",
    }
    assert {r.inputs["environment"] for r in recorder.of_type(_VARIABLE)} == {"staging"}


# --- repository-wide resources ---------------------------------------------------------------------------------


def test_only_the_prod_tier_stack_manages_the_repository(environments: dict[str, EnvironmentConfig]) -> None:
    owners = [stack for stack in GITHUB_STACKS if wiring.manages_repository(stack_config(stack, environments[stack]))]
    assert owners == ["prod"]


@pytest.mark.parametrize("stack", GITHUB_STACKS)
def test_branch_protection_and_workflow_files_come_from_one_stack(
    stack: str, environments: dict[str, EnvironmentConfig], recorder: Recorder
) -> None:
    build(stack, environments)
    protections = recorder.of_type("github:index/branchProtection:BranchProtection")
    files = recorder.of_type("github:index/repositoryFile:RepositoryFile")
    if stack != "prod":
        assert protections == []
        assert files == []
        return
    [protection] = protections
    assert protection.inputs["pattern"] == "main"
    assert protection.inputs["repositoryId"] == "dockyard"
    assert protection.inputs["requiredStatusChecks"] == [
        {"strict": True, "contexts": github.required_checks(environments)}
    ]
    committed = {
        str(path.relative_to(ROOT)): path.read_text(encoding="utf-8")
        for path in (ROOT / ".github" / "workflows").glob("*.yml")
    }
    assert {f.inputs["file"]: f.inputs["content"] for f in files} == committed
    assert {f.inputs["branch"] for f in files} == {"main"}


# --- structure -------------------------------------------------------------------------------------------------


def test_children_are_parented_and_named_after_the_component(
    environments: dict[str, EnvironmentConfig], recorder: Recorder
) -> None:
    build("prod", environments)
    [component] = recorder.of_type(github_ci.TYPE_TOKEN)
    children = recorder.github()
    assert children
    for child in children:
        assert child.parent == component.urn, child.name
        assert child.name.startswith("ci-"), child.name
    assert len({child.name for child in children}) == len(children)
    outputs = recorder.outputs[component.urn]
    assert outputs["environment_name"] == "prod"
    assert outputs["preview_environment_name"] == "prod-preview"
    assert sorted(outputs["secret_names"]) == ["KUBECONFIG", "PULUMI_CONFIG_PASSPHRASE", "REGISTRY_PASSWORD"]


@pytest.mark.parametrize("stack", ["local", "local-prod"])
def test_local_stacks_create_no_github_resources(
    stack: str, environments: dict[str, EnvironmentConfig], recorder: Recorder
) -> None:
    config = stack_config(stack, environments[stack])
    assert not wiring.wants_ci_pipeline(config)
    assert not wiring.manages_repository(config)
    with pytest.raises(ValueError, match=r"github\.enabled is false"):
        wiring.pipeline_args(config, project_dir=ROOT)

    def program() -> None:
        # The __main__ pattern of dockyard/program/args.py.
        if wiring.wants_ci_pipeline(config):
            github_ci.CiPipeline("ci", wiring.pipeline_args(config, project_dir=ROOT))

    run(program)
    assert recorder.github() == []
    assert recorder.of_type(github_ci.TYPE_TOKEN) == []


def test_the_backend_url_reaches_github_as_a_repository_secret_only(
    environments: dict[str, EnvironmentConfig], recorder: Recorder
) -> None:
    # A postgres:// URL may carry the database password: a secret, never an Actions variable.
    url = "postgres://dockyard:sentinel-backend-password@db.internal:5432/state?sslmode=verify-full"
    config = stack_config("prod", environments["prod"])

    def program() -> None:
        github_ci.CiPipeline("ci", wiring.pipeline_args(config, project_dir=ROOT, pulumi_backend_url=url))

    run(program)
    [secret] = recorder.of_type("github:index/actionsSecret:ActionsSecret")
    assert secret.inputs["secretName"] == "PULUMI_BACKEND_URL"
    assert secret.inputs["plaintextValue"] == {SECRET_SIG_KEY: SECRET_SIG, "value": url}
    for registration in recorder.registrations:
        if registration is not secret:
            assert not _contains(registration.inputs, "sentinel-backend"), f"{registration.type} {registration.name}"
