"""Release semantics in one home: for every strategy, the image a stack serves, what a promotion writes, which tracks
exist; how a canary steps, completes and aborts; how a blue-green pair switches and switches back; the qa tier."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dockyard.model.config import (
    BlueGreenStrategy,
    CanaryStrategy,
    ConfigError,
    EnvironmentConfig,
    ReleaseError,
    RollingStrategy,
    Tier,
    parse_environment,
)
from dockyard.model.strategies import Candidate
from dockyard_components.release import Track, split_replicas
from policies.rules import PROMOTED_TIERS
from tests.stacks import dockyard_document

REPO = "ghcr.io/acme/dockyard-app"
STABLE, NEW, BLUE, GREEN = (f"{REPO}@sha256:{c * 64}" for c in "1234")


def staging(strategy: dict[str, Any], tier: str = "staging", **promotion: Any) -> EnvironmentConfig:
    document = copy.deepcopy(dockyard_document("staging"))
    document["tier"] = tier
    document["image"] = {"ref": STABLE}
    document["kubernetes"]["replicas"] = 4
    document["kubernetes"]["strategy"] = strategy
    document["promotion"].update(promotion)
    return parse_environment("staging", document)


def blue_green(active: str = "blue", green: str | None = GREEN) -> EnvironmentConfig:
    document = copy.deepcopy(dockyard_document("prod"))
    strategy = {"type": "blueGreen", "activeColor": active, "blueImage": BLUE}
    if green:
        strategy["greenImage"] = green
    document["kubernetes"]["strategy"] = strategy
    return parse_environment("prod", document)


def canary(weight: int = 0, image: str | None = None, **extra: Any) -> EnvironmentConfig:
    strategy: dict[str, Any] = {"type": "canary", "weight": weight, **extra}
    if image:
        strategy["canaryImage"] = image
    return staging(strategy)


# --- served image, promotion write, tracks: every strategy ----------------------------------------------------


def test_rolling_serves_image_ref_and_promotion_writes_it() -> None:
    env = staging({"type": "rolling"})
    assert env.served_image == STABLE
    write = env.kubernetes.strategy.promotion_write(NEW)
    assert write.values == {"image.ref": NEW}
    assert env.kubernetes.tracks == [Track("stable", 4)]
    assert env.kubernetes.tracks[0].image_or(STABLE) == STABLE
    assert env.kubernetes.strategy.candidate is None
    assert env.kubernetes.service_track is None


def test_canary_serves_the_stable_image_and_promotion_starts_a_canary_at_the_first_step() -> None:
    env = canary(steps=[20, 60, 100])
    assert env.served_image == STABLE
    assert env.kubernetes.strategy.promotion_write(NEW).values == {
        "kubernetes.strategy.canaryImage": NEW,
        "kubernetes.strategy.weight": 20,
    }
    assert env.kubernetes.tracks == [Track("stable", 4)], "no canary image: no canary track"
    running = canary(25, NEW)
    assert running.served_image == STABLE, "the canary serves only its share"
    assert running.kubernetes.tracks == [Track("stable", 3), Track("canary", 1, NEW)]
    assert running.kubernetes.strategy.candidate == Candidate("canary", NEW, serving=True)


def test_blue_green_serves_the_active_color_and_promotion_writes_the_idle_one() -> None:
    env = blue_green("blue")
    assert env.served_image == BLUE
    assert env.kubernetes.strategy.promotion_write(NEW).values == {"kubernetes.strategy.greenImage": NEW}
    assert env.kubernetes.tracks == [Track("blue", 3, BLUE), Track("green", 3, GREEN)]
    assert env.kubernetes.service_track == "blue"
    assert env.kubernetes.strategy.candidate == Candidate("green", GREEN, serving=False, service="preview")
    on_green = blue_green("green")
    assert on_green.served_image == GREEN
    assert on_green.kubernetes.strategy.promotion_write(NEW).values == {"kubernetes.strategy.blueImage": NEW}
    assert blue_green(green=None).kubernetes.tracks == [Track("blue", 3, BLUE)]
    assert blue_green(green=None).kubernetes.strategy.candidate is None


# --- canary steps -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("weight", "after"), [(10, 25), (25, 50), (50, 100), (30, 50)])
def test_a_canary_advances_to_the_next_configured_step(weight: int, after: int) -> None:
    strategy = canary(weight, NEW).kubernetes.strategy
    assert isinstance(strategy, CanaryStrategy)
    assert strategy.advance_write().values == {"kubernetes.strategy.weight": after}


def test_past_the_last_step_the_canary_becomes_stable_and_its_track_goes_away() -> None:
    strategy = canary(100, NEW).kubernetes.strategy
    assert isinstance(strategy, CanaryStrategy)
    assert strategy.next_weight is None
    assert strategy.advance_write().values == {
        "image.ref": NEW,
        "kubernetes.strategy.canaryImage": None,
        "kubernetes.strategy.weight": 0,
    }
    short = canary(50, NEW, steps=[10, 50]).kubernetes.strategy
    assert isinstance(short, CanaryStrategy)
    assert short.advance_write().values["image.ref"] == NEW, "a list that ends below 100 completes from its last step"


def test_abort_returns_to_zero_and_removes_the_canary() -> None:
    strategy = canary(50, NEW).kubernetes.strategy
    assert isinstance(strategy, CanaryStrategy)
    assert strategy.abort_write().values == {"kubernetes.strategy.canaryImage": None, "kubernetes.strategy.weight": 0}


def test_no_canary_in_progress_cannot_advance_or_abort() -> None:
    strategy = canary().kubernetes.strategy
    assert isinstance(strategy, CanaryStrategy)
    with pytest.raises(ReleaseError, match="no canary is in progress"):
        strategy.advance_write()
    with pytest.raises(ReleaseError, match="no canary is in progress"):
        strategy.abort_write()


def test_a_canary_rollback_also_removes_a_canary_in_progress() -> None:
    strategy = canary(25, NEW).kubernetes.strategy
    assert strategy.rollback_write(STABLE).values == {
        "image.ref": STABLE,
        "kubernetes.strategy.canaryImage": None,
        "kubernetes.strategy.weight": 0,
    }


@pytest.mark.parametrize("steps", [[], [0, 50], [50, 25], [10, 10, 100], [10, 101]])
def test_canary_steps_must_be_increasing_percentages(steps: list[int]) -> None:
    with pytest.raises(ConfigError, match=r"kubernetes\.strategy\.steps"):
        canary(steps=steps)


def test_a_weight_without_a_canary_image_is_refused() -> None:
    with pytest.raises(ConfigError, match="weight: 25 without canaryImage"):
        canary(25)


# --- blue-green switch and switch back -------------------------------------------------------------------------


def test_switch_flips_only_the_active_color() -> None:
    strategy = blue_green("blue").kubernetes.strategy
    assert isinstance(strategy, BlueGreenStrategy)
    assert strategy.switch_write().values == {"kubernetes.strategy.activeColor": "green"}
    empty = blue_green(green=None).kubernetes.strategy
    assert isinstance(empty, BlueGreenStrategy)
    with pytest.raises(ReleaseError, match="the idle color green runs no release"):
        empty.switch_write()


def test_a_blue_green_rollback_is_a_switch_back_to_the_idle_color() -> None:
    strategy = blue_green("green").kubernetes.strategy  # green took over from blue, which still runs BLUE
    assert strategy.instant_rollback == BLUE
    assert strategy.rollback_write(BLUE).values == {"kubernetes.strategy.activeColor": "blue"}
    with pytest.raises(ReleaseError, match="switches back to the idle color blue"):
        strategy.rollback_write(NEW)


def test_only_blue_green_rolls_back_without_history() -> None:
    assert RollingStrategy(type="rolling").instant_rollback is None
    assert canary(25, NEW).kubernetes.strategy.instant_rollback is None


def test_split_replicas_follows_the_default_steps() -> None:
    assert [split_replicas(4, weight, True) for weight in (10, 25, 50, 100)] == [(3, 1), (3, 1), (2, 2), (0, 4)]


# --- tiers ------------------------------------------------------------------------------------------------------


def test_qa_has_the_staging_rules() -> None:
    assert Tier.QA.promoted_only
    assert [tier.value for tier in Tier] == ["dev", "qa", "staging", "prod"]
    assert staging({"type": "rolling"}, tier="qa").requires_verified_releases
    with pytest.raises(ConfigError, match=r"image\.build: set in tier qa"):
        parse_environment("qa", {**dockyard_document("dev"), "tier": "qa"})


def test_config_can_say_otherwise_about_verification() -> None:
    assert not staging({"type": "rolling"}, tier="qa", requireVerification=False).requires_verified_releases
    dev = parse_environment("dev", dockyard_document("dev"))
    assert not dev.requires_verified_releases


def test_the_policy_pack_knows_the_same_promoted_tiers() -> None:
    assert set(PROMOTED_TIERS) == {tier.value for tier in Tier if tier.promoted_only}
