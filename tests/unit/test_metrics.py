"""Delivery metrics from a recorded history: every figure exactly, the chart, image labels through the registry API."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard.model.credentials import RegistryCredentials
from dockyard.releases.history import Update, record_message
from dockyard.releases.ledger import Check, Verification
from dockyard.releases.metrics import (
    UNKNOWN_COMMIT_TIME,
    Metrics,
    Summary,
    commit_time,
    compute,
    deployments_of,
    parse_since,
    write_chart,
)
from dockyard.releases.registry_client import RegistryUnreachableError, image_labels

REPO = "ghcr.io/acme/dockyard-app"
A, B, C, D = (f"{REPO}@sha256:{c * 64}" for c in "abcd")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def summary(
    start: str,
    end: str,
    result: str,
    image: str,
    action: str | None = None,
    changes: dict[str, int] | None = None,
    strategy: dict[str, Any] | None = None,
    named: str | None = None,
) -> Update:
    """One entry as ``pulumi stack history --json`` records it (UTC times, config values as JSON text).

    ``image`` is what the recorded config serves ("": no ``image.ref``); ``named`` the image the move names, when
    that differs.
    """
    message = record_message(action, image=named or image, actor="ci@runner", source="dev") if action else ""
    kubernetes = {"strategy": strategy or {"type": "rolling"}}
    return Update.from_json(
        {
            "kind": "update",
            "startTime": f"{start}.000Z",
            "endTime": f"{end}.000Z",
            "message": message,
            "environment": {},
            "config": {
                "dockyard:image": {"value": json.dumps({"ref": image} if image else {}), "secret": False},
                "dockyard:kubernetes": {"value": json.dumps(kubernetes), "secret": False},
                "dockyard:appSecrets": {"secret": True},
            },
            "result": result,
            "resourceChanges": changes or {"same": 12, "update": 1},
        }
    )


#: staging's history: A before the window; B; C fails its verification and is rolled back to B; D fails to apply,
#: then applies; a config-only update; D fails a later verification and nobody has restored it yet.
STAGING = [
    summary("2026-10-20T10:00:00", "2026-10-20T10:04:00", "succeeded", A, "promote"),
    summary("2026-11-02T10:00:00", "2026-11-02T10:05:00", "succeeded", B, "promote"),
    summary("2026-11-05T09:00:00", "2026-11-05T09:04:00", "succeeded", C, "promote"),
    summary("2026-11-05T09:12:00", "2026-11-05T09:15:00", "succeeded", B, "rollback"),
    summary("2026-11-10T08:00:00", "2026-11-10T08:03:00", "failed", D, "promote"),
    summary("2026-11-10T08:30:00", "2026-11-10T08:34:00", "succeeded", D, "promote"),
    summary("2026-11-12T15:00:00", "2026-11-12T15:01:00", "succeeded", D),
]


def verification(image: str, passed: bool, when: str, track: str | None = None, serving: bool = True) -> Verification:
    checks = (Check("health", passed, "200" if passed else "503"),)
    return Verification("staging", image, passed, at(when), "ci@runner", "cluster", "verify", checks, track, serving)


VERIFICATIONS = [
    verification(B, True, "2026-11-02T10:10:00"),
    verification(C, False, "2026-11-05T09:10:00"),
    verification(B, True, "2026-11-05T09:20:00"),
    verification(D, True, "2026-11-10T08:40:00"),
    verification(D, False, "2026-11-30T09:00:00"),
]
COMMIT_TIMES = {
    A: at("2026-10-19T10:00:00"),
    B: at("2026-11-01T10:05:00"),  # deployed 24 h later
    C: at("2026-11-05T07:04:00"),  # deployed 2 h later
    D: UNKNOWN_COMMIT_TIME,  # built outside git: unknown
}


def build(start: str, seconds: int, result: str = "succeeded", changes: dict[str, int] | None = None) -> Update:
    started = at(start)
    return Update(started, started + timedelta(seconds=seconds), result, changes=changes or {"replace": 1, "same": 9})


#: dev, the building stack: image builds replace the build resource; config-only updates and failures do not count.
DEV_BUILDS = [
    build("2026-10-25T10:00:00", 400, changes={"create": 14}),  # before the window
    build("2026-11-03T09:00:00", 90),
    build("2026-11-04T10:00:00", 150),
    build("2026-11-09T10:00:00", 120),
    build("2026-11-11T10:00:00", 20, changes={"update": 1, "same": 13}),
    build("2026-11-12T10:00:00", 300, result="failed"),
]


def staging_metrics() -> Metrics:
    return compute(
        "staging",
        STAGING,
        VERIFICATIONS,
        commit_times=COMMIT_TIMES,
        builds=DEV_BUILDS,
        building=False,
        since=timedelta(days=30),
        now=NOW,
    )


def test_every_figure_from_the_recorded_history() -> None:
    metrics = staging_metrics()
    assert metrics.start == at("2026-11-01T12:00:00")
    assert metrics.deployments == 3  # B, C, D (A is before the window; the config-only update changes no image)
    assert metrics.deployments_per_day == pytest.approx(0.1)
    assert metrics.lead_time == Summary(2, 46800.0, 46800.0)  # 24 h and 2 h
    assert metrics.lead_time_unknown == 1  # D
    assert metrics.changes == 4  # three deployments and the failed update
    assert metrics.failed_changes == 3  # C (failed verification, rolled back), D (failed later), the failed update
    assert metrics.change_failure_rate == pytest.approx(0.75)
    assert metrics.failed_updates == 1
    assert metrics.failed_verifications == 2
    assert metrics.rollbacks == 1
    assert metrics.time_to_restore == Summary(2, 1410.0, 1410.0)  # 10 min (C) and 37 min (failed update of D)
    assert metrics.open_incidents == 1  # D's failure on 11-30
    assert metrics.build_duration == Summary(3, 120.0, 120.0)  # 90 s, 150 s, 120 s


def test_timeline_has_every_day_of_the_window() -> None:
    timeline = staging_metrics().timeline
    assert len(timeline) == 31
    assert (timeline[0]["day"], timeline[-1]["day"]) == ("2026-11-01", "2026-12-01")
    busy = {
        row["day"]: (row["deployments"], row["failures"], row["rollbacks"])
        for row in timeline
        if any(row[key] for key in ("deployments", "failures", "rollbacks"))
    }
    assert busy == {
        "2026-11-02": (1, 0, 0),
        "2026-11-05": (1, 1, 1),
        "2026-11-10": (1, 1, 0),
        "2026-11-30": (0, 1, 0),
    }


def test_a_shorter_window_sees_only_its_own_records() -> None:
    metrics = compute(
        "staging",
        STAGING,
        VERIFICATIONS,
        commit_times=COMMIT_TIMES,
        builds=DEV_BUILDS,
        building=False,
        since=timedelta(days=2),
        now=NOW,
    )
    assert (metrics.deployments, metrics.changes, metrics.change_failure_rate) == (0, 0, None)
    assert metrics.failed_verifications == 1
    assert metrics.open_incidents == 1
    assert metrics.time_to_restore == Summary(0, None, None)
    assert metrics.build_duration == Summary(0, None, None)


def test_a_manual_rollback_marks_the_deployment_failed_and_opens_an_incident() -> None:
    history = [
        summary("2026-11-20T10:00:00", "2026-11-20T10:02:00", "succeeded", B, "promote"),
        summary("2026-11-21T10:00:00", "2026-11-21T10:02:00", "succeeded", C, "promote"),
        summary("2026-11-21T11:00:00", "2026-11-21T11:01:00", "succeeded", B, "rollback"),
    ]
    restored = [verification(B, True, "2026-11-21T11:05:00")]
    metrics = compute(
        "staging",
        history,
        restored,
        commit_times={},
        builds=[],
        building=False,
        since=timedelta(days=30),
        now=NOW,
    )
    assert (metrics.deployments, metrics.failed_changes, metrics.rollbacks) == (2, 1, 1)
    assert metrics.time_to_restore == Summary(1, 300.0, 300.0)  # rollback start → passed verification
    assert metrics.lead_time_unknown == 2


def window(history: list[Update], verifications: list[Verification]) -> Metrics:
    return compute(
        "staging",
        history,
        verifications,
        commit_times={},
        builds=[],
        building=False,
        since=timedelta(days=30),
        now=NOW,
    )


def test_an_aborted_canary_is_a_failed_change_restored_by_the_next_passed_verification() -> None:
    def canary(weight: int, image: str | None) -> dict[str, Any]:
        return {"type": "canary", "weight": weight, **({"canaryImage": image} if image else {})}

    history = [
        summary("2026-11-20T10:00:00", "2026-11-20T10:01:00", "succeeded", B, "promote", strategy=canary(0, None)),
        summary("2026-11-21T10:00:00", "2026-11-21T10:01:00", "succeeded", B, "promote", None, canary(10, C), C),
        summary("2026-11-21T10:04:00", "2026-11-21T10:05:00", "succeeded", B, "canary-step", None, canary(25, C), C),
        summary("2026-11-21T10:11:00", "2026-11-21T10:12:00", "succeeded", B, "canary-abort", None, canary(0, None), C),
        summary("2026-11-22T10:00:00", "2026-11-22T10:01:00", "succeeded", B, "promote", None, canary(10, D), D),
        summary("2026-11-22T11:00:00", "2026-11-22T11:01:00", "succeeded", D, "canary-complete", None, canary(0, None)),
    ]
    checks = [
        verification(C, False, "2026-11-21T10:10:00", track="canary"),  # the analysis at 25 % fails: users saw it
        verification(B, True, "2026-11-21T10:15:00"),  # what is served after the abort passes
        verification(D, True, "2026-11-22T11:05:00"),
    ]
    metrics = window(history, checks)
    assert metrics.deployments == 2, "the first release and the completed canary; steps change no served image"
    assert (metrics.changes, metrics.failed_changes, metrics.aborted_canaries) == (3, 1, 1)
    assert metrics.failed_verifications == 1
    assert metrics.time_to_restore == Summary(1, 300.0, 300.0)  # failed analysis → passed verification after abort
    assert metrics.open_incidents == 0
    assert [row["failures"] for row in metrics.timeline if row["day"] == "2026-11-21"] == [2]


def test_an_abort_by_hand_opens_an_incident_of_its_own() -> None:
    running = {"type": "canary", "weight": 10, "canaryImage": C}
    history = [
        summary("2026-11-21T10:00:00", "2026-11-21T10:01:00", "succeeded", B, "promote", None, running, C),
        summary("2026-11-21T10:30:00", "2026-11-21T10:31:00", "succeeded", B, "canary-abort", None, None, C),
    ]
    metrics = window(history, [verification(B, True, "2026-11-21T10:34:00")])
    assert (metrics.changes, metrics.failed_changes, metrics.failed_verifications) == (2, 1, 0)
    assert metrics.time_to_restore == Summary(1, 240.0, 240.0)  # the abort's start → the next passed verification


def test_a_switch_back_marks_the_switch_failed_and_an_idle_failure_is_no_incident() -> None:
    def pair(active: str, green: str | None) -> dict[str, Any]:
        return {"type": "blueGreen", "activeColor": active, "blueImage": B, **({"greenImage": green} if green else {})}

    history = [
        summary("2026-11-20T10:00:00", "2026-11-20T10:01:00", "succeeded", B, None, strategy=pair("blue", None)),
        summary("2026-11-21T10:00:00", "2026-11-21T10:01:00", "succeeded", B, "promote", None, pair("blue", C), C),
        summary("2026-11-21T10:04:00", "2026-11-21T10:05:00", "succeeded", C, "switch", None, pair("green", C)),
        summary("2026-11-21T10:08:00", "2026-11-21T10:09:00", "succeeded", B, "rollback", None, pair("blue", C)),
    ]
    checks = [
        verification(C, False, "2026-11-21T09:30:00", track="green", serving=False),  # an idle color serves nobody
        verification(C, True, "2026-11-21T10:02:00", track="green", serving=False),
        verification(C, False, "2026-11-21T10:07:00"),
        verification(B, True, "2026-11-21T10:10:00"),
    ]
    metrics = window(history, checks)
    assert metrics.deployments == 2, "the first release and the switch; the promotion onto the idle color is none"
    assert (metrics.changes, metrics.failed_changes, metrics.rollbacks) == (2, 1, 1)
    assert metrics.failed_verifications == 1
    assert metrics.time_to_restore == Summary(1, 180.0, 180.0)


def test_history_entries_are_read_like_the_engine_writes_them() -> None:
    rollback = STAGING[3]
    assert rollback.action == "rollback"
    assert rollback.image == B
    assert rollback.started == at("2026-11-05T09:12:00"), "naive engine times are UTC"
    assert rollback.changes == {"same": 12, "update": 1}
    plain = STAGING[6]
    assert plain.action is None
    assert plain.image == D, "a plain update's image comes from the config it ran with"


def test_updates_that_serve_no_release_yet_are_no_deployments() -> None:
    """A promoted stack before its first release (created objects, no image) and a first canary beside no stable
    track serve nothing: the first deployment is the canary's completion."""
    canary = {"type": "canary", "weight": 10, "canaryImage": A}
    history = [
        summary("2026-11-01T10:00:00", "2026-11-01T10:01:00", "succeeded", "", changes={"create": 9}),
        summary("2026-11-02T10:00:00", "2026-11-02T10:01:00", "succeeded", "", "promote", {"create": 1}, canary, A),
        summary("2026-11-02T11:00:00", "2026-11-02T11:01:00", "succeeded", A, "canary-complete", {"update": 1}),
    ]
    assert [u.served for u in history] == [None, None, A]
    (first,) = deployments_of(history, building=False)
    assert first.started == at("2026-11-02T11:00:00")


def test_a_building_stack_deploys_what_it_builds() -> None:
    built = deployments_of(DEV_BUILDS, building=True)
    assert [u.started for u in built] == [
        at(t) for t in ("2026-10-25T10:00:00", "2026-11-03T09:00:00", "2026-11-04T10:00:00", "2026-11-09T10:00:00")
    ]


def test_commit_time_label() -> None:
    assert commit_time({"org.opencontainers.image.created": "2026-11-01T10:05:00+01:00"}) == at("2026-11-01T09:05:00")
    assert commit_time({"org.opencontainers.image.created": "unknown"}) is None
    assert commit_time({}) is None


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
        ("90m", timedelta(minutes=90)),
    ],
)
def test_since(text: str, window: timedelta) -> None:
    assert parse_since(text) == window


@pytest.mark.parametrize("text", ["30", "0d", "-1d", "1y", ""])
def test_since_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected a positive number"):
        parse_since(text)


def test_chart_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "metrics.png"
    write_chart(staging_metrics(), path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (1000, 400)


def test_metrics_serialize_to_json() -> None:
    document = json.loads(json.dumps(staging_metrics().to_json()))
    assert document["change_failure_rate"] == 0.75
    assert document["time_to_restore"] == {"count": 2, "median": 1410.0, "mean": 1410.0}
    assert document["start"] == "2026-11-01T12:00:00+00:00"


# --- OCI labels through the registry API -----------------------------------------------------------------------


def registry(bearer: bool) -> tuple[httpx.MockTransport, list[str]]:
    """A registry holding B as an index → linux/amd64 manifest → config blob with OCI labels."""
    seen: list[str] = []
    platform_digest = "sha256:" + "e" * 64
    config_digest = "sha256:" + "f" * 64
    bodies: dict[str, Any] = {
        f"/v2/acme/dockyard-app/manifests/sha256:{'b' * 64}": {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"digest": "sha256:" + "9" * 64, "platform": {"architecture": "arm64", "os": "linux"}},
                {"digest": platform_digest, "platform": {"architecture": "amd64", "os": "linux"}},
            ],
        },
        f"/v2/acme/dockyard-app/manifests/{platform_digest}": {"config": {"digest": config_digest}},
        f"/v2/acme/dockyard-app/blobs/{config_digest}": {
            "config": {"Labels": {"org.opencontainers.image.created": "2026-11-01T10:05:00Z", "x": "y"}}
        },
    }

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.host == "ghcr.io" and request.url.path == "/token":
            assert request.headers["authorization"].startswith("Basic ")
            return httpx.Response(200, json={"token": "t"})
        if bearer and request.headers.get("authorization") != "Bearer t":
            challenge = (
                'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:acme/dockyard-app:pull"'
            )
            return httpx.Response(401, headers={"www-authenticate": challenge})
        if request.url.path in bodies:
            return httpx.Response(200, json=bodies[request.url.path])
        return httpx.Response(404)

    return httpx.MockTransport(handle), seen


@pytest.mark.parametrize("bearer", [False, True])
def test_image_labels_follow_the_index_to_the_config_blob(bearer: bool) -> None:
    transport, seen = registry(bearer)
    labels = image_labels(B, RegistryCredentials("acme-ci", "token", None), transport=transport)
    assert labels == {"org.opencontainers.image.created": "2026-11-01T10:05:00Z", "x": "y"}
    assert commit_time(labels) == at("2026-11-01T10:05:00")
    assert seen[-1] == f"/v2/acme/dockyard-app/blobs/sha256:{'f' * 64}"
    assert seen.count("/token") == (1 if bearer else 0), "one token for the whole walk"


def test_missing_image_raises() -> None:
    transport, _ = registry(False)
    with pytest.raises(RegistryUnreachableError, match="answered HTTP 404"):
        image_labels(A, RegistryCredentials("acme-ci", "token", None), transport=transport)
