"""Progressive delivery on the live local cluster: a canary walk on local-staging, an analysis failure that aborts,
a blue-green promote / switch / rollback on local-prod, what reviewers see of an image change, and the metrics.

The tests run in order on one workspace (builds are slow). The workspace is a git checkout whose sources were
committed two hours ago, so every build carries that commit time and lead time is a real figure.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from dockyard.pipeline import pr_summary
from dockyard.releases.ledger import Check, Ledger, Verification
from tests.engine.harness import (
    SWITCH_CHANGES,
    Workspace,
    attest_verification,
    changed,
    commit_sources,
    deployment_images,
    dockyard,
    history,
    image_repository,
    images,
    live,
    live_specs,
    objects,
    ok,
    release,
    replicas,
    set_stack_config,
    short,
    succeeded,
)

pytestmark = pytest.mark.engine

COMMITTED = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def ledger(workspace: Workspace) -> Ledger:
    return Ledger(workspace.backend / ".dockyard", "dockyard")


@pytest.fixture(scope="module")
def chain(local_workspace: Workspace) -> Workspace:
    """local built from sources committed two hours ago and verified; local-staging (canary) and local-prod
    (blue-green) deployed before their first release: no pods on any track."""
    workspace = local_workspace
    commit_sources(workspace, COMMITTED)
    for stack in ("local", "local-staging", "local-prod"):
        workspace.init(stack)
        workspace.pulumi("up", "--stack", stack, "--yes", "--skip-preview", timeout=2400)
    for stack in ("local-staging", "local-prod"):
        assert live(workspace, stack, "deployments") == {}, f"{stack} has no release yet: no Deployment, no pods"
        assert live(workspace, stack, "services"), "its Service waits, with no endpoints"
    ok(workspace, "verify", "--stack", "local")
    return workspace


@pytest.fixture(scope="module")
def good(chain: Workspace) -> str:
    image: str = chain.outputs("local")["image_ref"]
    return image


# --- canary -----------------------------------------------------------------------------------------------------


def test_a_canary_walk_follows_every_step_and_ends_on_one_stable_deployment(chain: Workspace, good: str) -> None:
    started = ok(chain, "promote", "--from", "local", "--to", "local-staging", "--yes")
    assert f"promoted local-staging → {good} (canary at 10%" in started
    assert f"image app-canary: (none) → {image_repository(chain)} {short(good)}" in started
    # The first release: no stable track runs beside it (none was released), so the canary's pods are all there is.
    assert replicas(chain, "local-staging") == {"dockyard-app-canary": 1}
    assert images(chain, "local-staging") == {"dockyard-app-canary": good}

    for weight, split in ((25, {"canary": 1}), (50, {"canary": 2}), (100, {"canary": 4})):
        stepped = ok(chain, "canary", "advance", "--stack", "local-staging", "--yes")
        assert f"advanced local-staging → {good} (canary at {weight}%" in stepped
        assert replicas(chain, "local-staging") == {f"dockyard-app-{t}": n for t, n in split.items()}, weight

    completed = ok(chain, "canary", "advance", "--stack", "local-staging", "--yes")
    assert f"completed local-staging → {good}" in completed
    assert images(chain, "local-staging") == {"dockyard-app-stable": good}, "one stable Deployment, the new digest"
    assert replicas(chain, "local-staging") == {"dockyard-app-stable": 4}
    assert chain.outputs("local-staging")["image_ref"] == good

    assert [e["action"] for e in history(chain, "local-staging")[:5]] == [
        "canary-complete",
        "canary-step",
        "canary-step",
        "canary-step",
        "promote",
    ]
    records = ledger(chain).verifications("local-staging")
    analyses = [(r.trigger, r.track, r.passed) for r in records if r.track == "canary"]
    assert analyses == [(f"canary analysis at {w}%", "canary", True) for w in (10, 25, 50, 100)]
    served = records[-1]
    assert (served.image, served.track, served.passed) == (good, None, True), "what is served is verified last"


def test_a_canary_that_fails_its_analysis_is_aborted_and_the_stable_track_is_untouched(
    chain: Workspace, good: str
) -> None:
    broken = release(chain, health_fail=True)
    assert broken != good
    # The stand-in for "healthy where it was built" (local's own verification would stop it at the gate), attested
    # with local's key where local-staging's gate reads it.
    attest_verification(
        chain,
        Verification(
            "local", broken, True, datetime.now(UTC), "engine-test", "cluster", "test", (Check("x", True, ""),)
        ),
    )
    before = live_specs(chain, "local-staging")
    ok(chain, "promote", "--from", "local", "--to", "local-staging", "--yes")
    assert images(chain, "local-staging")["dockyard-app-canary"] == broken

    walked = dockyard(chain, "canary", "advance", "--stack", "local-staging", "--auto", "--yes")
    assert walked.returncode == 1, walked.output[-6000:]
    assert "canary of local-staging rolled back: the canary failed its analysis at 10%" in walked.output
    assert "HTTP 503" in walked.output
    assert f"aborted local-staging → {broken}" in walked.output
    assert live_specs(chain, "local-staging") == before, "the stable track serves, exactly as before the canary"
    assert deployment_images(chain, "local-staging") == {good}
    assert history(chain, "local-staging")[0]["action"] == "canary-abort"
    failed, restored = ledger(chain).verifications("local-staging")[-2:]
    assert (failed.image, failed.track, failed.passed) == (broken, "canary", False)
    assert (restored.image, restored.track, restored.passed) == (good, None, True)


# --- blue-green -------------------------------------------------------------------------------------------------


def test_blue_green_promote_switch_and_rollback_on_the_live_services(chain: Workspace, good: str) -> None:
    before = objects(chain, "local-prod")
    promoted = ok(chain, "promote", "--from", "local-staging", "--to", "local-prod", "--yes")
    assert f"image app-green: (none) → {image_repository(chain)} {short(good)}" in promoted
    after = objects(chain, "local-prod")
    assert after["services/dockyard-app"] == before["services/dockyard-app"], "the live Service is unchanged"
    assert "deployments/dockyard-app-blue" not in after, "blue has no release: no pods"
    assert images(chain, "local-prod") == {"dockyard-app-green": good}
    assert chain.outputs("local-prod").get("image_ref") is None, "nothing serves until the switch"

    never_served = dockyard(chain, "rollback", "--stack", "local-prod", "--yes")
    assert never_served.returncode == 1
    assert "runs " + good + ", which local-prod has never served (dockyard switch" in never_served.output

    switched = ok(chain, "switch", "--stack", "local-prod", "--yes")
    assert "verification of local-prod green track (cluster): passed" in switched
    assert "update app-service: spec.selector" in switched
    assert changed(after, objects(chain, "local-prod")) == SWITCH_CHANGES, "a switch changes only the Service selectors"
    assert chain.outputs("local-prod")["image_ref"] == good
    idle, served = ledger(chain).verifications("local-prod")[-2:]
    assert (idle.image, idle.track, idle.serving, idle.passed) == (good, "green", False, True)
    assert (served.image, served.track, served.passed) == (good, None, True), "the ledger records what now serves"

    # blue never ran a release: nothing to switch back to.
    first = dockyard(chain, "rollback", "--stack", "local-prod", "--yes")
    assert first.returncode == 1
    assert f"local-prod has served only {good}; nothing to roll back to" in first.output

    # A second release, through the canary, onto blue; switch to it, then roll back: green serves again.
    main_go = chain.directory / "app" / "main.go"
    main_go.write_text(main_go.read_text() + "\n// release 2\n")
    second = release(chain)
    ok(chain, "verify", "--stack", "local")
    ok(chain, "promote", "--from", "local", "--to", "local-staging", "--yes")
    ok(chain, "canary", "advance", "--stack", "local-staging", "--auto", "--yes")
    assert chain.outputs("local-staging")["image_ref"] == second

    # What a reviewer sees in pr-summary: the real preview JSON of the idle color's image change, old → new.
    stack_file = chain.stack_file("local-prod")
    original = stack_file.read_bytes()
    set_stack_config(chain, "local-prod", ["kubernetes", "strategy", "blueImage"], second)
    preview = chain.pulumi("preview", "--stack", "local-prod", "--json")
    stack_file.write_bytes(original)
    (chain.directory / "local-prod.json").write_text(preview.stdout)
    summary = pr_summary.render(pr_summary.load([chain.directory / "local-prod.json"]))
    assert f"  - image app-blue: (none) → {image_repository(chain)} {short(second)}" in summary

    ok(chain, "promote", "--from", "local-staging", "--to", "local-prod", "--yes")
    before_switch = objects(chain, "local-prod")
    ok(chain, "switch", "--stack", "local-prod", "--yes")
    assert chain.outputs("local-prod")["image_ref"] == second
    rolled_back = ok(chain, "rollback", "--stack", "local-prod", "--yes")
    assert f"rolled back local-prod → {good} (switch back to green" in rolled_back
    assert objects(chain, "local-prod") == before_switch, "switched back: live objects identical to before the switch"
    assert chain.outputs("local-prod")["image_ref"] == good
    ok(chain, "verify", "--stack", "local-prod")
    assert [e["action"] for e in history(chain, "local-prod")[:5]] == [
        "rollback",
        "switch",
        "promote",
        "switch",
        "promote",
    ]


# --- metrics ----------------------------------------------------------------------------------------------------


def test_metrics_count_the_aborted_canary_and_the_switch_back_and_lead_time_is_real(
    chain: Workspace, tmp_path: Path
) -> None:
    staging = succeeded(chain, "metrics", "--stack", "local-staging", "--since", "1d", "--json").json()
    # Deployments: the first release's and the second release's completed canaries (before the first, nothing served).
    assert (staging["deployments"], staging["aborted_canaries"]) == (2, 1)
    assert (staging["changes"], staging["failed_changes"]) == (3, 1), "the aborted canary is a failed change"
    assert staging["time_to_restore"]["count"] == 1
    assert 0 < staging["time_to_restore"]["median"] < 600
    # Both releases were built from sources committed at COMMITTED.
    assert staging["lead_time"]["count"] == 2
    assert staging["lead_time_unknown"] == 0
    elapsed = (datetime.now(UTC) - COMMITTED).total_seconds()
    assert 2 * 3600 <= staging["lead_time"]["median"] <= elapsed

    chart = tmp_path / "local-prod.png"
    prod = succeeded(chain, "metrics", "--stack", "local-prod", "--since", "1d", "--json", "--chart", str(chart)).json()
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Deployments: the two switches; the switch back marks the second one failed.
    assert (prod["deployments"], prod["changes"], prod["failed_changes"], prod["rollbacks"]) == (2, 2, 1, 1)
    assert prod["time_to_restore"]["count"] == 1
    assert 0 < prod["time_to_restore"]["median"] < 600


def test_the_stack_files_say_what_is_served(chain: Workspace, good: str) -> None:
    prod = yaml.safe_load(chain.stack_file("local-prod").read_text())["config"]["dockyard:kubernetes"]["strategy"]
    assert prod["activeColor"] == "green"
    assert prod["greenImage"] == good
    staging = yaml.safe_load(chain.stack_file("local-staging").read_text())["config"]
    assert "canaryImage" not in staging["dockyard:kubernetes"]["strategy"]
    assert staging["dockyard:kubernetes"]["strategy"]["weight"] == 0
