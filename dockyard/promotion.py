"""Promotion and rollback: a stack update of an immutable image digest, previewed, gated and recorded.

Every record lives in Pulumi's own update history: the update message says what dockyard did and who did it, and the
update's config says which image the stack then served. Nothing else has to be kept in sync.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import shlex
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pulumi import automation as auto

from components.config import (
    BlueGreenStrategy,
    ConfigError,
    EnvironmentConfig,
    environment_from_file,
    stack_file,
)
from components.image_ref import parse_image_reference
from dockyard import gates, records
from dockyard.config_guard import restored_unless_kept
from dockyard.registry_client import RegistryUnreachableError, credentials_for, manifest_exists

RECORD_PREFIX = "dockyard"


class DockyardError(Exception):
    """A refusal or failure with a message a user can act on; nothing was changed unless it says so."""


class RefusedError(DockyardError):
    def __init__(self, action: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{action} refused:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Change:
    """One resource the preview would change, with the properties that differ."""

    op: str
    urn: str
    properties: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.urn.split("::")[-1]


@dataclass
class Outcome:
    """What a promotion or rollback previewed and whether it was applied."""

    stack: str
    image: str
    previous: str | None
    changes: list[Change] = field(default_factory=list)
    applied: bool = False


@dataclass(frozen=True)
class HistoryEntry:
    version: int | None
    kind: str
    result: str
    started: datetime
    ended: datetime | None
    action: str | None
    actor: str | None
    image: str | None
    source: str | None


def actor() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def record_message(action: str, **fields: str) -> str:
    """``dockyard <action> key=value ...``: the update message that makes the history readable."""
    return " ".join([RECORD_PREFIX, action, *(f"{k}={shlex.quote(v)}" for k, v in fields.items())])


def parse_record(message: str) -> dict[str, str]:
    try:
        words = shlex.split(message)
    except ValueError:
        return {}
    if len(words) < 2 or words[0] != RECORD_PREFIX:
        return {}
    fields = dict(word.split("=", 1) for word in words[2:] if "=" in word)
    return {"action": words[1], **fields}


def image_key(env: EnvironmentConfig) -> str:
    """The config path promotion writes: ``image.ref``, or the idle color's image for blue-green."""
    strategy = env.kubernetes.strategy
    if isinstance(strategy, BlueGreenStrategy):
        return f"dockyard:kubernetes.strategy.{strategy.idle_color}Image"
    return "dockyard:image.ref"


def image_from_config(config: Mapping[str, Any]) -> str | None:
    """The image a stack served, from the config recorded with an update (values are ConfigValue or dicts)."""

    def value(key: str) -> Any:
        raw = config.get(key)
        text = getattr(raw, "value", raw.get("value") if isinstance(raw, dict) else raw)
        try:
            return json.loads(text) if isinstance(text, str) else text
        except ValueError:
            return text

    image = value("dockyard:image")
    if isinstance(image, dict) and image.get("ref"):
        return str(image["ref"])
    kubernetes = value("dockyard:kubernetes")
    strategy = kubernetes.get("strategy") if isinstance(kubernetes, dict) else None
    if isinstance(strategy, dict) and strategy.get("type") == "blueGreen":
        color = strategy.get("activeColor")
        return strategy.get(f"{color}Image") if color else None
    return None


@dataclass
class Project:
    """The Pulumi project the CLI drives: stacks are selected by name, the config files live here."""

    directory: Path
    print_line: Callable[[str], None] = print

    def environment(self, stack: str) -> EnvironmentConfig:
        try:
            return environment_from_file(self.directory, stack)
        except ConfigError as error:
            raise DockyardError(str(error)) from None

    def stack(self, name: str, *, create: bool = False) -> auto.Stack:
        self.environment(name)  # unknown stack or invalid config: refuse before touching anything
        try:
            if create:
                return auto.create_or_select_stack(stack_name=name, work_dir=str(self.directory))
            return auto.select_stack(stack_name=name, work_dir=str(self.directory))
        except auto.StackNotFoundError:
            raise DockyardError(f"stack {name} has never been deployed (pulumi up --stack {name})") from None

    @contextmanager
    def lock(self, stack: str) -> Iterator[None]:
        """One dockyard operation per stack at a time, on top of the engine's own stack lock."""
        path = Path(os.environ.get("DOCKYARD_CACHE", Path.home() / ".cache" / "dockyard")) / "locks"
        path.mkdir(parents=True, exist_ok=True)
        # The same stack is the same backend + stack name, whichever checkout drives it.
        identity = f"{os.environ.get('PULUMI_BACKEND_URL', '~/.pulumi')}|{stack}"
        key = hashlib.sha256(identity.encode()).hexdigest()[:16]
        with open(path / f"{stack}-{key}.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DockyardError(f"another dockyard operation on {stack} is in progress; nothing changed") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def history(self, stack: str, limit: int | None = None) -> list[HistoryEntry]:
        entries = []
        for update in self.stack(stack).history(page_size=limit):
            record = parse_record(update.message or "")
            entries.append(
                HistoryEntry(
                    version=update.version,
                    kind=update.kind,
                    result=update.result,
                    started=update.start_time,
                    ended=update.end_time,
                    action=record.get("action"),
                    actor=record.get("actor"),
                    image=record.get("image") or image_from_config(update.config),
                    source=record.get("source"),
                )
            )
        return entries

    def _switch_image(
        self,
        action: str,
        stack_name: str,
        image: str,
        record: dict[str, str],
        yes: bool,
        confirm: Callable[[], bool],
    ) -> Outcome:
        key = image_key(self.environment(stack_name))
        with self.lock(stack_name):
            return switch_image(
                self.stack(stack_name, create=True),
                ImageSwitch(
                    action=action,
                    stack=stack_name,
                    config_file=stack_file(self.directory, stack_name),
                    key=key,
                    image=image,
                    message=record_message(action, image=image, actor=actor(), **record),
                ),
                yes=yes,
                confirm=confirm,
                print_line=self.print_line,
            )

    def promote(
        self, source: str, target: str, *, yes: bool, confirm: Callable[[], bool], now: datetime | None = None
    ) -> Outcome:
        now = now or datetime.now(UTC)
        target_env = self.environment(target)
        problems = gates.order_problems(source, target, target_env) + gates.freeze_problems(target, target_env, now)
        source_stack = self.stack(source)
        output = source_stack.outputs().get("image_ref")
        image = str(output.value) if output is not None else None
        problems += gates.image_problems(source, image)
        last = next(iter(source_stack.history(page_size=1)), None)
        problems += gates.source_update_problems(source, last.result if last else None)
        problems += gates.soak_problems(source, target_env, last.end_time if last else None, now)
        if image and not gates.image_problems(source, image):
            problems += self._registry_problems(image, target_env, target)
            if gates.requires_verification(target_env):
                try:
                    verified = records.latest_for(records.ledger_for(source_stack).verifications(source), image)
                except records.LedgerError as error:
                    raise DockyardError(str(error)) from None
                problems += gates.verification_problems(source, target, target_env, image, verified)
        if problems:
            raise RefusedError(f"promotion {source} → {target}", problems)
        assert image is not None
        return self._switch_image("promote", target, image, {"source": source}, yes, confirm)

    def rollback(self, stack_name: str, *, to: str | None, yes: bool, confirm: Callable[[], bool]) -> Outcome:
        env = self.environment(stack_name)
        entries = [e for e in self.history(stack_name) if e.result == "succeeded" and e.kind == "update" and e.image]
        if not entries:
            raise RefusedError(
                f"rollback of {stack_name}", [f"{stack_name} has no successful update to roll back from"]
            )
        current = entries[0].image
        assert current is not None
        image = self._rollback_target(stack_name, current, entries, to)
        problems = self._registry_problems(image, env, stack_name)
        if problems:
            raise RefusedError(f"rollback of {stack_name}", problems)
        return self._switch_image("rollback", stack_name, image, {"from": current}, yes, confirm)

    @staticmethod
    def _rollback_target(stack: str, current: str, entries: list[HistoryEntry], to: str | None) -> str:
        if to is None:
            previous = next((e.image for e in entries if e.image and e.image != current), None)
            if previous is None:
                raise RefusedError(
                    f"rollback of {stack}", [f"{stack} has served only {current}; nothing to roll back to"]
                )
            return previous
        if to.startswith("sha256:"):
            return f"{parse_image_reference(current).name}@{to}"
        return to

    @staticmethod
    def _registry_problems(image: str, env: EnvironmentConfig, target: str) -> list[str]:
        try:
            if not manifest_exists(image, credentials_for(env.registry)):
                return [f"{image} does not exist in {target}'s registry {env.registry.host}"]
        except RegistryUnreachableError as error:
            return [f"cannot check {target}'s registry: {error}"]
        return []


OnOutput = Callable[[str], object]
OnEvent = Callable[[auto.EngineEvent], object]


class UpdatableStack(Protocol):
    """What switching a stack's image needs of it: ``auto.Stack`` has it, tests fake it without the engine."""

    def get_config(self, key: str, *, path: bool = False) -> auto.ConfigValue: ...

    def set_config(self, key: str, value: auto.ConfigValue, *, path: bool = False) -> None: ...

    def preview(
        self,
        *,
        diff: bool | None = None,
        color: str | None = None,
        on_output: OnOutput | None = None,
        on_event: OnEvent | None = None,
    ) -> object: ...

    def up(
        self, *, message: str | None = None, color: str | None = None, on_output: OnOutput | None = None
    ) -> object: ...


@dataclass(frozen=True)
class ImageSwitch:
    """One promotion or rollback: which config key of which stack file gets which image, and its record."""

    action: str
    stack: str
    config_file: Path
    key: str
    image: str
    message: str


def switch_image(
    stack: UpdatableStack,
    switch: ImageSwitch,
    *,
    yes: bool,
    confirm: Callable[[], bool],
    print_line: Callable[[str], None],
) -> Outcome:
    """Write the image into the stack's config, preview, and apply when confirmed.

    The config file keeps the new image only once ``up`` succeeded; "no", Ctrl-C, SIGTERM and a failed preview or
    up all leave it byte-identical (:func:`restored_unless_kept`).
    """
    with restored_unless_kept(switch.config_file) as edit:
        try:
            previous: str | None = stack.get_config(switch.key, path=True).value
        except auto.CommandError:
            previous = None
        outcome = Outcome(switch.stack, switch.image, previous)
        stack.set_config(switch.key, auto.ConfigValue(switch.image), path=True)
        try:
            outcome.changes = preview_changes(stack, print_line)
            if not (yes or confirm()):
                return outcome
            stack.up(message=switch.message, on_output=print_line, color="always")
        except auto.ConcurrentUpdateError:
            raise DockyardError(f"{switch.stack} is being updated by someone else; nothing changed") from None
        except auto.CommandError as error:
            raise DockyardError(
                f"{switch.action} of {switch.stack} failed: {_last_error_line(error)} "
                f"({switch.config_file.name} left as it was)"
            ) from None
        edit.keep()
        outcome.applied = True
        return outcome


def preview_changes(stack: UpdatableStack, print_line: Callable[[str], None]) -> list[Change]:
    """The resources a preview would change, with the properties that differ."""
    changes: list[Change] = []

    def on_event(event: auto.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is None or pre.metadata.op in (auto.OpType.SAME, auto.OpType.READ):
            return
        metadata = pre.metadata
        properties = tuple(sorted((metadata.detailed_diff or {}).keys())) or tuple(metadata.diffs or ())
        changes.append(Change(str(metadata.op.value), metadata.urn, properties))

    stack.preview(diff=True, on_output=print_line, on_event=on_event, color="always")
    return changes


def _last_error_line(error: auto.CommandError) -> str:
    lines = [line.strip() for line in str(error).splitlines() if "error:" in line]
    return lines[-1] if lines else str(error).strip().splitlines()[-1]
