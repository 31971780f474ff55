"""What ``dockyard doctor`` reads of a stack in a PostgreSQL backend: the engine's lock entries and its checkpoint.

The DIY backend keeps the same documents as a file backend, as rows (``key``, ``data``) of its table, with the
database name in front of the file backend's paths: ``<db>/.pulumi/locks/<org>/<project>/<stack>/<id>.json`` and
``<db>/.pulumi/stacks/<project>/<stack>.json``. Reading them needs no engine run, so the doctor works while the
stack is locked, as it does on a file backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from dockyard import backend


@dataclass
class BackendState:
    """A stack's rows in the backend, and whether the backend answered (``problem`` says why not)."""

    reachable: bool
    problem: str = ""
    #: (key, lock document) of every engine lock on the stack.
    locks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def read(url: str, project: str, stack: str) -> BackendState:
    """The engine's lock entries and checkpoint of ``stack``; an unreachable backend is a state, not an error."""
    from psycopg import errors, sql

    prefix = _like(urlsplit(url).path.strip("/") + "/.pulumi/")
    try:
        with backend.connect(url, application_name="dockyard doctor") as connection:
            query = sql.SQL("select key, data from {} where key like %s order by key").format(
                sql.Identifier(backend.table(url))
            )
            try:
                locks = connection.execute(query, (f"{prefix}locks/%/{_like(project)}/{_like(stack)}/%.json",))
                lock_rows = [(str(key), dict(data or {})) for key, data in locks.fetchall()]
                stacks = connection.execute(query, (f"{prefix}stacks/{_like(project)}/{_like(stack)}.json",))
                checkpoint_rows = stacks.fetchall()
            except errors.UndefinedTable:
                return BackendState(True)  # the engine makes its table on first use: nothing stored yet
    except backend.BackendUnavailableError as error:
        return BackendState(False, str(error))
    checkpoint = dict(checkpoint_rows[0][1]) if checkpoint_rows else None
    return BackendState(True, locks=lock_rows, checkpoint=checkpoint)
