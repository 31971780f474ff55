"""Verification without a cluster or the engine: Kubernetes API objects recorded as a fake ClusterReader, rendered
manifests in a temporary directory, what each strategy's verification looks at, the ledger. The live client behind
ClusterReader is tested in test_verify_kube.py; the flows that verify before and after a move in
test_progressive.py."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dockyard.model.config import BlueGreenStrategy, EnvironmentConfig, parse_environment
from dockyard.releases.ledger import Check, Ledger, LedgerError, Verification, last_verified, latest_for, ledger_root
from dockyard.verify import (
    ClusterReader,
    Subject,
    VerifierError,
    cluster_checks,
    expected_images,
    manifest_check,
    subject_of,
)
from dockyard.verify.kube import SERVICE_NAME_LABEL, TRAFFIC_INTERVAL, ServiceAnswer, traffic_check
from tests.stacks import dockyard_document

NAMESPACE = "dockyard-app-staging"
SERVICE = "dockyard-app"
GOOD = "ghcr.io/acme/dockyard-app@sha256:" + "a" * 64
OLD = "ghcr.io/acme/dockyard-app@sha256:" + "b" * 64
BAD = "ghcr.io/acme/dockyard-app@sha256:" + "c" * 64
SELECTOR = {
    "app.kubernetes.io/instance": "dockyard-app-staging",
    "app.kubernetes.io/name": "dockyard-app",
    "dockyard.dev/track": "stable",
}
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


# --- Kubernetes API objects, as a 3-replica rollout of GOOD leaves them -------------------------------------------


def deployment(image: str = GOOD, **status: int) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "dockyard-app-stable", "namespace": NAMESPACE, "generation": 4},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": SELECTOR},
            "template": {"spec": {"containers": [{"name": "app", "image": image}]}},
        },
        "status": {
            "observedGeneration": 4,
            "replicas": 3,
            "updatedReplicas": 3,
            "readyReplicas": 3,
            "availableReplicas": 3,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}],
            **status,
        },
    }


def pod(name: str, image_id: str = GOOD, ready: bool = True, image: str = GOOD) -> dict[str, Any]:
    """A pod of the stable track; ``image_id=""`` is a runtime that reports no imageID (kwok, for one)."""
    return {
        "metadata": {"name": name, "labels": SELECTOR},
        "spec": {"containers": [{"name": "app", "image": image}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [
                {"name": "app", "image": image, "imageID": image_id, "ready": ready, "restartCount": 0}
            ],
        },
    }


POD_NAMES = [f"dockyard-app-stable-7d9f-{n}" for n in ("a1", "b2", "c3")]


def healthy_pods() -> list[dict[str, Any]]:
    return [pod(name) for name in POD_NAMES]


def endpoint_slice(*pods: str, ready: bool | None = True) -> dict[str, Any]:
    """The slice the EndpointSlice controller keeps for the Service; ``ready=None`` leaves the condition unset."""
    conditions = {} if ready is None else {"ready": ready, "serving": ready, "terminating": False}
    return {
        "metadata": {"name": f"{SERVICE}-x7k2p", "labels": {SERVICE_NAME_LABEL: SERVICE}},
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [f"10.244.0.{n + 10}"],
                "conditions": conditions,
                "targetRef": {"kind": "Pod", "name": name, "namespace": NAMESPACE},
            }
            for n, name in enumerate(pods)
        ],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


@dataclass
class FakeCluster:
    """A ClusterReader over recorded objects; records what it was asked."""

    deployment: dict[str, Any] | None = field(default_factory=deployment)
    pods: list[dict[str, Any]] = field(default_factory=healthy_pods)
    slices: list[dict[str, Any]] = field(default_factory=lambda: [endpoint_slice(*POD_NAMES)])
    asked: list[str] = field(default_factory=list)

    def read_deployment(self, namespace: str, name: str, /) -> Mapping[str, Any] | None:
        self.asked.append(f"deployment {namespace}/{name}")
        return self.deployment

    def list_pods(self, namespace: str, selector: Mapping[str, str], /) -> list[Mapping[str, Any]]:
        self.asked.append(f"pods {namespace}")
        assert selector == SELECTOR
        return list(self.pods)

    def list_endpoint_slices(self, namespace: str, service: str, /) -> list[Mapping[str, Any]]:
        self.asked.append(f"endpointslices {namespace}/{service}")
        return list(self.slices)


def staging() -> EnvironmentConfig:
    return parse_environment("staging", dockyard_document("staging"))


def run_checks(cluster: ClusterReader, url: str | None = None, http: httpx.Client | None = None) -> dict[str, Check]:
    checks = cluster_checks(
        cluster,
        namespace=NAMESPACE,
        expected={"dockyard-app-stable": GOOD},
        service=SERVICE,
        health_path="/health",
        url=url or f"http://{SERVICE}.{NAMESPACE}.svc.cluster.local:80",
        http=http,
    )
    return {check.name: check for check in checks}


def test_complete_rollout_with_the_digest_on_every_ready_pod_passes() -> None:
    cluster = FakeCluster()
    checks = run_checks(cluster)
    assert [c.name for c in checks.values()] == ["rollout", "pods", "endpoints"]
    assert all(c.passed for c in checks.values()), checks
    assert checks["endpoints"].detail == f"Service {SERVICE}: 3 ready endpoint(s)"
    assert cluster.asked == [
        f"deployment {NAMESPACE}/dockyard-app-stable",
        f"pods {NAMESPACE}",
        f"endpointslices {NAMESPACE}/{SERVICE}",
    ]


def test_a_pod_with_another_digest_fails() -> None:
    cluster = FakeCluster()
    cluster.pods[1] = pod(POD_NAMES[1], image_id="docker-pullable://" + OLD)
    checks = run_checks(cluster)
    assert checks["rollout"].passed  # the Deployment object says done; only the pod shows the truth
    assert not checks["pods"].passed
    assert f"pod {POD_NAMES[1]}: app runs docker-pullable://{OLD}, expected {GOOD}" in checks["pods"].detail
    assert "2 of 3 pods ready with sha256:" + "a" * 64 in checks["pods"].detail
    assert not checks["endpoints"].passed, "the Service sends traffic to that pod"
    assert POD_NAMES[1] in checks["endpoints"].detail


def test_without_an_image_id_the_pod_spec_image_decides() -> None:
    cluster = FakeCluster(pods=[pod(name, image_id="") for name in POD_NAMES])
    assert run_checks(cluster)["pods"].passed
    cluster.pods[0] = pod(POD_NAMES[0], image_id="", image=OLD)
    checks = run_checks(cluster)
    assert not checks["pods"].passed
    assert f"pod {POD_NAMES[0]}: app runs {OLD}, expected {GOOD}" in checks["pods"].detail
    tagged = GOOD.split("@")[0] + ":latest"
    cluster.pods[0] = pod(POD_NAMES[0], image_id="", image=tagged)
    assert not run_checks(cluster)["pods"].passed, "a tag is not the digest, even if it points there today"


def test_an_image_id_wins_over_the_spec() -> None:
    # The spec names GOOD but the runtime pulled OLD: the imageID is what runs.
    cluster = FakeCluster(pods=[*healthy_pods()[:2], pod(POD_NAMES[2], image_id=OLD)])
    assert not run_checks(cluster)["pods"].passed


def test_unready_pods_fail() -> None:
    cluster = FakeCluster()
    cluster.pods[0] = pod(POD_NAMES[0], ready=False)
    checks = run_checks(cluster)
    assert not checks["pods"].passed
    assert f"pod {POD_NAMES[0]} is not ready (Running)" in checks["pods"].detail


def test_a_pod_without_started_containers_fails() -> None:
    cluster = FakeCluster()
    del cluster.pods[2]["status"]["containerStatuses"]
    checks = run_checks(cluster)
    assert f"pod {POD_NAMES[2]}: no container has started" in checks["pods"].detail


def test_terminating_pods_of_the_old_release_are_ignored() -> None:
    cluster = FakeCluster()
    leaving = pod("dockyard-app-stable-5c1e-z9", image_id=OLD, ready=False)
    leaving["metadata"]["deletionTimestamp"] = "2026-12-01T12:00:00Z"
    cluster.pods.append(leaving)
    assert run_checks(cluster)["pods"].passed


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"updatedReplicas": 2}, "dockyard-app-stable: 2 of 3 replicas updated"),
        ({"readyReplicas": 2}, "dockyard-app-stable: 2 of 3 replicas ready"),
        ({"availableReplicas": 1}, "dockyard-app-stable: 1 of 3 replicas available"),
        ({"observedGeneration": 3}, "dockyard-app-stable: generation 4 not observed yet"),
        ({"replicas": 4}, "dockyard-app-stable: 1 old replica(s) remain"),
    ],
)
def test_incomplete_rollout_fails(changes: dict[str, int], problem: str) -> None:
    checks = run_checks(FakeCluster(deployment=deployment(**changes)))
    assert not checks["rollout"].passed
    assert problem in checks["rollout"].detail


def test_progress_deadline_exceeded_fails() -> None:
    stuck = deployment()
    stuck["status"]["conditions"] = [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}
    ]
    assert "progress deadline exceeded (too slow)" in run_checks(FakeCluster(deployment=stuck))["rollout"].detail


def test_deployment_pinned_to_another_image_fails() -> None:
    checks = run_checks(FakeCluster(deployment=deployment(image=OLD)))
    assert not checks["rollout"].passed
    assert f"container app runs {OLD}, expected {GOOD}" in checks["rollout"].detail


def test_missing_deployment_fails_rollout_and_pods() -> None:
    checks = run_checks(FakeCluster(deployment=None))
    assert not checks["rollout"].passed
    assert checks["rollout"].detail == f"dockyard-app-stable: no such Deployment in namespace {NAMESPACE}"
    assert not checks["pods"].passed
    assert checks["pods"].detail == "no verdict while the rollout is incomplete"


@pytest.mark.parametrize(
    ("slices", "problem"),
    [
        ([], f"Service {SERVICE} has no EndpointSlice (no such Service, or it selects no pod)"),
        ([endpoint_slice(*POD_NAMES, ready=False)], f"Service {SERVICE} has no ready endpoint (3 not ready)"),
        ([endpoint_slice()], f"Service {SERVICE} has no ready endpoint (0 not ready)"),
        (
            [endpoint_slice(*POD_NAMES), endpoint_slice("other-app-6b8c-q1")],
            f"Service {SERVICE} sends traffic to pods that did not pass the pod checks: other-app-6b8c-q1",
        ),
    ],
)
def test_the_service_must_have_ready_endpoints_on_verified_pods(slices: list[dict[str, Any]], problem: str) -> None:
    checks = run_checks(FakeCluster(slices=slices))
    assert checks["rollout"].passed
    assert checks["pods"].passed
    assert not checks["endpoints"].passed
    assert checks["endpoints"].detail == problem


def test_an_unset_ready_condition_counts_as_ready() -> None:
    checks = run_checks(FakeCluster(slices=[endpoint_slice(*POD_NAMES[:2], ready=None)]))
    assert checks["endpoints"].passed
    assert checks["endpoints"].detail == f"Service {SERVICE}: 2 ready endpoint(s)"


def test_health_path_through_the_ingress_url() -> None:
    asked: list[str] = []

    def ingress(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200 if request.url.path == "/health" else 404)

    with httpx.Client(transport=httpx.MockTransport(ingress)) as http:
        checks = run_checks(FakeCluster(), url="https://staging.dockyard.example.com", http=http)
    assert checks["health"].passed
    assert asked == ["https://staging.dockyard.example.com/health"]


def test_health_path_through_the_ingress_must_answer_200() -> None:
    with httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(503))) as http:
        checks = run_checks(FakeCluster(), url="https://staging.dockyard.example.com", http=http)
    assert not checks["health"].passed
    assert checks["health"].detail == "GET https://staging.dockyard.example.com/health answered HTTP 503, want 200"


# --- rendered manifests -----------------------------------------------------------------------------------------


def write_deployment(directory: Path, name: str, image: str) -> None:
    manifest = directory / "1-manifest" / f"apps_v1-deployment-{name}.yaml"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name},
                "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}},
            }
        )
    )
    (directory / "1-manifest" / "v1-service.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")


def test_rendered_deployments_must_pin_exactly_the_digest(tmp_path: Path) -> None:
    write_deployment(tmp_path, "dockyard-app-stable", GOOD)
    assert manifest_check(tmp_path, {"dockyard-app-stable": GOOD}).passed
    wrong = manifest_check(tmp_path, {"dockyard-app-stable": OLD})
    assert not wrong.passed
    assert f"dockyard-app-stable: container app runs {GOOD}, expected {OLD}" in wrong.detail
    tagged = GOOD.split("@")[0] + ":latest"
    write_deployment(tmp_path, "dockyard-app-stable", tagged)
    assert not manifest_check(tmp_path, {"dockyard-app-stable": GOOD}).passed


def test_missing_and_unexpected_deployments_fail(tmp_path: Path) -> None:
    write_deployment(tmp_path, "dockyard-app-canary", GOOD)
    check = manifest_check(tmp_path, {"dockyard-app-stable": GOOD})
    assert not check.passed
    assert check.detail == "Deployment dockyard-app-stable is missing; unexpected Deployment dockyard-app-canary"
    assert not manifest_check(tmp_path / "nothing-rendered", {"dockyard-app-stable": GOOD}).passed


def test_expected_images_follow_the_strategy() -> None:
    prod = parse_environment("prod", dockyard_document("prod"))  # blue-green, blue active
    strategy = prod.kubernetes.strategy
    assert isinstance(strategy, BlueGreenStrategy)
    blue, green = strategy.blue_image, strategy.green_image
    assert expected_images(prod, str(blue)) == {"dockyard-app-blue": blue, "dockyard-app-green": green}
    document = copy.deepcopy(dockyard_document("staging"))
    document["kubernetes"]["strategy"] = {"type": "canary", "weight": 34, "canaryImage": OLD}
    canary = parse_environment("staging", document)
    assert expected_images(canary, GOOD) == {"dockyard-app-stable": GOOD, "dockyard-app-canary": OLD}
    assert expected_images(staging(), GOOD) == {"dockyard-app-stable": GOOD}


def test_what_is_served_is_every_track_behind_the_apps_service() -> None:
    prod = parse_environment("prod", dockyard_document("prod"))
    strategy = prod.kubernetes.strategy
    assert isinstance(strategy, BlueGreenStrategy)
    assert subject_of("prod", prod, str(strategy.blue_image), candidate=False) == Subject(
        str(strategy.blue_image),
        {"dockyard-app-blue": str(strategy.blue_image), "dockyard-app-green": str(strategy.green_image)},
        "dockyard-app",
    )


def test_an_idle_color_is_checked_alone_through_its_preview_service() -> None:
    prod = parse_environment("prod", dockyard_document("prod"))  # blue active, green idle
    strategy = prod.kubernetes.strategy
    assert isinstance(strategy, BlueGreenStrategy)
    green = str(strategy.green_image)
    assert subject_of("prod", prod, str(strategy.blue_image), candidate=True) == Subject(
        green, {"dockyard-app-green": green}, "dockyard-app-preview", track="green", serving=False
    )


def test_a_canary_is_checked_with_the_stable_track_it_serves_beside() -> None:
    document = copy.deepcopy(dockyard_document("staging"))
    document["kubernetes"]["strategy"] = {"type": "canary", "weight": 25, "canaryImage": BAD}
    canary = parse_environment("staging", document)
    assert subject_of("staging", canary, GOOD, candidate=True) == Subject(
        BAD, {"dockyard-app-stable": GOOD, "dockyard-app-canary": BAD}, "dockyard-app", track="canary", serving=True
    )
    with pytest.raises(VerifierError, match="staging has no release on its way in"):
        subject_of("staging", staging(), GOOD, candidate=True)


# --- ledger and gate --------------------------------------------------------------------------------------------


def record(image: str, passed: bool, minutes: int, stack: str = "dev") -> Verification:
    checks = (Check("health", passed, "GET /health answered " + ("200" if passed else "503")),)
    return Verification(stack, image, passed, T0 + timedelta(minutes=minutes), "ci@runner", "render", "verify", checks)


def test_ledger_round_trip_next_to_the_file_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKYARD_LEDGER_DIR", raising=False)
    root = ledger_root(f"file://{tmp_path}/state")
    assert root == tmp_path / "state" / ".dockyard"
    ledger = Ledger(root, "dockyard")
    ledger.append(record(GOOD, True, 5))
    ledger.append(record(OLD, False, 1))
    assert ledger.path("dev") == tmp_path / "state" / ".dockyard" / "dockyard" / "dev.jsonl"
    assert ledger.verifications("dev") == [record(OLD, False, 1), record(GOOD, True, 5)]
    assert ledger.verifications("prod") == []
    with ledger.path("dev").open("a") as handle:
        handle.write('{"kind": "verification", "stack"')  # a crash mid-write
    assert len(ledger.verifications("dev")) == 2
    line = json.loads(ledger.path("dev").read_text().splitlines()[0])
    assert line["outcome"] == "passed"
    assert line["checks"] == [{"name": "health", "passed": True, "detail": "GET /health answered 200"}]


def test_ledger_root_needs_a_file_backend_or_an_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DOCKYARD_LEDGER_DIR", raising=False)
    with pytest.raises(LedgerError, match="set DOCKYARD_LEDGER_DIR"):
        ledger_root("https://api.pulumi.com")
    monkeypatch.setenv("DOCKYARD_LEDGER_DIR", str(tmp_path))
    assert ledger_root("https://api.pulumi.com") == tmp_path


def test_latest_verification_decides_and_rollback_targets_are_verified() -> None:
    history = [record(OLD, True, 0), record(GOOD, True, 10), record(GOOD, False, 20)]
    assert latest_for(history, GOOD) == record(GOOD, False, 20), "a later failure outweighs an earlier pass"
    assert latest_for(history, "other") is None
    assert last_verified(history) == record(OLD, True, 0), "GOOD's newest verification failed"
    assert last_verified([record(OLD, False, 0)]) is None
    canary = dataclasses.replace(record(BAD, True, 30), track="canary")
    assert last_verified([*history, canary]) == record(OLD, True, 0), "a passed canary was never what is served"


def test_records_of_candidates_round_trip_and_old_records_read_as_served(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, "dockyard")
    idle = dataclasses.replace(record(GOOD, True, 5), track="green", serving=False)
    ledger.append(idle)
    assert ledger.verifications("dev") == [idle]
    old = {k: v for k, v in record(OLD, True, 1).to_json().items() if k not in ("track", "serving")}
    assert Verification.from_json(old) == record(OLD, True, 1)


@dataclass
class Answers:
    """A ServiceProber answering from a script, one answer per request; records the paths and the pauses."""

    script: list[ServiceAnswer]
    paths: list[str] = field(default_factory=list)
    pauses: list[float] = field(default_factory=list)

    def get_through_service(self, namespace: str, service: str, path: str, /) -> ServiceAnswer:
        assert (namespace, service) == (NAMESPACE, SERVICE)
        self.paths.append(path)
        return self.script.pop(0)


def traffic(answers: Answers) -> Check:
    return traffic_check(
        answers, namespace=NAMESPACE, service=SERVICE, health_path="/health", requests=4, sleep=answers.pauses.append
    )


def test_traffic_through_the_service_passes_when_every_request_answers_200_with_json() -> None:
    answers = Answers([ServiceAnswer(200, '{"ok": true}')] * 4)
    check = traffic(answers)
    assert check == Check("traffic", True, f"4 requests through Service {SERVICE} (GET / and /health): all 200")
    assert answers.paths == ["/", "/health", "/", "/health"]
    assert answers.pauses == [TRAFFIC_INTERVAL] * 3, "spread over the window, no pause after the last"


def test_every_failed_request_in_the_window_counts_and_each_reason_is_named_once() -> None:
    """A canary whose pods fail takes a share of the requests: one failure fails the check."""
    ok, failing = ServiceAnswer(200, "{}"), ServiceAnswer(503, '{"status": "failing"}')
    check = traffic(Answers([ok, failing, ok, failing]))
    assert not check.passed
    assert check.detail == f"2 of 4 requests through Service {SERVICE} failed: GET /health: HTTP 503, want 200"
    refused = ServiceAnswer(0, f'the API server: no endpoints available for service "{SERVICE}"')
    check = traffic(Answers([refused, ServiceAnswer(200, "<html>"), ok, ok]))
    assert check.detail == (
        f"2 of 4 requests through Service {SERVICE} failed: GET /: the API server: no endpoints available for "
        f'service "{SERVICE}"; GET /health: HTTP 200 but the body is not JSON'
    )
