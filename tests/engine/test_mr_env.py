"""An environment per merge request with the real engine on the local cluster: made from local with a digest local
built (its own namespace, that digest on every Deployment, the expiry in its config), updated with the next digest
(the expiry extended), destroyed (objects, stack and file gone; a second destroy has nothing to do), and the expired
ones swept while an unexpired one stays, also when only the backend knows it (a CI job's fresh checkout)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from tests.engine.harness import (
    Workspace,
    deployment_images,
    dockyard,
    history,
    kubectl,
    namespace_of,
    ok,
    release,
)

pytestmark = pytest.mark.engine

MR = "7"
STACK = f"local-mr-{MR}"


@pytest.fixture(scope="module")
def built(local_workspace: Workspace) -> tuple[Workspace, str]:
    """local built, signed (its trust policy is the environment's too) and deployed: its digest is the merge
    request's."""
    local_workspace.init("local")
    local_workspace.pulumi("up", "--stack", "local", "--yes", timeout=2400)
    return local_workspace, str(local_workspace.outputs("local")["image_ref"])


def stacks(workspace: Workspace) -> set[str]:
    return {str(entry["name"]).rsplit("/", 1)[-1] for entry in workspace.pulumi("stack", "ls", "--json").json()}


def expiry(workspace: Workspace, stack: str) -> datetime:
    document = yaml.safe_load(workspace.stack_file(stack).read_text())
    return datetime.fromisoformat(document["config"]["dockyard:mergeRequest"]["expires"].replace("Z", "+00:00"))


def test_an_environment_is_made_from_local_and_deploys_the_merge_requests_digest(
    built: tuple[Workspace, str],
) -> None:
    workspace, image = built
    before = datetime.now(UTC).replace(microsecond=0)  # the stack file keeps the expiry in whole seconds
    out = ok(workspace, "env", "create", "--from", "local", "--mr", MR, "--image", image, "--ttl", "2h")
    assert f"deployed {STACK} → {image}" in out
    assert namespace_of(workspace, STACK) == f"{namespace_of(workspace, 'local')}-mr-{MR}"
    assert deployment_images(workspace, STACK) == {image}
    assert before + timedelta(hours=2) <= expiry(workspace, STACK) <= datetime.now(UTC) + timedelta(hours=2)
    assert history(workspace, STACK)[0]["action"] == "mr-env"
    # The template is untouched: its own namespace still runs its own release.
    assert deployment_images(workspace, "local") == {image}
    assert "dockyard:mergeRequest" not in workspace.stack_file("local").read_text()


def test_a_rerun_deploys_the_next_digest_and_extends_the_expiry(built: tuple[Workspace, str]) -> None:
    workspace, image = built
    first = expiry(workspace, STACK)
    # The next release of the merge request: another build, signed like the first (kwok's pods are Ready whatever
    # its health path says).
    following = release(workspace, health_fail=True)
    assert following != image
    ok(workspace, "env", "create", "--from", "local", "--mr", MR, "--image", following, "--ttl", "5h")
    assert deployment_images(workspace, STACK) == {following}
    assert expiry(workspace, STACK) > first + timedelta(hours=2)
    assert history(workspace, STACK)[0]["from"] == image


def test_bad_input_is_refused_before_anything_is_touched(built: tuple[Workspace, str]) -> None:
    workspace, image = built
    before = workspace.stack_file(STACK).read_bytes()
    refused = dockyard(workspace, "env", "create", "--from", "local", "--mr", MR, "--image", image.split("@")[0])
    assert refused.returncode == 1
    assert "not digest-pinned" in refused.output
    assert workspace.stack_file(STACK).read_bytes() == before
    prod = dockyard(workspace, "env", "create", "--from", "local-prod", "--mr", MR, "--image", image)
    assert prod.returncode == 1
    assert "tier prod" in prod.output
    assert "local-prod-mr-7" not in stacks(workspace)


def test_destroy_takes_the_environment_down_and_a_second_destroy_has_nothing_to_do(
    built: tuple[Workspace, str],
) -> None:
    workspace, _ = built
    namespace = namespace_of(workspace, STACK)
    out = ok(workspace, "env", "destroy", "--mr", MR)
    assert f"destroyed {STACK}" in out
    assert STACK not in stacks(workspace)
    assert not workspace.stack_file(STACK).exists()
    # The namespace is deleted (the controller may still be finalizing it).
    gone = kubectl(workspace, "get", "namespace", namespace, "-o", "jsonpath={.status.phase}", check=False)
    assert gone.returncode != 0 or gone.stdout == "Terminating", gone.output
    assert "nothing to destroy" in ok(workspace, "env", "destroy", "--mr", MR)
    # The template still serves.
    assert deployment_images(workspace, "local")


def test_sweep_destroys_the_expired_environments_only(built: tuple[Workspace, str]) -> None:
    workspace, image = built
    ok(workspace, "env", "create", "--from", "local", "--mr", "8", "--image", image, "--ttl", "1h")
    ok(workspace, "env", "create", "--from", "local", "--mr", "9", "--image", image, "--ttl", "72h")
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat(timespec="seconds")

    dry = ok(workspace, "env", "sweep", "--now", later, "--dry-run")
    assert "would destroy local-mr-8" in dry
    assert "kept local-mr-9" in dry
    assert {"local-mr-8", "local-mr-9"} <= stacks(workspace)

    swept = ok(workspace, "env", "sweep", "--now", later)
    assert "destroyed local-mr-8" in swept
    assert "local-mr-8" not in stacks(workspace)
    assert deployment_images(workspace, "local-mr-9") == {image}

    # A scheduled CI job's fresh checkout: no file, the backend alone knows the environment and its expiry.
    workspace.stack_file("local-mr-9").unlink()
    much_later = (datetime.now(UTC) + timedelta(days=4)).isoformat(timespec="seconds")
    assert "destroyed local-mr-9" in ok(workspace, "env", "sweep", "--now", much_later)
    assert "local-mr-9" not in stacks(workspace)
    assert not workspace.stack_file("local-mr-9").exists()
