"""Promotion gates and history records, without the engine."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

from components.config import EnvironmentConfig, parse_environment
from dockyard import gates
from dockyard.promotion import image_from_config, image_key, parse_record, record_message
from tests.stacks import dockyard_document

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DIGEST_REF = "ghcr.io/acme/dockyard-app@sha256:" + "5" * 64


def prod() -> EnvironmentConfig:
    return parse_environment("prod", dockyard_document("prod"))


def test_order_follows_the_configured_upstream() -> None:
    assert gates.order_problems("staging", "prod", prod()) == []
    assert gates.order_problems("dev", "prod", prod()) == ["prod accepts releases from staging only, not from dev"]
    local = parse_environment("local", dockyard_document("local"))
    assert gates.order_problems("local-prod", "local", local) == [
        "local accepts no promotions (dockyard:promotion.upstream is not set)"
    ]


def test_freeze_window() -> None:
    frozen = datetime(2026, 12, 24, tzinfo=UTC)
    (problem,) = gates.freeze_problems("prod", prod(), frozen)
    assert (
        problem == "prod is frozen from 2026-12-23T00:00:00+00:00 to 2027-01-04T00:00:00+00:00 (year-end change freeze)"
    )
    assert gates.freeze_problems("prod", prod(), NOW) == []
    assert gates.freeze_problems("prod", prod(), datetime(2027, 1, 4, tzinfo=UTC)) == [], "the end is exclusive"


def test_soak_time() -> None:
    env = prod()  # soakMinutes: 120
    assert gates.soak_problems("staging", env, NOW - timedelta(minutes=121), NOW) == []
    (problem,) = gates.soak_problems("staging", env, NOW - timedelta(minutes=30), NOW)
    assert problem == "staging has soaked 30 min of 120; wait 90 min"
    assert gates.soak_problems("staging", env, None, NOW) == ["staging has no completed deployment to soak"]


def test_no_soak_configured() -> None:
    document = copy.deepcopy(dockyard_document("prod"))
    document["promotion"]["soakMinutes"] = 0
    assert gates.soak_problems("staging", parse_environment("prod", document), None, NOW) == []


def test_source_must_have_succeeded_and_be_pinned() -> None:
    assert gates.source_update_problems("staging", "failed") == [
        "staging's last update failed; promote only what deployed successfully"
    ]
    assert gates.source_update_problems("staging", None) == ["staging has never been deployed"]
    assert gates.image_problems("staging", "ghcr.io/a/b:1.0") == [
        "staging's image_ref ghcr.io/a/b:1.0 is not digest-pinned"
    ]
    assert gates.image_problems("staging", None)
    assert gates.image_problems("staging", DIGEST_REF) == []


def test_records_round_trip() -> None:
    message = record_message("promote", image=DIGEST_REF, source="staging", actor="ana@ci host")
    assert parse_record(message) == {
        "action": "promote",
        "image": DIGEST_REF,
        "source": "staging",
        "actor": "ana@ci host",
    }
    assert parse_record("a plain pulumi up") == {}


def test_image_key_targets_the_idle_color_for_blue_green() -> None:
    assert image_key(prod()) == "dockyard:kubernetes.strategy.greenImage"
    assert image_key(parse_environment("staging", dockyard_document("staging"))) == "dockyard:image.ref"


def test_image_from_recorded_config() -> None:
    assert (
        image_from_config({"dockyard:image": {"value": json.dumps({"ref": DIGEST_REF}), "secret": False}}) == DIGEST_REF
    )
    blue_green = json.dumps({"strategy": {"type": "blueGreen", "activeColor": "green", "greenImage": DIGEST_REF}})
    assert image_from_config({"dockyard:kubernetes": {"value": blue_green}}) == DIGEST_REF
    assert image_from_config({}) is None


def test_soak_accepts_the_naive_utc_times_the_automation_api_reports() -> None:
    naive = (NOW - timedelta(minutes=30)).replace(tzinfo=None)
    assert gates.soak_problems("staging", prod(), naive, NOW) == ["staging has soaked 30 min of 120; wait 90 min"]
