"""Promotion and rollback with the real engine: local → local-staging (live cluster), gates, history, locks."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import yaml

from dockyard.releases.moves import Releases
from dockyard.releases.project import Project
from tests.engine.harness import Workspace, deploy_local_stacks, deployment_images, dockyard, live_specs, rolling

pytestmark = pytest.mark.engine


def changed_paths(before: Any, after: Any, prefix: str = "") -> set[str]:
    """Dotted paths whose values differ between two JSON-like documents."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys = before.keys() | after.keys()
        return {p for k in keys for p in changed_paths(before.get(k), after.get(k), f"{prefix}{k}.")}
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return {
            p for i, (b, a) in enumerate(zip(before, after, strict=True)) for p in changed_paths(b, a, f"{prefix}{i}.")
        }
    return set() if before == after else {prefix.rstrip(".")}


def state(workspace: Workspace, stack: str) -> str:
    return json.dumps(workspace.export(stack)["deployment"].get("resources"), sort_keys=True)


@pytest.fixture(scope="module")
def deployed(local_workspace: Workspace) -> Workspace:
    """local built and pushed; local-staging, made rolling (a promotion writes image.ref; canary and blue-green
    moves are test_progressive's), deployed once before its first release (no Deployment yet)."""
    rolling(local_workspace, "local-staging")
    deploy_local_stacks(local_workspace)
    # local-staging is tier staging: it takes only digests that passed `dockyard verify` on local.
    verified = dockyard(local_workspace, "verify", "--stack", "local")
    assert verified.returncode == 0, verified.output
    return local_workspace


def test_preview_only_of_the_first_release_creates_only_its_deployment_and_restores_the_config(
    deployed: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_before = deployed.stack_file("local-staging").read_bytes()
    result = dockyard(deployed, "promote", "--from", "local", "--to", "local-staging")
    assert result.returncode == 0, result.output
    assert "previewed only" in result.output
    assert deployed.stack_file("local-staging").read_bytes() == config_before
    for key, value in deployed.env.items():
        monkeypatch.setenv(key, value)
    outcome = Releases(Project(deployed.directory)).promote("local", "local-staging", yes=False, confirm=lambda: False)
    # The stack had no release: the stable track's Deployment is created, nothing else changes. (That a later
    # promotion changes only the image is test_promote_apply_then_rollback_restores_identical_manifests'.)
    assert {(c.op, c.name) for c in outcome.changes} == {("create", "app-stable")}


def test_forbidden_order_unknown_stack_and_freeze_are_refused_untouched(deployed: Workspace) -> None:
    before = state(deployed, "local-staging"), deployed.stack_file("local-staging").read_bytes()
    wrong_order = dockyard(deployed, "promote", "--from", "local-staging", "--to", "local", "--yes")
    assert wrong_order.returncode == 1
    assert "local accepts no promotions" in wrong_order.output
    unknown = dockyard(deployed, "promote", "--from", "uat", "--to", "local-staging", "--yes")
    assert unknown.returncode == 1
    assert "uat: no such stack" in unknown.output

    frozen = yaml.safe_load(before[1])
    frozen["config"]["dockyard:promotion"]["freezeWindows"] = [
        {"start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z", "reason": "test freeze"}
    ]
    deployed.stack_file("local-staging").write_text(yaml.safe_dump(frozen))
    try:
        refused = dockyard(deployed, "promote", "--from", "local", "--to", "local-staging", "--yes")
    finally:
        deployed.stack_file("local-staging").write_bytes(before[1])
    assert refused.returncode == 1
    assert (
        "local-staging is frozen from 2000-01-01T00:00:00+00:00 to 2100-01-01T00:00:00+00:00 (test freeze)"
        in refused.output
    )
    assert (state(deployed, "local-staging"), deployed.stack_file("local-staging").read_bytes()) == before


def test_engine_lock_stops_a_concurrent_promotion(deployed: Workspace) -> None:
    before = state(deployed, "local-staging"), deployed.stack_file("local-staging").read_bytes()
    locks = deployed.backend / ".pulumi" / "locks" / "organization" / "dockyard" / "local-staging"
    locks.mkdir(parents=True, exist_ok=True)
    lock = locks / f"{uuid.uuid4()}.json"
    lock.write_text(
        json.dumps({"pid": 1, "username": "someone", "hostname": "elsewhere", "timestamp": "2026-11-26T00:00:00Z"})
    )
    try:
        result = dockyard(deployed, "promote", "--from", "local", "--to", "local-staging", "--yes")
    finally:
        lock.unlink()
    assert result.returncode == 1, result.output
    assert "being updated by someone else; nothing changed" in result.output
    assert (state(deployed, "local-staging"), deployed.stack_file("local-staging").read_bytes()) == before


def test_dockyard_lock_stops_a_second_promoter(deployed: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_BACKEND_URL", deployed.env["PULUMI_BACKEND_URL"])  # the lock is per backend + stack
    with Project(deployed.directory).lock("local-staging"):
        result = dockyard(deployed, "promote", "--from", "local", "--to", "local-staging", "--yes")
    assert result.returncode == 1
    assert "another dockyard operation on local-staging is in progress" in result.output


def test_promote_apply_then_rollback_restores_identical_manifests(deployed: Workspace) -> None:
    first = deployed.outputs("local")["image_ref"]
    promoted = dockyard(deployed, "promote", "--from", "local", "--to", "local-staging", "--yes")
    assert promoted.returncode == 0, promoted.output
    assert deployment_images(deployed, "local-staging") == {first}
    assert deployed.outputs("local-staging")["image_ref"] == first
    after_first = live_specs(deployed, "local-staging")

    # A new release: change the app, rebuild local (new digest), promote it.
    main_go = deployed.directory / "app" / "main.go"
    main_go.write_text(main_go.read_text() + "\n// release 2\n")
    deployed.pulumi("up", "--stack", "local", "--yes", timeout=2400)
    second = deployed.outputs("local")["image_ref"]
    assert second != first
    assert dockyard(deployed, "verify", "--stack", "local").returncode == 0
    assert dockyard(deployed, "promote", "--from", "local", "--to", "local-staging", "--yes").returncode == 0
    assert deployment_images(deployed, "local-staging") == {second}
    assert changed_paths(after_first, live_specs(deployed, "local-staging")) == {
        "dockyard-app-stable.template.spec.containers.0.image",
        "dockyard-app-stable.template.metadata.labels.app.kubernetes.io/version",
    }, "a promotion changes only the image (and the version label derived from it) on the live Deployment"

    unknown = dockyard(deployed, "rollback", "--stack", "local-staging", "--to", "sha256:" + "9" * 64, "--yes")
    assert unknown.returncode == 1
    assert "does not exist in local-staging's registry" in unknown.output
    assert deployment_images(deployed, "local-staging") == {second}

    rolled_back = dockyard(deployed, "rollback", "--stack", "local-staging", "--yes")
    assert rolled_back.returncode == 0, rolled_back.output
    assert live_specs(deployed, "local-staging") == after_first, (
        "the rollback restores the live Deployment spec exactly"
    )

    history = json.loads(dockyard(deployed, "history", "--stack", "local-staging", "--json").stdout)
    assert [entry["action"] for entry in history[:3]] == ["rollback", "promote", "promote"]
    assert [entry["image"] for entry in history[:3]] == [first, second, first]
    assert history[1]["source"] == "local"
    assert "@" in history[0]["actor"]
