"""One release move as one stack update: write the config, preview the diff (or apply it), keep the file only if applied.

Every move (promote, rollback, a canary step, a switch) is a :class:`~dockyard.model.strategies.ConfigWrite` that
:func:`apply_update` writes into ``Pulumi.<stack>.yaml`` (the engine reads config from that file), then shows and
applies as the engine's own diff. The file keeps the write only once ``up`` succeeded: "no", Ctrl-C, SIGTERM and a
failed preview or update all leave it byte-identical (:func:`dockyard.releases.config_guard.restored_unless_kept`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from pulumi import automation as auto

from dockyard.model.image_diff import WORKLOAD_TYPES, ImageChange, image_changes
from dockyard.model.stack import edited, values_at
from dockyard.model.strategies import ConfigValue, ConfigWrite
from dockyard.releases.backend import scrub
from dockyard.releases.config_guard import restored_unless_kept, write_atomically
from dockyard.releases.engine import BackendGoneError, ConcurrentUpdateError, EngineError, OnEvent, OnOutput
from dockyard.releases.errors import DockyardError, UpdateFailedError, engine_error_line


@dataclass(frozen=True)
class Change:
    """One resource the update changes, with the properties that differ and the images it swaps."""

    op: str
    urn: str
    properties: tuple[str, ...]
    images: tuple[ImageChange, ...] = ()

    @property
    def name(self) -> str:
        return self.urn.split("::")[-1]


@dataclass
class Outcome:
    """What a move previewed or applied: the image it names, what the stack served before, and the changes.

    ``before`` holds the values the move's write replaced (None: the key was not set), so the move can be undone.
    """

    stack: str
    action: str
    what: str
    image: str
    previous: str | None
    changes: list[Change] = field(default_factory=list)
    applied: bool = False
    before: Mapping[str, ConfigValue] = field(default_factory=dict)

    @property
    def images(self) -> list[ImageChange]:
        return [image for change in self.changes for image in change.images]


class UpdatableStack(Protocol):
    """What a move needs of a stack: :class:`.engine.EngineStack` has it, tests fake it without the engine."""

    def preview(
        self,
        *,
        diff: bool | None = None,
        color: str | None = None,
        on_output: OnOutput | None = None,
        on_event: OnEvent | None = None,
    ) -> object: ...

    def up(
        self,
        *,
        message: str | None = None,
        diff: bool | None = None,
        color: str | None = None,
        on_output: OnOutput | None = None,
        on_event: OnEvent | None = None,
    ) -> object: ...


@dataclass(frozen=True)
class StackUpdate:
    """One move: which stack file gets which config write, what it is called, and the record kept in the history."""

    action: str
    stack: str
    config_file: Path
    write: ConfigWrite
    image: str
    previous: str | None
    message: str
    #: The whole stack file the write applies to, instead of the file as it is: a stack made from a template
    #: (:mod:`dockyard.releases.mr_env`). Unless the update is applied the file still gets its own bytes back.
    base: Mapping[str, Any] | None = None


def write_config(path: Path, write: ConfigWrite, base: Mapping[str, Any] | None = None) -> dict[str, ConfigValue]:
    """Apply ``write`` to the stack file (or to ``base``, which then replaces it); return the values it replaced."""
    document = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    written = edited(document if base is None else base, write)
    write_atomically(path, yaml.safe_dump(written, sort_keys=False).encode())
    return values_at(document, write.values)


def apply_update(
    stack: UpdatableStack,
    update: StackUpdate,
    *,
    yes: bool,
    confirm: Callable[[], bool],
    print_line: Callable[[str], None],
) -> Outcome:
    """Write the move into the stack's config; preview and apply when confirmed, or apply at once with ``yes``.

    With ``yes`` the update is the only engine run: its output lists each resource as it changes, and its events say
    which properties and images changed. The config file keeps the write only once ``up`` succeeded.
    """
    outcome = Outcome(update.stack, update.action, update.write.what, update.image, update.previous)
    with restored_unless_kept(update.config_file) as edit:
        outcome.before = write_config(update.config_file, update.write, update.base)
        if not yes:
            with _engine_errors(update, ran_up=False):
                # The reviewer's diff: every changed property with its old and new value.
                outcome.changes = _changes(
                    lambda on_event: stack.preview(diff=True, color="always", on_output=print_line, on_event=on_event)
                )
            if not confirm():
                return outcome
        applied = _up(stack, update, print_line)
        edit.keep()
        outcome.changes = applied
        outcome.applied = True
        return outcome


def reapply(stack: UpdatableStack, update: StackUpdate, *, print_line: Callable[[str], None]) -> Outcome:
    """Apply the stack file as it is (``update.write`` names what it holds and is not written): the undo of a failed
    update, whose file was already restored to what was applied before it, without a round-trip of its bytes."""
    outcome = Outcome(update.stack, update.action, update.write.what, update.image, update.previous)
    outcome.changes = _up(stack, update, print_line)
    outcome.applied = True
    return outcome


def _up(stack: UpdatableStack, update: StackUpdate, print_line: Callable[[str], None]) -> list[Change]:
    with _engine_errors(update, ran_up=True):
        # The update's own output lists each resource as it changes; the changed properties and images are
        # reported from its events.
        return _changes(
            lambda on_event: stack.up(message=update.message, color="always", on_output=print_line, on_event=on_event)
        )


@contextmanager
def _engine_errors(update: StackUpdate, *, ran_up: bool) -> Iterator[None]:
    """A failed engine run as the move's error; a failed ``up`` (``ran_up``) as :class:`UpdateFailedError`, since
    it may have changed resources."""
    try:
        yield
    except ConcurrentUpdateError:
        raise DockyardError(f"{update.stack} is being updated by someone else; nothing changed") from None
    except BackendGoneError as error:
        # Its own message names the backend and the way back; the engine's last line would not.
        raise DockyardError(
            f"{update.action} of {update.stack}: {error} ({update.config_file.name} left as it was)"
        ) from None
    except EngineError as error:
        reason = scrub(engine_error_line(RuntimeError(error.output)))
        message = f"{update.action} of {update.stack} failed: {reason} ({update.config_file.name} left as it was)"
        if ran_up:
            raise UpdateFailedError(message, reason) from None
        raise DockyardError(message) from None


def _changes(run: Callable[[OnEvent], object]) -> list[Change]:
    """The resources a preview or update changes, from the engine's events."""
    changes: list[Change] = []

    def on_event(event: auto.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is None or pre.metadata.op in (auto.OpType.SAME, auto.OpType.READ):
            return
        metadata = pre.metadata
        if metadata.type.startswith("pulumi:providers:") and metadata.op == auto.OpType.UPDATE:
            # A provider's update is the stack config it was handed changing (dynamic providers get all of it on
            # every config change): it changes no resource, which is what an outcome lists.
            return
        properties = tuple(sorted((metadata.detailed_diff or {}).keys())) or tuple(metadata.diffs or ())
        images: tuple[ImageChange, ...] = ()
        if metadata.type in WORKLOAD_TYPES:
            old = metadata.old.inputs if metadata.old else None
            new = metadata.new.inputs if metadata.new else None
            images = tuple(image_changes(metadata.urn.split("::")[-1], old, new))
        changes.append(Change(str(metadata.op.value), metadata.urn, properties, images))

    run(on_event)
    return changes
