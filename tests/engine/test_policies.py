"""The policy pack with the real engine: each rule fails a preview (mandatory) or warns (advisory)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.engine.harness import Workspace, make_workspace
from tests.stacks import PROJECT

pytestmark = pytest.mark.engine

POLICIES = PROJECT / "policies"
CASES = {
    "approved-registries": "image docker.io/library/nginx@sha256:",
    "immutable-images": "image ghcr.io/acme/app:1.2.3 is mutable in prod",
    "resource-limits": "container app: no cpu limit",
    "pod-security": "container app: allowPrivilegeEscalation is not false",
    "no-plaintext-secret-env": "env DB_PASSWORD holds a literal value",
    "prod-availability": "Deployment case: 1 replica(s) in prod; at least 2",
}


@pytest.fixture(scope="module")
def cases(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("policy")
    workspace = make_workspace(root)
    program = root / "program"
    shutil.copytree(Path(__file__).parent / "policy_program", program, ignore=shutil.ignore_patterns("__pycache__"))
    (program / ".venv").symlink_to(PROJECT / ".venv")
    workspace.directory = program
    return workspace


def preview(workspace: Workspace, case: str, config: dict[str, str] | None = None) -> tuple[int, str]:
    workspace.init(case)
    workspace.pulumi("config", "set", "case", case, "--stack", case)
    args = ["preview", "--stack", case, "--policy-pack", str(POLICIES)]
    if config is not None:
        config_file = workspace.directory / f"policy-config-{case}.json"
        config_file.write_text(json.dumps(config))
        args += ["--policy-pack-config", str(config_file)]
    result = workspace.pulumi(*args, check=False)
    return result.returncode, " ".join(result.output.split())


def test_a_compliant_program_passes(cases: Workspace) -> None:
    code, output = preview(cases, "good")
    assert code == 0, output
    assert "mandatory" not in output


@pytest.mark.parametrize(("rule", "message"), CASES.items(), ids=list(CASES))
def test_mandatory_rule_fails_the_preview(cases: Workspace, rule: str, message: str) -> None:
    code, output = preview(cases, rule)
    assert code != 0
    assert f"[mandatory] {rule}" in output
    assert message in output


@pytest.mark.parametrize(("rule", "message"), CASES.items(), ids=list(CASES))
def test_advisory_rule_only_warns(cases: Workspace, rule: str, message: str) -> None:
    code, output = preview(cases, rule, {rule: "advisory"})
    assert code == 0, output
    assert f"[advisory] {rule}" in output
    assert message in output


def test_allowed_registries_are_configurable(cases: Workspace) -> None:
    allow = {"approved-registries": {"enforcementLevel": "mandatory", "allowedRegistries": ["docker.io", "ghcr.io"]}}
    code, output = preview(cases, "approved-registries", allow)
    assert code == 0, output
