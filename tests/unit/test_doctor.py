"""dockyard doctor: facts read from a file backend, judged by a pure function into findings with a way out."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from dockyard.releases import doctor
from dockyard.releases.doctor import (
    EngineLock,
    Facts,
    PendingOperation,
    Service,
    diagnose,
    read_checkpoint,
    read_lock,
    render,
)
from tests.stacks import PROJECT

BUILD_URN = "urn:pulumi:local::dockyard::dockyard:index:AppImage$pulumi-python:dynamic:Resource::image-podman-build"
CLUSTER_UP = Service("cluster", "context dockyard-local", True, "/readyz: ok", "scripts/local-cluster.sh start")
CLUSTER_DOWN = Service(
    "cluster", "context dockyard-local", False, "connection refused", "scripts/local-cluster.sh start"
)


def commands(facts: Facts) -> list[str]:
    return [step.removeprefix("$ ") for f in diagnose(facts) for step in f.steps if step.startswith("$ ")]


def test_a_ready_stack_needs_nothing() -> None:
    facts = Facts("local", "dockyard", "cluster", deployed=True, services=[CLUSTER_UP])
    assert diagnose(facts) == []
    assert "nothing to fix" in render(facts, [])


def test_a_dead_holders_lock_is_removed_a_live_one_is_waited_for(tmp_path: Path) -> None:
    lock = tmp_path / "l.json"
    dead = Facts("local", "dockyard", "cluster", locks=[EngineLock(lock, 4242, "vm", "root", False)])
    assert commands(dead) == [f"rm -f {lock} {lock}.attrs"]
    live = Facts("local", "dockyard", "cluster", locks=[EngineLock(lock, 4242, "vm", "root", True, "pulumi up")])
    (finding,) = diagnose(live)
    assert "live update" in finding.problem
    assert not any(step.startswith("$ rm") for step in finding.steps)
    assert any("never pulumi cancel" in step for step in finding.steps)


def test_pending_creates_on_a_reachable_cluster_are_refreshed_away() -> None:
    facts = Facts(
        "local", "dockyard", "cluster", pending=[PendingOperation("creating", BUILD_URN)], services=[CLUSTER_UP]
    )
    assert commands(facts) == [
        "pulumi refresh --stack local --yes --clear-pending-creates",
        "pulumi up --stack local --yes",
    ]
    assert "image-podman-build" in diagnose(facts)[0].problem


def test_pending_operations_without_a_cluster_never_advise_refresh() -> None:
    for mode, services in (("cluster", [CLUSTER_DOWN]), ("render", [])):
        facts = Facts("local", "dockyard", mode, pending=[PendingOperation("creating", BUILD_URN)], services=services)
        advice = commands(facts)
        assert not any("refresh" in c for c in advice), advice
        assert "pulumi stack import --stack local --file local-state.json" in advice
    down = Facts(
        "local", "dockyard", "cluster", pending=[PendingOperation("creating", BUILD_URN)], services=[CLUSTER_DOWN]
    )
    assert "scripts/local-cluster.sh start" in commands(down)


def test_stale_image_ref_from_an_aborted_promotion() -> None:
    facts = Facts(
        "local-staging",
        "dockyard",
        "cluster",
        deployed=True,
        configured_image="r/a@sha256:new",
        deployed_image="r/a@sha256:old",
    )
    (finding,) = diagnose(facts)
    assert finding.part == "stack file"
    assert "git checkout -- Pulumi.local-staging.yaml" in commands(facts)


def test_read_lock_knows_a_dead_holder_and_another_host(tmp_path: Path) -> None:
    path = tmp_path / "lock.json"
    path.write_text(json.dumps({"pid": os.getpid(), "hostname": "vm", "username": "root"}))
    assert read_lock(path, "vm").alive is False  # pytest is alive, but it is not a pulumi process
    assert read_lock(path, "elsewhere").alive is None


def test_read_checkpoint(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks" / "dockyard"
    stacks.mkdir(parents=True)
    (stacks / "local.json").write_text(json.dumps({"checkpoint": {"latest": {"pending_operations": []}}}))
    assert read_checkpoint(tmp_path, "dockyard", "local") == {"checkpoint": {"latest": {"pending_operations": []}}}
    assert read_checkpoint(tmp_path, "dockyard", "other") is None


def test_gather_asks_the_strategy_what_a_blue_green_stack_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("Pulumi.yaml", "Pulumi.local-prod.yaml"):
        shutil.copy(PROJECT / name, tmp_path)
    released = "127.0.0.1:5443/dockyard/app@sha256:" + "b" * 64
    stack_file = tmp_path / "Pulumi.local-prod.yaml"
    document = yaml.safe_load(stack_file.read_text())
    document["config"]["dockyard:kubernetes"]["strategy"]["blueImage"] = released
    stack_file.write_text(yaml.safe_dump(document))
    deployed = "127.0.0.1:5443/dockyard/app@sha256:" + "d" * 64
    stacks = tmp_path / "state" / ".pulumi" / "stacks" / "dockyard"
    stacks.mkdir(parents=True)
    root = {"type": "pulumi:pulumi:Stack", "outputs": {"image_ref": deployed}}
    (stacks / "local-prod.json").write_text(json.dumps({"checkpoint": {"latest": {"resources": [root]}}}))
    monkeypatch.setattr(doctor, "_probe_registry", lambda server, ca: Service("registry", server, True, "ok", None))
    monkeypatch.setattr(doctor, "_probe_cluster", lambda context: CLUSTER_UP)
    facts = doctor.gather(tmp_path, "local-prod", f"file://{tmp_path}/state")
    assert facts.configured_image == released, "the active color's image"
    (finding,) = diagnose(facts)
    assert f"names dockyard:kubernetes.strategy.blueImage {facts.configured_image}" in finding.problem
