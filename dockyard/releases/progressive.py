"""Progressive delivery: moves that look before and after they leap, and undo themselves when a check fails.

What Argo Rollouts and Flagger do inside a cluster, done here as reviewable stack updates:

- :func:`advance_canary`: analyse the canary's current step (its track rolled out with its digest on every pod, the
  digest healthy), then move to the next step; ``auto`` walks every step, soaking each; past the last step the canary
  image becomes the stable one and what the stack then serves is verified. A failed analysis aborts the canary.
- :func:`switch_colors`: verify a blue-green pair's idle color through its preview Service, then flip
  ``activeColor`` (a diff of Service selectors only), then verify what is served; a failure switches back.
- :func:`promote_verified`: promote, then check the release where it landed (what is served, the canary, or the
  idle color), and undo it the way the target's strategy undoes a release when the check fails.

Every flow is written against two Protocols (the moves of :class:`~dockyard.releases.moves.Releases` and the checks of
:class:`~dockyard.verify.Verifier`), so the unit tests drive them with fakes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from dockyard.model.config import CanaryStrategy, EnvironmentConfig
from dockyard.releases.errors import EXIT_DONE, EXIT_REFUSED, EXIT_UNHEALTHY, DockyardError, RefusedError, refusing
from dockyard.releases.ledger import Verification, last_verified
from dockyard.releases.stack_update import Outcome

Confirm = Callable[[], bool]


class Moves(Protocol):
    """The release moves the flows make (:class:`dockyard.releases.moves.Releases`)."""

    def environment(self, stack: str, /) -> EnvironmentConfig: ...

    def promote(self, source: str, target: str, /, *, yes: bool, confirm: Confirm) -> Outcome: ...

    def rollback(self, stack: str, /, *, to: str | None, yes: bool, confirm: Confirm) -> Outcome: ...

    def canary_step(self, stack: str, /, *, yes: bool, confirm: Confirm) -> Outcome: ...

    def canary_abort(self, stack: str, /, *, yes: bool, confirm: Confirm, reason: str) -> Outcome: ...

    def switch(self, stack: str, /, *, yes: bool, confirm: Confirm) -> Outcome: ...

    def revert(self, stack: str, moved: Outcome, /) -> Outcome: ...


class Checks(Protocol):
    """Verification of a stack or its candidate, and the stack's recorded verifications (:class:`Verifier`)."""

    def verify(self, stack: str, /, *, candidate: bool = ..., trigger: str = ...) -> Verification: ...

    def verifications(self, stack: str, /) -> list[Verification]: ...


class Ending(StrEnum):
    """How a flow ended; :attr:`Run.exit_code` maps it to the CLI's exit code."""

    DONE = "done"
    PREVIEWED = "previewed only"
    REFUSED = "refused"
    ROLLED_BACK = "rolled back"
    UNHEALTHY = "left unhealthy"


@dataclass
class Run:
    """Every move and check a flow made, in order, and how it ended (``problem``: why, when it did not go well)."""

    events: list[Outcome | Verification] = field(default_factory=list)
    ending: Ending = Ending.DONE
    problem: str | None = None
    report: Callable[[Outcome | Verification], None] = lambda _: None

    def add(self, event: Outcome | Verification) -> None:
        self.events.append(event)
        self.report(event)

    def end(self, ending: Ending, problem: str | None = None) -> Run:
        self.ending, self.problem = ending, problem
        return self

    @property
    def moves(self) -> list[Outcome]:
        return [event for event in self.events if isinstance(event, Outcome)]

    @property
    def checks(self) -> list[Verification]:
        return [event for event in self.events if isinstance(event, Verification)]

    @property
    def exit_code(self) -> int:
        if self.ending in (Ending.DONE, Ending.PREVIEWED):
            return EXIT_DONE
        return EXIT_UNHEALTHY if self.ending is Ending.UNHEALTHY else EXIT_REFUSED


def failed(check: Verification) -> str:
    return "; ".join(f"{c.name}: {c.detail}" for c in check.failed_checks) or "no check passed"


def _canary(moves: Moves, stack: str) -> CanaryStrategy:
    strategy = moves.environment(stack).kubernetes.strategy
    return refusing(f"canary move on {stack}", lambda: strategy.as_canary(stack))


def _restored(run: Run, checks: Checks, stack: str, why: str, trigger: str) -> Run:
    """After an undo: what the stack serves must pass, else it is left unhealthy."""
    served = checks.verify(stack, trigger=trigger)
    run.add(served)
    if served.passed:
        return run.end(Ending.ROLLED_BACK, why)
    return run.end(Ending.UNHEALTHY, f"{why}; and what {stack} serves now fails too: {failed(served)}")


def _abort(run: Run, moves: Moves, checks: Checks, stack: str, why: str) -> Run:
    try:
        run.add(moves.canary_abort(stack, yes=True, confirm=lambda: True, reason=why))
    except DockyardError as error:
        return run.end(Ending.UNHEALTHY, f"{why}; the abort failed: {error}")
    return _restored(run, checks, stack, why, f"after the canary abort ({why})")


def _roll_back(run: Run, moves: Moves, checks: Checks, stack: str, to: str | None, why: str, trigger: str) -> Run:
    try:
        run.add(moves.rollback(stack, to=to, yes=True, confirm=lambda: True))
    except DockyardError as error:
        return run.end(
            Ending.UNHEALTHY, f"{why}; the rollback of {stack} to {to or 'its previous release'} failed: {error}"
        )
    return _restored(run, checks, stack, why, trigger)


def advance_canary(
    moves: Moves,
    checks: Checks,
    stack: str,
    *,
    auto: bool,
    yes: bool,
    confirm: Confirm,
    report: Callable[[Outcome | Verification], None] = lambda _: None,
    sleep: Callable[[float], None] = time.sleep,
) -> Run:
    """Analyse the current step, then take the next one (``auto``: every one, soaking each, to completion)."""
    run = Run(report=report)
    canary = _canary(moves, stack)
    if not canary.in_progress:
        raise RefusedError(f"canary advance of {stack}", [f"{stack} has no canary in progress (promote one first)"])
    while True:
        analysis = checks.verify(stack, candidate=True, trigger=f"canary analysis at {canary.weight}%")
        run.add(analysis)
        if not analysis.passed:
            return _abort(run, moves, checks, stack, f"the canary failed its analysis at {canary.weight}%")
        step = moves.canary_step(stack, yes=yes, confirm=confirm)
        run.add(step)
        if not step.applied:
            return run.end(Ending.PREVIEWED)
        canary = _canary(moves, stack)
        if not canary.in_progress:
            # Completed: the canary image is the stable one now; check what is served, roll back if it fails.
            served = checks.verify(stack, trigger=f"canary of {step.image} complete")
            run.add(served)
            if served.passed:
                return run
            why = f"{step.image} failed once it served everything: {failed(served)}"
            return _roll_back(
                run, moves, checks, stack, step.previous, why, f"rollback after the canary of {step.image} completed"
            )
        if not auto:
            return run
        sleep(canary.step_soak_seconds)


def abort_canary(
    moves: Moves, stack: str, *, yes: bool, confirm: Confirm, report: Callable[[Outcome | Verification], None]
) -> Run:
    """Abort by hand: back to 0 %, the canary track removed."""
    run = Run(report=report)
    aborted = moves.canary_abort(stack, yes=yes, confirm=confirm, reason="aborted by hand")
    run.add(aborted)
    return run.end(Ending.DONE if aborted.applied else Ending.PREVIEWED)


def switch_colors(
    moves: Moves,
    checks: Checks,
    stack: str,
    *,
    yes: bool,
    confirm: Confirm,
    report: Callable[[Outcome | Verification], None] = lambda _: None,
) -> Run:
    """Verify the idle color, switch to it, verify what is served; switch back when that fails."""
    run = Run(report=report)
    strategy = moves.environment(stack).kubernetes.strategy
    idle = refusing(f"switch of {stack}", lambda: strategy.as_blue_green(stack)).idle_color
    ready = checks.verify(stack, candidate=True, trigger=f"before switching to {idle}")
    run.add(ready)
    if not ready.passed:
        return run.end(Ending.REFUSED, f"the idle color {idle} failed verification, nothing switched: {failed(ready)}")
    switched = moves.switch(stack, yes=yes, confirm=confirm)
    run.add(switched)
    if not switched.applied:
        return run.end(Ending.PREVIEWED)
    served = checks.verify(stack, trigger=f"switch to {idle}")
    run.add(served)
    if served.passed:
        return run
    why = f"{switched.image} failed once it served: {failed(served)}"
    return _roll_back(run, moves, checks, stack, None, why, f"switch back after switching to {idle}")


def promote_verified(
    moves: Moves,
    checks: Checks,
    source: str,
    target: str,
    *,
    yes: bool,
    confirm: Confirm,
    report: Callable[[Outcome | Verification], None] = lambda _: None,
) -> Run:
    """Promote, check the release where it landed, and undo it the way the target's strategy undoes a release."""
    run = Run(report=report)
    promoted = moves.promote(source, target, yes=yes, confirm=confirm)
    run.add(promoted)
    if not promoted.applied:
        return run.end(Ending.PREVIEWED)
    candidate = moves.environment(target).kubernetes.strategy.candidate
    check = checks.verify(target, candidate=candidate is not None, trigger=f"promote from {source}")
    run.add(check)
    if check.passed:
        return run
    why = f"{promoted.image} failed verification on {target}: {failed(check)}"
    if candidate is not None and candidate.serving:
        return _abort(run, moves, checks, target, why)
    if candidate is not None:
        # The release waits on the idle color and never served: put back what the idle color ran before.
        run.add(moves.revert(target, promoted))
        return run.end(Ending.ROLLED_BACK, why)
    # The promoted image has just failed, so its newest record is a failure: it cannot be the target.
    previous = last_verified(checks.verifications(target))
    if previous is None:
        return run.end(Ending.UNHEALTHY, f"{why}; {target} has no previously verified digest to roll back to")
    trigger = f"rollback after failed verification of {promoted.image}"
    return _roll_back(run, moves, checks, target, previous.image, why, trigger)
