"""The update-history record format and the one model of an update, read as ``pulumi stack history --json`` writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from dockyard.releases.history import Update, image_from_config, parse_record, record_message

REPO = "127.0.0.1:5443/dockyard/app"
STABLE, CANARY, BLUE, GREEN = (f"{REPO}@sha256:{c * 64}" for c in "abcd")


def config(image: dict[str, Any] | None, strategy: dict[str, Any]) -> dict[str, Any]:
    """Config as the history records it: each key's value as JSON text, secrets without a value."""
    recorded = {
        "dockyard:kubernetes": {"value": json.dumps({"mode": "cluster", "strategy": strategy}), "secret": False},
        "dockyard:appSecrets": {"secret": True},
    }
    if image is not None:
        recorded["dockyard:image"] = {"value": json.dumps(image), "secret": False}
    return recorded


def test_records_round_trip() -> None:
    message = record_message("promote", image=STABLE, source="staging", actor="ana@ci host")
    assert message.startswith("dockyard promote image=")
    assert parse_record(message) == {"action": "promote", "image": STABLE, "source": "staging", "actor": "ana@ci host"}
    assert parse_record("a plain pulumi up") == {}
    assert parse_record('dockyard "unbalanced') == {}


def test_the_served_image_is_the_strategys_answer_for_the_recorded_config() -> None:
    assert image_from_config(config({"ref": STABLE}, {"type": "rolling"})) == STABLE
    during_canary = config({"ref": STABLE}, {"type": "canary", "weight": 25, "canaryImage": CANARY})
    assert image_from_config(during_canary) == STABLE, "a canary serves only its share"
    pair = {"type": "blueGreen", "activeColor": "green", "blueImage": BLUE, "greenImage": GREEN}
    assert image_from_config(config({}, pair)) == GREEN
    assert image_from_config(config({"build": {"builder": "podman"}}, {"type": "rolling"})) is None
    assert image_from_config({"dockyard:image": {"value": json.dumps({"ref": STABLE})}}) == STABLE
    assert image_from_config({}) is None
    assert image_from_config(config({}, {"type": "blueGreen"})) is None, "a config no strategy accepts names nothing"


def entry(message: str, recorded: dict[str, Any], result: str = "succeeded") -> dict[str, Any]:
    """One element of ``pulumi stack history --json``."""
    return {
        "version": 0,
        "kind": "update",
        "startTime": "2026-11-27T10:00:00.000Z",
        "endTime": "2026-11-27T10:00:09.000Z",
        "message": message,
        "environment": {"exec.kind": "cli"},
        "config": recorded,
        "result": result,
        "resourceChanges": {"same": 12, "update": 2},
    }


def test_an_update_names_the_move_and_the_served_image() -> None:
    step = record_message("canary-step", image=CANARY, **{"from": STABLE}, actor="ana@host", weight="25")
    update = Update.from_json(
        entry(step, config({"ref": STABLE}, {"type": "canary", "weight": 25, "canaryImage": CANARY}))
    )
    assert (update.action, update.image, update.served, update.previous) == ("canary-step", CANARY, STABLE, STABLE)
    assert update.started == datetime(2026, 11, 27, 10, 0, tzinfo=UTC), "engine times are UTC"
    assert update.at == datetime(2026, 11, 27, 10, 0, 9, tzinfo=UTC)
    assert update.changes == {"same": 12, "update": 2}
    assert not update.built


def test_a_plain_update_serves_what_its_config_says() -> None:
    plain = Update.from_json(entry("", config({"ref": STABLE}, {"type": "rolling"})))
    assert (plain.action, plain.image, plain.served) == (None, STABLE, STABLE)
    document = plain.to_json()
    assert (document["image"], document["started"], document["changes"]) == (
        STABLE,
        "2026-11-27T10:00:00+00:00",
        {"same": 12, "update": 2},
    )
