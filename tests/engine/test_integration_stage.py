"""The integration stage with the real engine: `pulumi up --stack local` runs the app's integration tests against
the cache of app/compose.integration.yaml after the test stage; when they fail (CACHE_FAIL=true: the app counts two
visits per request, which only a real cache shows) the update fails before the push, naming the failing test, with
nothing pushed, nothing deployed and nothing of the build's pod left."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from dockyard_components.integration import leftovers
from tests.engine.harness import Workspace, image_repository, set_stack_config, with_integration_stage

pytestmark = pytest.mark.engine


def tags(repository: str) -> list[str]:
    """The repository's tags; none when the registry has no such repository."""
    listed = subprocess.run(["skopeo", "list-tags", f"docker://{repository}"], capture_output=True, text=True)
    return re.findall(r'^\s+"([^"]+)"', listed.stdout, re.MULTILINE) if listed.returncode == 0 else []


def test_a_failing_integration_test_fails_up_before_the_push(local_workspace: Workspace) -> None:
    local_workspace.init("local")
    with_integration_stage(local_workspace)
    set_stack_config(local_workspace, "local", ["image", "build", "buildArgs", "CACHE_FAIL"], "true")
    repository = image_repository(local_workspace)
    before = tags(repository)
    failed = local_workspace.pulumi("up", "--stack", "local", "--yes", "--skip-preview", check=False, timeout=2400)
    assert failed.returncode != 0, failed.output
    assert "failed while running the integration tests: service tests of compose.integration.yaml" in failed.output
    assert "--- FAIL: TestIntegrationVisitsAreCountedInTheCache" in failed.output
    assert "visits 2, want 1" in failed.output
    assert tags(repository) == before, "nothing pushed"
    resources = local_workspace.export("local")["deployment"].get("resources") or []
    assert not [r["urn"] for r in resources if r["type"] == "kubernetes:apps/v1:Deployment"], "nothing deployed"
    (project,) = set(re.findall(r"podman pod (dockyard-it-[0-9a-f]+)", failed.output))
    deadline = time.monotonic() + 30
    while leftovers(os.environ, project) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert leftovers(os.environ, project) == []
