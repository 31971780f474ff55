"""Verification with the real engine, registry and buildah: local → local-staging, a broken build, automatic rollback.

The tests run in order on one workspace (builds are slow): a good release is verified and promoted with --verify;
then the sample app is rebuilt with HEALTH_FAIL=true. Verification of the source catches that build first, so the
gate never lets it reach local-staging. To exercise the target side too, the test then records a passed verification of
the broken digest on `local` by hand: the stand-in for a release that looked healthy where it was built and fails
where it is promoted. `promote --verify` must then fail verification on local-staging, roll back to the previously
verified digest with byte-identical manifests, and exit non-zero naming the failed check.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from dockyard.releases.ledger import Check, Ledger, Verification
from tests.engine.harness import (
    Workspace,
    attest_verification,
    commit_sources,
    deploy_local_stacks,
    deployment_images,
    dockyard,
    live_specs,
    rolling,
)

pytestmark = pytest.mark.engine

LOCAL_CHECKS = ["update", "rollout", "pods", "endpoints", "pull", "start", "health", "smoke"]
COMMITTED = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def ledger(workspace: Workspace) -> Ledger:
    return Ledger(workspace.backend / ".dockyard", "dockyard")


@pytest.fixture(scope="module")
def deployed(local_workspace: Workspace) -> Workspace:
    """local built from sources committed an hour ago, and pushed; local-staging, made rolling (a promotion writes
    image.ref, a failed one rolls back), deployed once before its first release (no Deployment yet)."""
    commit_sources(local_workspace, COMMITTED)
    rolling(local_workspace, "local-staging")
    return deploy_local_stacks(local_workspace)


@pytest.fixture(scope="module")
def good(deployed: Workspace) -> str:
    image: str = deployed.outputs("local")["image_ref"]
    return image


def test_unverified_source_is_refused_for_a_prod_target(deployed: Workspace, good: str) -> None:
    before = live_specs(deployed, "local-staging")
    refused = dockyard(deployed, "promote", "--from", "local", "--to", "local-staging", "--yes")
    assert refused.returncode == 1, refused.output
    assert (
        f"local's {good.split('@')[1]} has never been verified with a verification attestation signed by a key or "
        "identity it trusts (dockyard verify --stack local)"
    ) in refused.output
    assert live_specs(deployed, "local-staging") == before


def test_good_release_verifies_and_promotes_with_verify(deployed: Workspace, good: str) -> None:
    verified = dockyard(deployed, "verify", "--stack", "local", "--json")
    assert verified.returncode == 0, verified.output
    document = json.loads(verified.stdout)
    assert (document["outcome"], document["image"], document["stack"]) == ("passed", good, "local")
    assert [c["name"] for c in document["checks"]] == LOCAL_CHECKS
    assert "@" in document["actor"]

    promoted = dockyard(deployed, "promote", "--from", "local", "--to", "local-staging", "--yes", "--verify")
    assert promoted.returncode == 0, promoted.output
    assert "verification of local-staging (cluster): passed" in promoted.output
    assert deployment_images(deployed, "local-staging") == {good}
    (record,) = ledger(deployed).verifications("local-staging")
    assert (record.image, record.passed, record.trigger) == (good, True, "promote from local")
    assert not (deployed.directory / ".dockyard").exists(), "records live next to the state, not in the project"


@pytest.fixture(scope="module")
def broken(deployed: Workspace, good: str) -> str:
    """local rebuilt from the same sources with HEALTH_FAIL=true: a new digest whose /health answers 503."""
    stack_file = deployed.stack_file("local")
    document = yaml.safe_load(stack_file.read_text())
    document["config"]["dockyard:image"]["build"]["buildArgs"]["HEALTH_FAIL"] = "true"
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
    deployed.pulumi("up", "--stack", "local", "--yes", timeout=2400)
    image: str = deployed.outputs("local")["image_ref"]
    assert image != good
    return image


def test_broken_build_is_caught_at_the_source(deployed: Workspace, good: str, broken: str) -> None:
    before = live_specs(deployed, "local-staging")
    refused = dockyard(deployed, "promote", "--from", "local", "--to", "local-staging", "--yes", "--verify")
    assert refused.returncode == 1, refused.output
    assert "has never been verified" in refused.output

    failed = dockyard(deployed, "verify", "--stack", "local", "--timeout", "10")
    assert failed.returncode == 1, failed.output
    assert "verification of local failed: health" in failed.output
    last = ledger(deployed).verifications("local")[-1]
    assert (last.image, last.passed) == (broken, False)
    (health,) = last.failed_checks
    assert health.name == "health"
    assert "HTTP 503" in health.detail

    again = dockyard(deployed, "promote", "--from", "local", "--to", "local-staging", "--yes", "--verify")
    assert again.returncode == 1, again.output
    assert f"local's {broken.split('@')[1]} failed verification" in again.output
    assert live_specs(deployed, "local-staging") == before
    assert deployment_images(deployed, "local-staging") == {good}


def test_failed_target_verification_rolls_back_to_the_verified_digest(
    deployed: Workspace, good: str, broken: str
) -> None:
    before = live_specs(deployed, "local-staging")
    # The stand-in for "healthy where it was built": a passed verification of the broken digest on the source,
    # attested in the registry with local's key, where local-staging's gate reads it.
    attest_verification(
        deployed,
        Verification(
            "local", broken, True, datetime.now(UTC), "engine-test", "cluster", "test", (Check("stand-in", True, ""),)
        ),
    )
    result = dockyard(deployed, "promote", "--from", "local", "--to", "local-staging", "--yes", "--verify")

    assert result.returncode == 1, result.output
    assert f"promoted local-staging → {broken}" in result.output
    assert "verification of local-staging failed" in result.output
    assert "health: GET http://127.0.0.1:" in result.output
    assert "HTTP 503" in result.output
    # The rollback is shown as a diff: the engine's preview and the changed properties.
    assert f"rolled back local-staging → {good}" in result.output
    assert "update app-stable:" in result.output
    assert "spec.template.spec.containers[0].image" in result.output
    assert f"local-staging was rolled back to its verified release {good}" in result.output

    assert live_specs(deployed, "local-staging") == before, "the rollback restores the live Deployment spec exactly"
    assert deployed.outputs("local-staging")["image_ref"] == good
    history = json.loads(dockyard(deployed, "history", "--stack", "local-staging", "--json").stdout)
    assert [(e["action"], e["image"]) for e in history[:2]] == [("rollback", good), ("promote", broken)]
    failed, restored = ledger(deployed).verifications("local-staging")[-2:]
    assert (failed.image, failed.passed, restored.image, restored.passed) == (broken, False, good, True)
    assert restored.trigger == f"rollback after failed verification of {broken}"


def test_metrics_of_the_run(deployed: Workspace, tmp_path: Path) -> None:
    chart = tmp_path / "local-staging.png"
    result = dockyard(deployed, "metrics", "--stack", "local-staging", "--since", "1d", "--json", "--chart", str(chart))
    assert result.returncode == 0, result.output
    figures = json.loads(result.stdout)
    # Deployments: the good release, the broken one (rolled back); before the first, nothing served.
    assert (figures["deployments"], figures["changes"], figures["failed_changes"]) == (2, 2, 1)
    assert (figures["rollbacks"], figures["failed_verifications"], figures["open_incidents"]) == (1, 1, 0)
    assert figures["time_to_restore"]["count"] == 1
    assert 0 < figures["time_to_restore"]["median"] < 600
    # Both releases were built from sources committed at COMMITTED (the broken one only adds a build argument): the
    # label carries that time. local's two builds are the build durations.
    assert (figures["lead_time"]["count"], figures["lead_time_unknown"]) == (2, 0)
    assert 3600 <= figures["lead_time"]["median"] <= (datetime.now(UTC) - COMMITTED).total_seconds()
    assert figures["build_duration"]["count"] == 2
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
