"""The one error type of the ``dockyard`` CLI, and its exit codes.

Every refusal or failure the CLI reports extends :class:`DockyardError`, so the command catches one type and every
message is one a user can act on. The exit codes are the CLI's contract (``--help`` and the README say the same).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from dockyard.model.strategies import ReleaseError

T = TypeVar("T")

#: Done: applied, previewed, or nothing to do.
EXIT_DONE = 0
#: Refused before anything changed, or a failed check was answered by rolling back (or aborting): what serves
#: traffic is a release that passed its checks.
EXIT_REFUSED = 1
#: Left unhealthy: a failed check could not be answered by a rollback to a verified release.
EXIT_UNHEALTHY = 3


class DockyardError(Exception):
    """A refusal or failure with a message a user can act on; nothing was changed unless it says so."""

    exit_code = EXIT_REFUSED


class UpdateFailedError(DockyardError):
    """A move's ``pulumi up`` ran and failed: resources may have changed, though the stack file holds only what was
    applied. ``reason`` is the engine's own line."""

    def __init__(self, message: str, reason: str) -> None:
        self.reason = reason
        super().__init__(message)


class UnhealthyError(DockyardError):
    """A failed move could not be answered by restoring the release that served: the message says the way out."""

    exit_code = EXIT_UNHEALTHY


class RefusedError(DockyardError):
    """A move that one or more gates refused; ``problems`` lists every reason at once."""

    def __init__(self, action: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{action} refused:\n" + "\n".join(f"  - {p}" for p in problems))


def engine_error_line(error: Exception) -> str:
    """The line of a failed ``pulumi`` run that says what went wrong (its last ``error:`` line)."""
    lines = [line.strip() for line in str(error).splitlines() if "error:" in line]
    return lines[-1] if lines else (str(error).strip().splitlines() or [error.__class__.__name__])[-1]


def refusing(action: str, choose: Callable[[], T]) -> T:
    """``choose()``; a move the stack's state does not allow (:class:`ReleaseError`) is ``action``'s refusal."""
    try:
        return choose()
    except ReleaseError as error:
        raise RefusedError(action, [str(error)]) from None
