"""Progressive delivery flows without the engine: the moves apply the strategies' real config writes to a stack
document (re-validated after every move), the checks pass or fail by digest. Every way a flow ends is covered: done,
previewed, refused, rolled back (or aborted, or reverted), left unhealthy."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dockyard.model.config import BlueGreenStrategy, CanaryStrategy, EnvironmentConfig, parse_environment
from dockyard.model.strategies import ConfigWrite
from dockyard.releases.errors import EXIT_DONE, EXIT_REFUSED, EXIT_UNHEALTHY, DockyardError, RefusedError
from dockyard.releases.history import CANARY_ABORT, CANARY_COMPLETE, CANARY_STEP, PROMOTE, REVERT, ROLLBACK, SWITCH
from dockyard.releases.ledger import Check, Verification
from dockyard.releases.progressive import Ending, Run, advance_canary, promote_verified, switch_colors
from dockyard.releases.stack_update import Outcome, edited, values_at
from tests.stacks import dockyard_document

REPO = "ghcr.io/acme/dockyard-app"
OLD, NEW, BAD = (f"{REPO}@sha256:{c * 64}" for c in "abc")
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
Confirm = Callable[[], bool]


def document(strategy: dict[str, Any], ref: str | None = OLD) -> dict[str, Any]:
    """staging's config as a stack file holds it, with ``strategy``."""
    keys = copy.deepcopy(dockyard_document("staging"))
    keys["image"] = {"ref": ref} if ref else {}
    keys["kubernetes"]["replicas"] = 4
    keys["kubernetes"]["strategy"] = strategy
    keys["promotion"]["upstream"] = "dev"
    return {"config": {f"dockyard:{key}": value for key, value in keys.items()}}


@dataclass
class FakeMoves:
    """Implements :class:`dockyard.releases.progressive.Moves` on one stack document; records every move it applied."""

    stack_file: dict[str, Any]
    applied: list[tuple[str, str]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    def environment(self, stack: str, /) -> EnvironmentConfig:
        keys = {k.removeprefix("dockyard:"): v for k, v in self.stack_file["config"].items()}
        return parse_environment(stack, keys)

    def _move(self, stack: str, action: str, write: ConfigWrite, image: str, yes: bool, confirm: Confirm) -> Outcome:
        if action in self.refuse:
            raise DockyardError(f"{action} failed")
        outcome = Outcome(stack, action, write.what, image, self.environment(stack).served_image)
        outcome.before = values_at(self.stack_file, write.values)
        if yes or confirm():
            self.stack_file = edited(self.stack_file, write)
            self.environment(stack)  # the new config is valid, as the engine would find it
            self.applied.append((action, image))
            outcome.applied = True
        return outcome

    def promote(self, source: str, target: str, /, *, yes: bool, confirm: Confirm) -> Outcome:
        write = self.environment(target).kubernetes.strategy.promotion_write(BAD if source == "broken" else NEW)
        return self._move(target, PROMOTE, write, BAD if source == "broken" else NEW, yes, confirm)

    def rollback(self, stack: str, /, *, to: str | None, yes: bool, confirm: Confirm) -> Outcome:
        strategy = self.environment(stack).kubernetes.strategy
        image = to or strategy.instant_rollback or OLD
        return self._move(stack, ROLLBACK, strategy.rollback_write(image), image, yes, confirm)

    def canary_step(self, stack: str, /, *, yes: bool, confirm: Confirm) -> Outcome:
        canary = self.environment(stack).kubernetes.strategy
        assert isinstance(canary, CanaryStrategy)
        action = CANARY_STEP if canary.next_weight else CANARY_COMPLETE
        return self._move(stack, action, canary.advance_write(), str(canary.canary_image), yes, confirm)

    def canary_abort(self, stack: str, /, *, yes: bool, confirm: Confirm, reason: str) -> Outcome:
        canary = self.environment(stack).kubernetes.strategy
        assert isinstance(canary, CanaryStrategy)
        return self._move(stack, CANARY_ABORT, canary.abort_write(), str(canary.canary_image), yes, confirm)

    def switch(self, stack: str, /, *, yes: bool, confirm: Confirm) -> Outcome:
        pair = self.environment(stack).kubernetes.strategy
        assert isinstance(pair, BlueGreenStrategy)
        return self._move(stack, SWITCH, pair.switch_write(), str(pair.image_of(pair.idle_color)), yes, confirm)

    def revert(self, stack: str, moved: Outcome, /) -> Outcome:
        return self._move(stack, REVERT, ConfigWrite("revert", moved.before), moved.image, True, lambda: True)


#: Whether a check fails, from (the image checked, whether it is a candidate check, the trigger).
Verdict = Callable[[str, bool, str], bool]


def unhealthy(*images: str) -> Verdict:
    return lambda image, candidate, trigger: image in images


@dataclass
class FakeChecks:
    """Implements :class:`dockyard.releases.progressive.Checks`: a check passes unless ``fails`` says otherwise."""

    moves: FakeMoves
    fails: Verdict = field(default=unhealthy())
    history: list[Verification] = field(default_factory=list)

    def verify(self, stack: str, /, *, candidate: bool = False, trigger: str = "verify") -> Verification:
        env = self.moves.environment(stack)
        coming = env.kubernetes.strategy.candidate if candidate else None
        if candidate:
            assert coming is not None, "a candidate check of a stack without one"
        image = coming.image if coming else str(env.served_image)
        passed = not self.fails(image, candidate, trigger)
        checks = (Check("health", passed, "200" if passed else "HTTP 503"),)
        at = T0 + timedelta(minutes=len(self.history))
        record = Verification(
            stack, image, passed, at, "test", "cluster", trigger, checks,
            coming.track if coming else None, coming.serving if coming else True,
        )  # fmt: skip
        self.history.append(record)
        return record

    def verifications(self, stack: str, /) -> list[Verification]:
        return list(self.history)


def canary_stack(weight: int = 10, image: str | None = NEW) -> FakeMoves:
    strategy: dict[str, Any] = {"type": "canary", "weight": weight if image else 0}
    if image:
        strategy["canaryImage"] = image
    return FakeMoves(document(strategy))


def blue_green_stack(green: str | None = NEW) -> FakeMoves:
    strategy = {
        "type": "blueGreen",
        "activeColor": "blue",
        "blueImage": OLD,
        **({"greenImage": green} if green else {}),
    }
    return FakeMoves(document(strategy, ref=None))


def weights(moves: FakeMoves) -> tuple[int, str | None, str | None]:
    strategy = moves.environment("staging").kubernetes.strategy
    assert isinstance(strategy, CanaryStrategy)
    return strategy.weight, strategy.canary_image, moves.environment("staging").served_image


# --- canary -----------------------------------------------------------------------------------------------------


def test_one_advance_analyses_the_current_step_then_takes_the_next() -> None:
    moves = canary_stack(10)
    checks = FakeChecks(moves)
    run = advance_canary(moves, checks, "staging", auto=False, yes=True, confirm=lambda: False)
    assert (run.ending, run.exit_code) == (Ending.DONE, EXIT_DONE)
    assert [c.trigger for c in run.checks] == ["canary analysis at 10%"]
    assert (run.checks[0].image, run.checks[0].track) == (NEW, "canary")
    assert weights(moves) == (25, NEW, OLD)


def test_auto_walks_every_step_soaking_each_and_completes() -> None:
    moves = canary_stack(10)
    checks = FakeChecks(moves)
    slept: list[float] = []
    moves.stack_file["config"]["dockyard:kubernetes"]["strategy"]["stepSoakSeconds"] = 7
    run = advance_canary(moves, checks, "staging", auto=True, yes=True, confirm=lambda: False, sleep=slept.append)
    assert run.ending is Ending.DONE
    assert moves.applied == [(CANARY_STEP, NEW)] * 3 + [(CANARY_COMPLETE, NEW)]
    assert [c.trigger for c in run.checks] == [
        "canary analysis at 10%",
        "canary analysis at 25%",
        "canary analysis at 50%",
        "canary analysis at 100%",
        f"canary of {NEW} complete",
    ]
    assert slept == [7, 7, 7], "each step soaks before its analysis"
    assert weights(moves) == (0, None, NEW), "the canary image is the stable one; no canary track is left"


def test_a_failed_analysis_aborts_and_leaves_the_stable_track_serving() -> None:
    moves = canary_stack(25, BAD)
    checks = FakeChecks(moves, unhealthy(BAD))
    run = advance_canary(moves, checks, "staging", auto=True, yes=True, confirm=lambda: False)
    assert (run.ending, run.exit_code) == (Ending.ROLLED_BACK, EXIT_REFUSED)
    assert run.problem == "the canary failed its analysis at 25%"
    assert moves.applied == [(CANARY_ABORT, BAD)], "no step was taken"
    assert weights(moves) == (0, None, OLD)
    assert (run.checks[-1].image, run.checks[-1].passed, run.checks[-1].track) == (OLD, True, None)


def test_an_abort_that_cannot_be_applied_leaves_the_stack_unhealthy() -> None:
    moves = canary_stack(25, BAD)
    moves.refuse = {CANARY_ABORT}
    run = advance_canary(
        moves, FakeChecks(moves, unhealthy(BAD)), "staging", auto=True, yes=True, confirm=lambda: False
    )
    assert (run.ending, run.exit_code) == (Ending.UNHEALTHY, EXIT_UNHEALTHY)
    assert run.problem == "the canary failed its analysis at 25%; the abort failed: canary-abort failed"


def test_a_canary_that_fails_once_it_serves_everything_is_rolled_back() -> None:
    moves = canary_stack(100, NEW)
    # Healthy as a canary; unhealthy once stable (e.g. under full load): the check after completion fails.
    checks = FakeChecks(moves, lambda image, candidate, trigger: trigger.endswith("complete"))
    run = advance_canary(moves, checks, "staging", auto=True, yes=True, confirm=lambda: False)
    assert run.ending is Ending.ROLLED_BACK
    assert moves.applied == [(CANARY_COMPLETE, NEW), (ROLLBACK, OLD)]
    assert weights(moves) == (0, None, OLD)


def test_a_declined_step_is_previewed_only_and_nothing_moves() -> None:
    moves = canary_stack(10)
    run = advance_canary(moves, FakeChecks(moves), "staging", auto=True, yes=False, confirm=lambda: False)
    assert (run.ending, run.exit_code) == (Ending.PREVIEWED, EXIT_DONE)
    assert moves.applied == []
    assert weights(moves) == (10, NEW, OLD)


def test_advancing_without_a_canary_is_refused() -> None:
    moves = canary_stack(image=None)
    with pytest.raises(RefusedError, match="staging has no canary in progress"):
        advance_canary(moves, FakeChecks(moves), "staging", auto=False, yes=True, confirm=lambda: True)
    with pytest.raises(RefusedError, match="staging is not a canary stack"):
        advance_canary(blue_green_stack(), FakeChecks(moves), "staging", auto=False, yes=True, confirm=lambda: True)


# --- blue-green -------------------------------------------------------------------------------------------------


def test_switch_verifies_the_idle_color_first_then_what_is_served() -> None:
    moves = blue_green_stack()
    checks = FakeChecks(moves)
    run = switch_colors(moves, checks, "staging", yes=True, confirm=lambda: False)
    assert run.ending is Ending.DONE
    assert [(c.image, c.track, c.serving) for c in run.checks] == [(NEW, "green", False), (NEW, None, True)]
    assert moves.applied == [(SWITCH, NEW)]
    assert moves.environment("staging").served_image == NEW


def test_an_idle_color_that_fails_is_not_switched_to() -> None:
    moves = blue_green_stack(BAD)
    run = switch_colors(moves, FakeChecks(moves, unhealthy(BAD)), "staging", yes=True, confirm=lambda: True)
    assert (run.ending, run.exit_code) == (Ending.REFUSED, EXIT_REFUSED)
    assert run.problem is not None
    assert run.problem.startswith("the idle color green failed verification, nothing switched: health: HTTP 503")
    assert moves.applied == []


def test_a_switch_that_fails_once_served_switches_back() -> None:
    moves = blue_green_stack()
    # The idle color passes through its preview Service, then fails once it serves.
    checks = FakeChecks(moves, lambda image, candidate, trigger: image == NEW and not candidate)
    run = switch_colors(moves, checks, "staging", yes=True, confirm=lambda: False)
    assert run.ending is Ending.ROLLED_BACK
    assert moves.applied == [(SWITCH, NEW), (ROLLBACK, OLD)]
    assert moves.environment("staging").served_image == OLD


# --- promote --verify -------------------------------------------------------------------------------------------


def promote(moves: FakeMoves, checks: FakeChecks, source: str = "broken", yes: bool = True) -> Run:
    return promote_verified(moves, checks, source, "staging", yes=yes, confirm=lambda: False)


def test_a_rolling_target_rolls_back_to_its_previous_verified_digest() -> None:
    moves = FakeMoves(document({"type": "rolling"}))
    checks = FakeChecks(moves, unhealthy(BAD))
    checks.verify("staging")  # OLD, as served, passed earlier
    run = promote(moves, checks)
    assert run.ending is Ending.ROLLED_BACK
    assert moves.applied == [(PROMOTE, BAD), (ROLLBACK, OLD)]
    assert run.checks[-1].trigger == f"rollback after failed verification of {BAD}"


def test_a_rolling_target_without_a_verified_digest_is_left_unhealthy() -> None:
    moves = FakeMoves(document({"type": "rolling"}))
    run = promote(moves, FakeChecks(moves, unhealthy(BAD)))
    assert (run.ending, run.exit_code) == (Ending.UNHEALTHY, EXIT_UNHEALTHY)
    assert run.problem is not None
    assert run.problem.endswith("staging has no previously verified digest to roll back to")
    assert moves.applied == [(PROMOTE, BAD)]


def test_a_canary_target_checks_the_canary_and_aborts_it() -> None:
    moves = canary_stack(image=None)
    run = promote(moves, FakeChecks(moves, unhealthy(BAD)))
    assert run.ending is Ending.ROLLED_BACK
    assert (run.checks[0].image, run.checks[0].track) == (BAD, "canary")
    assert moves.applied == [(PROMOTE, BAD), (CANARY_ABORT, BAD)]
    assert weights(moves) == (0, None, OLD)


def test_a_blue_green_target_checks_the_idle_color_and_reverts_it() -> None:
    moves = blue_green_stack(green=None)
    run = promote(moves, FakeChecks(moves, unhealthy(BAD)))
    assert run.ending is Ending.ROLLED_BACK
    assert (run.checks[0].image, run.checks[0].track, run.checks[0].serving) == (BAD, "green", False)
    assert moves.applied == [(PROMOTE, BAD), (REVERT, BAD)]
    strategy = moves.environment("staging").kubernetes.strategy
    assert isinstance(strategy, BlueGreenStrategy)
    assert (strategy.active_color, strategy.green_image) == ("blue", None), "the idle color runs what it ran before"


def test_a_passed_check_keeps_the_promotion_and_a_preview_checks_nothing() -> None:
    moves = FakeMoves(document({"type": "rolling"}))
    checks = FakeChecks(moves)
    assert promote(moves, checks, source="dev").ending is Ending.DONE
    assert moves.applied == [(PROMOTE, NEW)]
    previewed = promote(moves, checks, yes=False)
    assert previewed.ending is Ending.PREVIEWED
    assert previewed.checks == []
