"""A stack's update history: the record format of dockyard's moves, and the one model of an update.

Every move dockyard makes is a stack update, and Pulumi's own history keeps it: the update message says what dockyard
did and who did it (``dockyard <action> key=value ...``), the config recorded with the update says which image the
stack then served. :class:`Update` is that entry as ``dockyard history`` shows it and ``dockyard metrics`` counts it;
nothing else has to be kept in sync.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from dockyard.model.config import NAMESPACE, ImageConfig, Strategy

RECORD_PREFIX = "dockyard"

#: The moves dockyard records (the second word of the update message).
PROMOTE = "promote"
ROLLBACK = "rollback"
CANARY_STEP = "canary-step"
CANARY_COMPLETE = "canary-complete"
CANARY_ABORT = "canary-abort"
SWITCH = "switch"
REVERT = "revert"
#: A merge request's environment made or updated with its digest, and destroyed (:mod:`dockyard.releases.mr_env`).
MR_ENV = "mr-env"
MR_ENV_DESTROY = "mr-env-destroy"

#: Moves that undo a deployment that served traffic: the deployment before them failed.
RESTORES = frozenset({ROLLBACK})
#: Moves that end a change which failed before it became the served release: a failed change of its own.
ABANDONS = frozenset({CANARY_ABORT})

_STRATEGY = TypeAdapter[Strategy](Strategy)


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


def recorded_value(config: Mapping[str, Any], key: str) -> Any:
    """A recorded config value (``{"value": "<json>", "secret": false}`` or a ConfigValue), decoded."""
    raw = config.get(f"{NAMESPACE}:{key}")
    text = getattr(raw, "value", raw.get("value") if isinstance(raw, dict) else raw)
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


def image_from_config(config: Mapping[str, Any]) -> str | None:
    """The image a stack served with the config recorded for an update, as its strategy says."""
    image, kubernetes = recorded_value(config, "image"), recorded_value(config, "kubernetes")
    strategy = kubernetes.get("strategy") if isinstance(kubernetes, dict) else None
    try:
        ref = ImageConfig.model_validate(image or {}).ref if isinstance(image, dict | None) else None
        if strategy is None:
            return ref
        return _STRATEGY.validate_python(strategy).served_image(ref)
    except ValidationError:
        return None


def _utc(moment: datetime) -> datetime:
    # The engine reports update times in UTC; a time written without a zone is one of those.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _time(text: str | None) -> datetime | None:
    return _utc(datetime.fromisoformat(text)) if text else None


@dataclass(frozen=True)
class Update:
    """One update of a stack: what dockyard did (if it did it), how it ended, and which image the stack served.

    ``image`` is the image the move names (promoted, rolled back to, the canary's), ``served`` what the stack's traffic
    went to afterwards (its strategy's answer for the recorded config): they differ while a release is a canary or
    waits on the idle color.
    """

    started: datetime
    ended: datetime | None
    result: str
    action: str | None = None
    image: str | None = None
    served: str | None = None
    actor: str | None = None
    source: str | None = None
    previous: str | None = None
    changes: Mapping[str, int] | None = None
    kind: str = "update"
    version: int | None = None

    @property
    def at(self) -> datetime:
        return _utc(self.ended or self.started)

    @property
    def built(self) -> bool:
        """A successful update that created or replaced resources (on a building stack: the image build)."""
        changes = self.changes or {}
        return self.result == "succeeded" and (changes.get("create", 0) > 0 or changes.get("replace", 0) > 0)

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Update:
        """One entry of ``pulumi stack history --json``."""
        record = parse_record(str(entry.get("message") or ""))
        served = image_from_config(entry.get("config") or {})
        started = _time(entry.get("startTime"))
        if started is None:
            raise ValueError(f"history entry without a startTime: {dict(entry)}")
        return cls(
            started=started,
            ended=_time(entry.get("endTime")),
            result=str(entry.get("result", "")),
            action=record.get("action"),
            image=record.get("image") or served,
            served=served,
            actor=record.get("actor"),
            source=record.get("source"),
            previous=record.get("from"),
            changes={str(op): int(count) for op, count in (entry.get("resourceChanges") or {}).items()},
            kind=str(entry.get("kind", "update")),
            version=entry.get("version"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "kind": self.kind,
            "result": self.result,
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat() if self.ended else None,
            "action": self.action,
            "actor": self.actor,
            "image": self.image,
            "served": self.served,
            "source": self.source,
            "from": self.previous,
            "changes": dict(self.changes or {}),
        }
