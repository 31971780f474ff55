"""A move whose ``pulumi up`` fails (pods that never become Ready): the pods' own reasons, then the release that served.

A real :class:`dockyard.releases.project.Project` over stack files written here; the engine, the registry and the
cluster's reasons are fakes. The failed update leaves the stack file as it was (:mod:`.stack_update`); the move then
applies that file again, records it as a rollback with the probe failure as its reason and exits 1, or, when that
update fails too, exits 3 with the way out. A rendering stack has no cluster to ask.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dockyard import cli
from dockyard.model.notifications import Event
from dockyard.model.stack import StackView
from dockyard.releases.errors import EXIT_REFUSED, EXIT_UNHEALTHY, DockyardError, UnhealthyError
from dockyard.releases.gates import RegistryAnswer
from dockyard.releases.history import parse_record
from dockyard.releases.moves import Releases
from dockyard.releases.notify import ReleaseEvent
from dockyard.releases.progressive import promote_verified
from dockyard.releases.project import Project
from dockyard.verify.kube import pod_reasons, read_reasons
from tests.stacks import PROJECT
from tests.unit.fake_stack import FakeStack, command_error

REPO = "127.0.0.1:5443/dockyard/app"
SERVED = f"{REPO}@sha256:{'a' * 64}"
BROKEN = f"{REPO}@sha256:{'b' * 64}"
TARGET = "rolling"
PROBE = "pod dockyard-app-stable-7d9f-xyz: Readiness probe failed: HTTP probe failed with statuscode: 503"
TIMED_OUT = (
    "kubernetes:apps/v1:Deployment resource 'app-stable' failed: 1 error occurred: * the Kubernetes API server "
    'reported that "dockyard-app-rolling/dockyard-app-stable" failed to fully initialize or become live: timed out '
    "waiting to be Ready; containers with unready status: [app]"
)


def stack_file(mode: str) -> dict[str, Any]:
    return {
        "config": {
            "dockyard:tier": "staging",
            "dockyard:registry": {
                "kind": "selfHosted",
                "server": "127.0.0.1:5443",
                "repository": "dockyard/app",
                "username": "dockyard",
                "passwordEnv": "DOCKYARD_REGISTRY_PASSWORD",
            },
            "dockyard:image": {"ref": SERVED},
            "dockyard:kubernetes": {"mode": mode, "context": "dockyard-local", "rolloutTimeoutSeconds": 40},
            "dockyard:promotion": {"upstream": "local", "soakMinutes": 0, "requireVerification": False},
        }
    }


def preview_fails() -> None:
    # A preview changes nothing: its failure is the move's refusal, with nothing to undo.
    raise command_error("preview failed: the program raised")


@dataclass
class FakeEngine:
    """Answers a move's reads (outputs, history); ``ups`` scripts each update: None succeeds, a text fails with it.
    ``applied``: the image each update found in the stack file; ``messages``: the succeeded updates' messages."""

    directory: Path
    ups: list[str | None] = field(default_factory=list)
    applied: list[str | None] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    serves: str | None = SERVED

    def read(self, stack: str, *args: str) -> Any:
        if args[:2] == ("stack", "output"):
            return {"image_ref": BROKEN if stack == "local" else self.serves, "namespace": f"dockyard-app-{stack}"}
        if args[:2] == ("stack", "history"):
            return [{"startTime": "2026-12-01T12:00:00Z", "endTime": "2026-12-01T12:01:00Z", "result": "succeeded"}]
        raise AssertionError(f"unexpected engine read {args}")

    def stack(self, name: str, *, create: bool) -> FakeStack:
        config_file = self.directory / f"Pulumi.{name}.yaml"
        return FakeStack(config_file, preview_fails, lambda: self._up(config_file), self.messages)

    def _up(self, config_file: Path) -> None:
        self.applied.append(yaml.safe_load(config_file.read_text())["config"]["dockyard:image"].get("ref"))
        failure = self.ups.pop(0)
        if failure is not None:
            raise command_error(failure)


@dataclass
class Cluster:
    """The pods' reasons as the live API would give them; every question is noted."""

    reasons: list[str] = field(default_factory=lambda: [PROBE])
    asked: list[tuple[str, str, frozenset[str]]] = field(default_factory=list)

    def __call__(self, stack: StackView, namespace: str, deployments: Collection[str]) -> list[str]:
        self.asked.append((stack.name, namespace, frozenset(deployments)))
        return self.reasons


@dataclass
class Setup:
    project: Project
    engine: FakeEngine
    cluster: Cluster
    told: list[ReleaseEvent]
    releases: Releases

    @property
    def file(self) -> Path:
        return self.project.stack_file(TARGET)


def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, ups: list[str | None]) -> Setup:
    for name in ("Pulumi.yaml", "Pulumi.local.yaml"):
        (tmp_path / name).write_bytes((PROJECT / name).read_bytes())
    (tmp_path / f"Pulumi.{TARGET}.yaml").write_text(yaml.safe_dump(stack_file(mode), sort_keys=False))
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path}/state")
    monkeypatch.setenv("DOCKYARD_CACHE", str(tmp_path / "cache"))
    project = Project(tmp_path, print_line=lambda _: None)
    engine = FakeEngine(tmp_path, ups)
    project.__dict__["engine"] = engine
    cluster = Cluster()
    told: list[ReleaseEvent] = []
    releases = Releases(
        project,
        registry=lambda *_: RegistryAnswer(True),
        trust=lambda *_: [],
        scan=lambda *_: [],
        announce=lambda _, event: told.append(event),
        reasons=cluster,
    )
    return Setup(project, engine, cluster, told, releases)


def promote(s: Setup) -> DockyardError:
    with pytest.raises(DockyardError) as caught:
        s.releases.promote("local", TARGET, yes=True, confirm=lambda: True)
    return caught.value


def test_a_failed_promotion_names_the_probe_failure_and_rolls_back_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = setup(tmp_path, monkeypatch, "cluster", [TIMED_OUT, None])
    before = s.file.read_bytes()
    error = promote(s)
    assert error.exit_code == EXIT_REFUSED
    lines = str(error).splitlines()
    assert "timed out waiting to be Ready" in lines[0]
    assert lines[1].strip() == PROBE  # the pod's own reason, after the error
    assert f"{TARGET} was rolled back to {SERVED}" in lines[-1]
    # Asked once, in the stack's namespace, about its Deployment.
    assert s.cluster.asked == [(TARGET, f"dockyard-app-{TARGET}", frozenset({"dockyard-app-stable"}))]
    # The failed release was applied, then the file as it was before it: byte-identical, the served release.
    assert s.engine.applied == [BROKEN, SERVED]
    assert s.file.read_bytes() == before
    record = parse_record(s.engine.messages[-1])
    assert record["action"] == "rollback"
    assert (record["image"], record["from"], record["reverted"]) == (SERVED, BROKEN, BROKEN)
    assert record["reason"] == PROBE
    # Told once the lock was released: rolled back, with the reason.
    assert [(e.event, e.image, e.previous, e.detail) for e in s.told] == [(Event.ROLLED_BACK, SERVED, BROKEN, PROBE)]


def test_without_a_pod_reason_the_engines_line_is_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = setup(tmp_path, monkeypatch, "cluster", [TIMED_OUT, None])
    s.cluster.reasons = []
    error = promote(s)
    assert error.exit_code == EXIT_REFUSED
    assert "timed out waiting to be Ready" in parse_record(s.engine.messages[-1])["reason"]


def test_a_failed_first_release_is_reverted_not_rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = setup(tmp_path, monkeypatch, "cluster", [TIMED_OUT, None])
    document = yaml.safe_load(s.file.read_text())
    document["config"]["dockyard:image"] = {}
    s.file.write_text(yaml.safe_dump(document, sort_keys=False))
    s.engine.serves = None
    error = promote(s)
    assert error.exit_code == EXIT_REFUSED
    assert f"{TARGET} serves no release, as before" in str(error)
    # The file as it was (no release) is applied: the failed pods go; nothing served, so no rollback is told.
    assert s.engine.applied == [BROKEN, None]
    record = parse_record(s.engine.messages[-1])
    assert (record["action"], record["reverted"], record["reason"]) == ("revert", BROKEN, PROBE)
    assert s.told == []


def test_a_cluster_that_cannot_be_read_does_not_stop_the_rollback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = setup(tmp_path, monkeypatch, "cluster", [TIMED_OUT, None])

    def unreachable(*_: object) -> list[str]:
        raise ConnectionRefusedError("connection refused")

    s.releases.reasons = unreachable
    error = promote(s)
    assert error.exit_code == EXIT_REFUSED
    assert "the pods' reasons could not be read: ConnectionRefusedError: connection refused" in str(error)
    assert s.engine.applied == [BROKEN, SERVED]


def test_a_rollback_that_fails_too_leaves_it_unhealthy_with_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = setup(tmp_path, monkeypatch, "cluster", [TIMED_OUT, "the API server is gone"])
    before = s.file.read_bytes()
    error = promote(s)
    assert error.exit_code == EXIT_UNHEALTHY
    text = str(error)
    assert PROBE in text
    assert f"putting back its release {SERVED} failed too" in text
    assert "the API server is gone" in text
    assert f"pulumi up --stack {TARGET}" in text  # the way out
    assert s.file.read_bytes() == before  # it still names the release that served
    assert s.told == []  # nothing was rolled back


def test_a_failed_preview_changed_nothing_and_is_not_undone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = setup(tmp_path, monkeypatch, "cluster", [])
    with pytest.raises(DockyardError) as caught:
        s.releases.promote("local", TARGET, yes=False, confirm=lambda: True)
    assert "preview failed" in str(caught.value)
    assert (s.engine.applied, s.cluster.asked, s.told) == ([], [], [])


def test_a_rendering_stack_has_no_cluster_to_ask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = setup(tmp_path, monkeypatch, "render", ["the render directory is not writable", None])
    error = promote(s)
    assert error.exit_code == EXIT_REFUSED
    assert s.cluster.asked == []
    assert s.engine.applied == [BROKEN, SERVED]


def test_promote_verify_ends_on_the_move_that_rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The flow checks nothing after a promotion that could not apply: the move's own rollback answered it."""
    s = setup(tmp_path, monkeypatch, "cluster", [TIMED_OUT, None])

    class NoChecks:
        def verify(self, stack: str, /, *, candidate: bool = False, trigger: str = "") -> Any:
            raise AssertionError("nothing to verify: the release was never applied")

        def verifications(self, stack: str, /) -> list[Any]:
            return []

    with pytest.raises(DockyardError) as caught:
        promote_verified(s.releases, NoChecks(), "local", TARGET, yes=True, confirm=lambda: True)
    assert caught.value.exit_code == EXIT_REFUSED


# --- the reasons, pure over the API's objects -------------------------------------------------------------------


def pod(name: str, waiting: Mapping[str, str] | None = None) -> dict[str, Any]:
    state = {"waiting": dict(waiting)} if waiting else {"running": {}}
    return {"metadata": {"name": name}, "status": {"containerStatuses": [{"name": "app", "state": state}]}}


def event(kind: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": kind, "reason": reason, "message": message}


def test_a_pods_reasons_are_its_waiting_containers_and_warnings_once_each() -> None:
    probe = "Readiness probe failed: HTTP probe failed with statuscode: 503"
    events = [
        event("Normal", "Pulled", "Successfully pulled image"),
        event("Warning", "Unhealthy", probe),
        event("Warning", "Unhealthy", probe),
    ]
    assert pod_reasons(pod("p1"), events) == [f"pod p1: {probe}"]
    pulling = pod("p2", {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'})
    assert pod_reasons(pulling, []) == ['pod p2: container app waiting: ImagePullBackOff: Back-off pulling image "x"']
    assert pod_reasons(pod("p3", {"reason": "ContainerCreating"}), []) == []


@dataclass
class Reader:
    """Implements :class:`dockyard.verify.kube.PodEventReader` over fixed objects."""

    deployments: dict[str, Mapping[str, Any]]
    pods: list[Mapping[str, Any]]
    events: dict[str, list[Mapping[str, Any]]]
    selectors: list[Mapping[str, str]] = field(default_factory=list)

    def read_deployment(self, namespace: str, name: str, /) -> Mapping[str, Any] | None:
        return self.deployments.get(name)

    def list_pods(self, namespace: str, selector: Mapping[str, str], /) -> list[Mapping[str, Any]]:
        self.selectors.append(selector)
        return self.pods

    def list_pod_events(self, namespace: str, pod: str, /) -> list[Mapping[str, Any]]:
        return self.events.get(pod, [])


def test_the_reasons_are_read_for_the_pods_of_each_deployment_that_exists() -> None:
    labels = {"app.kubernetes.io/name": "dockyard-app"}
    reader = Reader(
        {"dockyard-app-stable": {"spec": {"selector": {"matchLabels": labels}}}},
        [pod("p1")],
        {"p1": [event("Warning", "FailedScheduling", "0/3 nodes are available")]},
    )
    found = read_reasons(reader, "ns", ["dockyard-app-stable", "dockyard-app-canary"])
    assert found == ["pod p1: 0/3 nodes are available"]
    assert reader.selectors == [labels]


class FailedReleases:
    """Stands in for Releases in the CLI: the promotion's update failed and so did its rollback."""

    def __init__(self, project: object) -> None:
        pass

    def promote(self, *args: object, **kwargs: object) -> None:
        raise UnhealthyError(f"promote of {TARGET} failed: {TIMED_OUT}\n  {PROBE}\nand the rollback failed too")


def test_the_cli_prints_the_reasons_as_written_and_exits_with_the_errors_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "Releases", FailedReleases)
    result = CliRunner().invoke(cli.app, ["promote", "--from", "local", "--to", TARGET, "--yes"])
    assert result.exit_code == EXIT_UNHEALTHY
    assert "containers with unready status: [app]" in result.output  # brackets are words here, not markup
    assert f"\n  {PROBE}\n" in result.output
