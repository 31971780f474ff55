"""Registry credentials on the live chain: a wrong one is refused before it is deployed, a rotation updates in place.

One workspace, stack ``local`` (build, push, sign, deploy) against the drill's own registry, which accepts two users:
``dockyard`` and ``rotated``. Each step reads the live objects with ``kubectl``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.drills.conftest import ROTATED_USER, DrillRegistry
from tests.engine.harness import Result, Workspace, live, make_workspace, set_stack_config

pytestmark = pytest.mark.drills

STACK = "local"
DEPLOYMENT_TYPE = "kubernetes:apps/v1:Deployment"
NEW_APP_SECRET = "sentinel-rotated-app-secret"
#: Plan steps that take a Deployment away (replacement or deletion): a rotation must have none.
DESTRUCTIVE_OPS = {"replace", "create-replacement", "delete-replaced", "delete", "discard-replaced"}


@pytest.fixture(scope="module")
def deployed(
    engine: str,
    local_services: dict[str, str],
    drill_registry: DrillRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Workspace:
    env = {
        **local_services,
        "DOCKYARD_SKIP_GITHUB": "1",
        "DOCKYARD_REGISTRY_CA": drill_registry.env["DOCKYARD_REGISTRY_CA"],
        "DOCKYARD_REGISTRY_PASSWORD": drill_registry.password,
    }
    workspace = make_workspace(tmp_path_factory.mktemp("credentials"), env)
    set_stack_config(workspace, STACK, ["registry", "server"], drill_registry.server)
    # The scan reads its DB from the same registry (local-services.sh published it there), with the same credentials.
    set_stack_config(
        workspace, STACK, ["signing", "scan", "dbRepository"], f"{drill_registry.server}/dockyard/trivy-db:2"
    )
    workspace.init(STACK)
    workspace.pulumi("up", "--stack", STACK, "--yes", timeout=2400)
    return workspace


def pull_secret(workspace: Workspace) -> dict[str, Any]:
    secrets = [s for s in live(workspace, STACK, "secrets").values() if s["type"] == "kubernetes.io/dockerconfigjson"]
    assert len(secrets) == 1, [s["metadata"]["name"] for s in secrets]
    return secrets[0]


def pull_user(secret: dict[str, Any]) -> str:
    document = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    (entry,) = document["auths"].values()
    return str(entry["username"])


def deployment_uids(workspace: Workspace) -> dict[str, str]:
    return {name: d["metadata"]["uid"] for name, d in live(workspace, STACK, "deployments").items()}


def with_credential(workspace: Workspace, user: str, password: str) -> None:
    set_stack_config(workspace, STACK, ["registry", "username"], user)
    workspace.env["DOCKYARD_REGISTRY_PASSWORD"] = password


def assert_clean_failure(result: Result) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.output, result.output[-3000:]


def test_wrong_password_fails_and_leaves_the_pull_secret(deployed: Workspace, drill_registry: DrillRegistry) -> None:
    before = pull_secret(deployed)
    with_credential(deployed, "dockyard", "not-the-password")
    try:
        for command in (["preview"], ["up", "--yes"]):
            result = deployed.pulumi(*command, "--stack", STACK, check=False)
            assert_clean_failure(result)
            assert "refused the credentials of user 'dockyard' (401)" in result.output
            assert "check dockyard:registryPassword" in result.output
            assert "not-the-password" not in result.output
        after = pull_secret(deployed)
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert after["data"] == before["data"]
    finally:
        with_credential(deployed, "dockyard", drill_registry.password)
    deployed.pulumi("up", "--stack", STACK, "--yes", "--expect-no-changes")


def test_rotation_plan_keeps_every_deployment(deployed: Workspace, drill_registry: DrillRegistry) -> None:
    with_credential(deployed, ROTATED_USER, drill_registry.rotated_password)
    try:
        plan = deployed.pulumi("preview", "--stack", STACK, "--json").json()
    finally:
        with_credential(deployed, "dockyard", drill_registry.password)
    steps = [
        (s["op"], s["urn"].split("::")[-1]) for s in plan["steps"] if s["urn"].split("::")[-2].endswith(DEPLOYMENT_TYPE)
    ]
    assert steps, "the plan names no Deployment"
    assert not [step for step in steps if step[0] in DESTRUCTIVE_OPS], steps


def test_rotation_updates_in_place_and_converges(deployed: Workspace, drill_registry: DrillRegistry) -> None:
    uids = deployment_uids(deployed)
    assert pull_user(pull_secret(deployed)) == "dockyard"
    with_credential(deployed, ROTATED_USER, drill_registry.rotated_password)
    deployed.pulumi("up", "--stack", STACK, "--yes")
    assert deployment_uids(deployed) == uids
    assert pull_user(pull_secret(deployed)) == ROTATED_USER
    deployed.pulumi("up", "--stack", STACK, "--yes", "--expect-no-changes")


def test_unreachable_registry_is_named_with_the_way_out(deployed: Workspace, drill_registry: DrillRegistry) -> None:
    # Back to the first user: a changed credential, so the check asks the (stopped) registry.
    with_credential(deployed, "dockyard", drill_registry.password)
    with drill_registry.stopped():
        result = deployed.pulumi("preview", "--stack", STACK, check=False)
    assert_clean_failure(result)
    assert f"unreachable (connection refused at {drill_registry.server})" in result.output
    assert "scripts/local-services.sh start" in result.output
    assert "registryPassword" not in result.output


def test_registry_down_during_a_build_is_named_without_a_traceback(
    deployed: Workspace, drill_registry: DrillRegistry
) -> None:
    # The credential the state holds (the rotation above): unchanged, so only the build meets the registry.
    with_credential(deployed, ROTATED_USER, drill_registry.rotated_password)
    source = deployed.directory / "app" / "main.go"
    source.write_text(source.read_text() + "\n// a one-line change: the image is rebuilt\n")
    with drill_registry.stopped():
        result = deployed.pulumi("up", "--stack", STACK, "--yes", check=False)
    assert_clean_failure(result)
    assert f"registry {drill_registry.server} unreachable" in result.output
    assert "start it with scripts/local-services.sh start" in result.output
    assert "was refused" not in result.output
    assert "full output: " in result.output


def test_a_changed_app_secret_or_setting_keeps_every_deployment(deployed: Workspace) -> None:
    """The same for what the pods read: a rotated app secret and a changed setting replace their Secret and ConfigMap
    (their data is immutable to the provider) create-before-delete, and update the Deployments in place."""
    stack_file = deployed.stack_file(STACK)
    original = stack_file.read_bytes()
    try:
        deployed.pulumi(
            "config", "set", "--secret", "--path", "dockyard:appSecrets.API_KEY", "--stack", STACK, stdin=NEW_APP_SECRET
        )
        set_stack_config(deployed, STACK, ["kubernetes", "env", "LOG_LEVEL"], "info")
        plan = deployed.pulumi("preview", "--stack", STACK, "--json").json()
    finally:
        stack_file.write_bytes(original)
    steps = [(s["op"], s["urn"].split("::")[-2].rsplit("$", 1)[-1], s["urn"].split("::")[-1]) for s in plan["steps"]]
    replaced = {(kind, name) for op, kind, name in steps if op in ("replace", "create-replacement")}
    assert {("kubernetes:core/v1:Secret", "app-secrets"), ("kubernetes:core/v1:ConfigMap", "app-config")} <= replaced, (
        steps
    )
    deployments = [(op, name) for op, kind, name in steps if kind == DEPLOYMENT_TYPE]
    assert deployments, "the plan names no Deployment"
    assert all(op == "update" for op, _ in deployments), deployments
    assert NEW_APP_SECRET not in json.dumps(plan), "the new secret value stays a secret in the plan"
