"""The Pulumi project the CLI drives: its stacks' config files, their outputs and history, the lock, the ledger.

Reads are one engine process each (:mod:`.engine`); independent ones run side by side where they are asked for
(:mod:`dockyard.releases.moves`, :mod:`dockyard.verify.verifier`).
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from dockyard.model.config import ConfigError, EnvironmentConfig, stack_file, stack_names
from dockyard.model.stack import StackView
from dockyard.model.strategies import ConfigWrite
from dockyard.releases import backend
from dockyard.releases.engine import Engine, EngineStack, StackMissingError
from dockyard.releases.errors import DockyardError
from dockyard.releases.history import Update
from dockyard.releases.records import VerificationRecords, records_for
from dockyard.releases.team_lock import holder_name, stack_lock

#: Names who acts when ``user@host`` does not tell operators apart (a CI job: its run; two checkouts on one machine).
ACTOR_ENV = "DOCKYARD_ACTOR"


def actor() -> str:
    """Who is acting: ``$DOCKYARD_ACTOR``, else ``user@host``; recorded with every move and verification."""
    return os.environ.get(ACTOR_ENV) or f"{getpass.getuser()}@{socket.gethostname()}"


class NeverDeployedError(DockyardError):
    """The stack has no state in the backend yet: no outputs, no history."""


@dataclass
class Project:
    """The Pulumi project in ``directory``: stacks by name, their config files beside ``Pulumi.yaml``."""

    directory: Path
    print_line: Callable[[str], None] = print
    #: Each stack's view, read once per command, with the file's stat when it was read (see :meth:`lock`).
    _views: dict[str, tuple[StackView, tuple[int, ...]]] = field(default_factory=dict, init=False, repr=False)
    #: Engine reads run side by side (:mod:`dockyard.releases.moves`): the first to ask for a stack reads it.
    _reading: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @cached_property
    def name(self) -> str:
        document = yaml.safe_load((self.directory / "Pulumi.yaml").read_text())
        return str(document["name"])

    @cached_property
    def engine(self) -> Engine:
        return Engine(self.directory)

    def stack_file(self, stack: str) -> Path:
        return stack_file(self.directory, stack)

    @property
    def stacks(self) -> list[str]:
        """Every stack of the project (one ``Pulumi.<stack>.yaml`` each)."""
        return stack_names(self.directory)

    def view(self, stack: str) -> StackView:
        """The stack's file, read and validated once per command, with its secrets decrypted by the engine when
        asked; an unknown stack or invalid config refuses."""
        with self._reading:
            if stack not in self._views:
                try:
                    view = StackView.read(self.directory, stack, lambda key: self._decrypt(stack, key))
                except ConfigError as error:
                    raise DockyardError(str(error)) from None
                self.remember(view)
            return self._views[stack][0]

    def remember(self, view: StackView) -> None:
        """``view`` is what the stack's file now holds."""
        self._views[view.name] = (view, self._stat(view.name))

    def wrote(self, view: StackView, write: ConfigWrite) -> None:
        """A move applied ``write`` to the file ``view`` was read from: the next step of the command sees the result
        without reading it again (a result that does not validate is read, and refused, when next asked for)."""
        try:
            self.remember(view.after(write))
        except ConfigError:
            del self._views[view.name]

    def _stat(self, stack: str) -> tuple[int, ...]:
        status = self.stack_file(stack).stat()
        return status.st_mtime_ns, status.st_ctime_ns, status.st_size, status.st_ino

    def environment(self, stack: str) -> EnvironmentConfig:
        """The stack's validated config."""
        return self.view(stack).env

    def stack(self, name: str, *, create: bool = False) -> EngineStack:
        """The engine's stack, for previews and updates; ``create`` makes it on its first update."""
        self.environment(name)  # unknown stack or invalid config: refuse before touching anything
        return self.engine.stack(name, create=create)

    def _read(self, stack: str, *args: str) -> Any:
        self.environment(stack)
        try:
            return self.engine.read(stack, *args)
        except StackMissingError:
            raise NeverDeployedError(f"stack {stack} has never been deployed (pulumi up --stack {stack})") from None

    def outputs(self, stack: str) -> dict[str, Any]:
        """The stack's outputs (secret ones masked: nothing dockyard reads is a secret)."""
        return dict(self._read(stack, "stack", "output") or {})

    def history(self, stack: str, limit: int | None = None) -> list[Update]:
        """The stack's updates, newest first (``limit``: only the newest ones)."""
        page = ["--page-size", str(limit), "--page", "1"] if limit else []
        return [Update.from_json(entry) for entry in self._read(stack, "stack", "history", *page) or []]

    def secret_config(self, stack: str, key: str) -> str | None:
        """A secret of the stack's config, decrypted; None when its file does not set it (no engine run then)."""
        return self.view(stack).secret(key)

    def _decrypt(self, stack: str, key: str) -> str:
        return str(self._read(stack, "config", "get", key)["value"])

    @cached_property
    def backend_url(self) -> str:
        """The URL of the backend the stacks live in, as the engine resolves it."""
        return os.environ.get("PULUMI_BACKEND_URL") or str(json.loads(self.engine.run(["whoami", "--json"]))["url"])

    @property
    def backend(self) -> str:
        """The backend without credentials: with the stack name, what identifies a stack beyond a checkout
        (two backends may both hold a ``local``)."""
        return backend.identity(self.backend_url)

    def ledger(self) -> VerificationRecords:
        """The verification records of this project, where every operator of its backend reads them
        (:mod:`dockyard.releases.records`)."""
        return records_for(self.backend_url, self.name)

    @contextmanager
    def lock(self, stack: str) -> Iterator[None]:
        """One dockyard operation per stack at a time, on top of the engine's own stack lock: in the database of a
        PostgreSQL backend (every operator's), else a file lock on this machine."""
        if backend.is_postgres(self.backend_url):
            with stack_lock(self.backend_url, stack, holder=holder_name(actor(), os.getpid())):
                yield
            return
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
            # Under the lock a move judges the file as it is: a view read before it whose file another command has
            # changed since is read again (one stat, no read, when nothing changed).
            if stack in self._views and self._views[stack][1] != self._stat(stack):
                del self._views[stack]
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def output_text(outputs: Mapping[str, Any], key: str) -> str | None:
    value = outputs.get(key)
    return str(value) if value else None
