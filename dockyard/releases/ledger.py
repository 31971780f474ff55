"""The verification ledger: one JSON line per ``dockyard verify`` outcome, kept next to Pulumi's own state.

``<backend>/.dockyard/<project>/<stack>.jsonl`` for a ``file://`` backend. Why a ledger and not stack tags: the diy
backend does store tags at v3.260.0 (``pulumi stack tag set`` writes ``.pulumi/stacks/<project>/<stack>.pulumi-tags``),
but a tag set is one current value per name, and the metrics need every verification with its time and outcome
(failures, time to restore). An append-only file next to the state is backed up, copied and deleted with the state,
so every backend, and every test workspace, has its own ledger. Promotions, rollbacks, canary steps and switches are not
repeated here: they live in Pulumi's update history (see :mod:`dockyard.releases.history`).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from dockyard.releases.backend import redact
from dockyard.releases.errors import DockyardError

#: Overrides where ledgers live (a directory); needed only for backends that are neither ``file://`` nor
#: ``postgres://`` (:mod:`dockyard.releases.records`).
LEDGER_ENV = "DOCKYARD_LEDGER_DIR"


class LedgerError(DockyardError):
    """The ledger cannot be located or read; the message says what to set."""


@dataclass(frozen=True)
class Check:
    """One named check of a verification and what it found."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Verification:
    """Who verified which image on which stack, when, how, and the outcome of every check.

    ``track`` is None for what the stack serves, else the candidate track that was checked (``canary``, or the idle
    color of a blue-green pair); ``serving`` says whether that track took user traffic when it was checked.
    """

    stack: str
    image: str
    passed: bool
    at: datetime
    actor: str
    mode: str
    trigger: str = "verify"
    checks: tuple[Check, ...] = field(default_factory=tuple)
    track: str | None = None
    serving: bool = True

    @property
    def failed_checks(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "verification",
            "stack": self.stack,
            "image": self.image,
            "outcome": "passed" if self.passed else "failed",
            "at": self.at.isoformat(),
            "actor": self.actor,
            "mode": self.mode,
            "trigger": self.trigger,
            "track": self.track,
            "serving": self.serving,
            "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verification:
        return cls(
            stack=str(data["stack"]),
            image=str(data["image"]),
            passed=data["outcome"] == "passed",
            at=datetime.fromisoformat(data["at"]),
            actor=str(data.get("actor", "")),
            mode=str(data.get("mode", "")),
            trigger=str(data.get("trigger", "verify")),
            checks=tuple(Check(str(c["name"]), bool(c["passed"]), str(c.get("detail", ""))) for c in data["checks"]),
            track=data.get("track"),
            serving=bool(data.get("serving", True)),
        )


def ledger_root(backend_url: str | None) -> Path:
    """``<backend>/.dockyard``, or ``$DOCKYARD_LEDGER_DIR``; refuses backends it cannot write next to."""
    override = os.environ.get(LEDGER_ENV)
    if override:
        return Path(override)
    if backend_url and backend_url.startswith("file://"):
        parsed = urlparse(backend_url)
        path = unquote(parsed.netloc + parsed.path) if parsed.netloc not in ("", "localhost") else unquote(parsed.path)
        return Path(path).expanduser() / ".dockyard"
    shown = redact(backend_url) if backend_url else "unknown"
    raise LedgerError(
        f"verification records live next to a file:// backend's state or in a postgres:// backend's database; the "
        f"backend is {shown}: set {LEDGER_ENV} to a shared directory"
    )


@dataclass(frozen=True)
class Ledger:
    """The records of one project: ``<root>/<project>/<stack>.jsonl``, appended under an exclusive lock."""

    root: Path
    project: str

    def path(self, stack: str) -> Path:
        return self.root / self.project / f"{stack}.jsonl"

    def append(self, record: Verification) -> None:
        path = self.path(record.stack)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record.to_json(), sort_keys=True) + "\n"
        with open(path, "a", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def verifications(self, stack: str) -> list[Verification]:
        """Every record of ``stack``, oldest first; a torn last line (a crash mid-write) is ignored."""
        path = self.path(stack)
        if not path.exists():
            return []
        records = []
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError:
                if number == len(lines):
                    continue
                raise LedgerError(f"{path}:{number}: not a JSON record") from None
            if data.get("kind") == "verification":
                records.append(Verification.from_json(data))
        return sorted(records, key=lambda r: r.at)


def latest_for(records: Iterable[Verification], image: str) -> Verification | None:
    """The newest verification of ``image`` (a later failure outweighs an earlier pass)."""
    matching = [r for r in records if r.image == image]
    return max(matching, key=lambda r: r.at) if matching else None


def last_verified(records: Iterable[Verification]) -> Verification | None:
    """The newest record among served images whose latest verification passed: where a rollback may go."""
    latest: dict[str, Verification] = {}
    for record in sorted(records, key=lambda r: r.at):
        if record.track is None:
            latest[record.image] = record
    passed = [record for record in latest.values() if record.passed]
    return max(passed, key=lambda r: r.at) if passed else None
