"""The verifier on a blue-green stack of the local cluster, without engine or cluster: it looks at the subject its
strategy names (what is served, or the idle color alone through its preview Service), records that digest with its
track, and runs each digest locally once per verifier."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dockyard.model.config import EnvironmentConfig, parse_environment
from dockyard.model.stack import StackView
from dockyard.releases.attestations import AttestationError
from dockyard.releases.history import Update
from dockyard.releases.ledger import Check, Ledger, Verification
from dockyard.verify import Verifier, subject_of
from dockyard.verify.common import VerifierError
from dockyard.verify.kube import ServiceAnswer
from tests.stacks import dockyard_document

REPO = "127.0.0.1:5443/dockyard/app"
BLUE, GREEN = f"{REPO}@sha256:{'b' * 64}", f"{REPO}@sha256:{'9' * 64}"
NAMESPACE = "dockyard-app-local-prod"


def local_prod() -> EnvironmentConfig:
    document = copy.deepcopy(dockyard_document("local-prod"))
    document.pop("signing", None)  # the trust policy is not what is verified here
    document["kubernetes"]["strategy"].update(blueImage=BLUE, greenImage=GREEN)
    return parse_environment("local-prod", document)


@dataclass
class FakeProject:
    """Implements :class:`dockyard.verify.verifier.StackFacts` with a ledger in a temporary directory."""

    directory: Path
    env: EnvironmentConfig = field(default_factory=local_prod)
    locked: list[str] = field(default_factory=list)
    name: str = "dockyard"

    def view(self, stack: str, /) -> StackView:
        return StackView(stack, self.env)

    def outputs(self, stack: str, /) -> dict[str, Any]:
        return {"image_ref": BLUE, "namespace": NAMESPACE, "url": f"http://dockyard-app.{NAMESPACE}.svc"}

    def history(self, stack: str, /, limit: int | None = None) -> list[Update]:
        return [Update(datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 1, 0, 1, tzinfo=UTC), "succeeded")]

    def secret_config(self, stack: str, key: str, /) -> str | None:
        return None

    def ledger(self) -> Ledger:
        return Ledger(self.directory, "dockyard")

    @contextmanager
    def lock(self, stack: str, /) -> Iterator[None]:
        self.locked.append(stack)
        yield


def deployment(name: str, image: str) -> dict[str, Any]:
    selector = {"app.kubernetes.io/name": "dockyard-app", "dockyard.dev/track": name.rsplit("-", 1)[1]}
    return {
        "metadata": {"name": name, "generation": 1},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": selector},
            "template": {"spec": {"containers": [{"name": "app", "image": image}]}},
        },
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
        },
    }


@dataclass
class FakeCluster:
    """A ClusterReader over a live blue-green pair: two ready pods per color."""

    asked: list[str] = field(default_factory=list)

    def read_deployment(self, namespace: str, name: str, /) -> Mapping[str, Any] | None:
        self.asked.append(f"deployment {name}")
        return deployment(name, {"dockyard-app-blue": BLUE, "dockyard-app-green": GREEN}[name])

    def list_pods(self, namespace: str, selector: Mapping[str, str], /) -> list[Mapping[str, Any]]:
        track = selector["dockyard.dev/track"]
        image = BLUE if track == "blue" else GREEN
        return [
            {
                "metadata": {"name": f"{track}-{n}"},
                "spec": {"containers": [{"name": "app", "image": image}]},
                "status": {
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [{"name": "app", "image": image, "imageID": ""}],
                },
            }
            for n in range(2)
        ]

    def get_through_service(self, namespace: str, service: str, path: str, /) -> ServiceAnswer:
        self.asked.append(f"GET {path} through {service}")
        return ServiceAnswer(200, '{"status": "ok"}')

    def list_endpoint_slices(self, namespace: str, service: str, /) -> list[Mapping[str, Any]]:
        self.asked.append(f"endpointslices {service}")
        track = "green" if service.endswith("-preview") else "blue"
        endpoints = [
            {"conditions": {"ready": True}, "targetRef": {"kind": "Pod", "name": f"{track}-{n}"}} for n in (0, 1)
        ]
        return [{"endpoints": endpoints}]


def verifier(tmp_path: Path, ran: list[str]) -> tuple[Verifier, FakeCluster]:
    def local_check(image: str, stack: StackView, timeout: float) -> list[Check]:
        ran.append(image)
        return [Check("health", True, f"{image} answered 200")]

    cluster = FakeCluster()
    return Verifier(FakeProject(tmp_path), kube=cluster, local_check=local_check), cluster


def test_on_the_real_node_the_idle_color_answers_through_its_service_and_nothing_runs_beside_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stack whose pods run (the local cluster's real node, or any other cluster) is checked through its Service;
    the local run stands in only for kwok's pods, which run nothing."""
    monkeypatch.setattr("dockyard.verify.kube.TRAFFIC_INTERVAL", 0.0)
    ran: list[str] = []
    checks, cluster = verifier(tmp_path, ran)
    document = copy.deepcopy(dockyard_document("local-prod"))
    document.pop("signing", None)
    document["kubernetes"]["strategy"].update(blueImage=BLUE, greenImage=GREEN)
    document["kubernetes"]["nodePool"] = "real"
    checks.project.env = parse_environment("local-prod", document)  # type: ignore[attr-defined]
    record = checks.verify("local-prod", candidate=True, trigger="before switching to green")
    assert record.passed, record.checks
    assert ran == [], "no local run"
    traffic = next(check for check in record.checks if check.name == "traffic")
    assert traffic.detail == "10 requests through Service dockyard-app-preview (GET / and /health): all 200"
    assert cluster.asked[2:4] == ["GET / through dockyard-app-preview", "GET /health through dockyard-app-preview"]


def test_the_idle_color_is_verified_alone_and_recorded_as_not_serving(tmp_path: Path) -> None:
    ran: list[str] = []
    checks, cluster = verifier(tmp_path, ran)
    record = checks.verify("local-prod", candidate=True, trigger="before switching to green")
    assert record.passed, record.checks
    assert (record.image, record.track, record.serving) == (GREEN, "green", False)
    assert cluster.asked == ["deployment dockyard-app-green", "endpointslices dockyard-app-preview"]
    assert ran == [GREEN]
    assert [c.name for c in record.checks] == ["update", "rollout", "pods", "endpoints", "health"]
    assert Ledger(tmp_path, "dockyard").verifications("local-prod") == [record]


def test_what_is_served_is_every_track_and_each_digest_runs_locally_once(tmp_path: Path) -> None:
    ran: list[str] = []
    checks, cluster = verifier(tmp_path, ran)
    first = checks.verify("local-prod")
    second = checks.verify("local-prod", trigger="again")
    assert (first.image, first.track, first.serving, first.passed) == (BLUE, None, True, True)
    assert cluster.asked[:3] == [
        "deployment dockyard-app-blue",
        "deployment dockyard-app-green",
        "endpointslices dockyard-app",
    ]
    assert second.passed
    assert ran == [BLUE], "the served digest was run here once, and its answer reused"
    assert len(Ledger(tmp_path, "dockyard").verifications("local-prod")) == 2


def test_a_signing_stack_attests_each_outcome_after_the_ledger_holds_it(tmp_path: Path) -> None:
    ran: list[str] = []
    checks, _ = verifier(tmp_path, ran)
    document = copy.deepcopy(dockyard_document("local-prod"))
    document["kubernetes"]["strategy"].update(blueImage=BLUE, greenImage=GREEN)
    checks.project.env = parse_environment("local-prod", document)  # type: ignore[attr-defined]
    attested: list[tuple[str, Verification]] = []

    def attest(project: object, view: StackView, record: Verification) -> str:
        stack = view.name
        assert Ledger(tmp_path, "dockyard").verifications(stack) == [record], "the ledger first: nothing is lost"
        attested.append((stack, record))
        raise AttestationError("registry down")

    checks.attest = attest
    with pytest.raises(AttestationError, match="registry down"):
        checks.verify("local-prod")
    (record,) = Ledger(tmp_path, "dockyard").verifications("local-prod")
    assert attested == [("local-prod", record)]


def test_a_stack_with_no_release_has_nothing_served_to_verify_but_its_candidate_is_checked() -> None:
    canary = "127.0.0.1:5443/dockyard/app@sha256:" + "c" * 64
    document = copy.deepcopy(dockyard_document("local-staging"))
    env = parse_environment("local-staging", document)
    with pytest.raises(VerifierError, match="local-staging serves no release yet"):
        subject_of("local-staging", env, None, candidate=False)
    document["kubernetes"]["strategy"].update(canaryImage=canary, weight=10)
    first = parse_environment("local-staging", document)
    subject = subject_of("local-staging", first, None, candidate=True)
    # The first release's canary runs alone: no stable Deployment is expected (none exists).
    assert (subject.image, dict(subject.deployments)) == (canary, {"dockyard-app-canary": canary})
