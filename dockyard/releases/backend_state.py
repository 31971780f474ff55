"""What ``dockyard doctor`` reads of a stack in a PostgreSQL backend: the engine's lock entries and its checkpoint.

The DIY backend keeps the same documents as a file backend, as rows (``key``, ``data``) of its table: the key is
the database name in front of the file backend's path (``<db>/.pulumi/locks/<org>/<project>/<stack>/<id>.json``,
``<db>/.pulumi/stacks/<project>/<stack>.json``), the data ``{"data": "<the file's bytes, base64>"}``. Reading them needs no engine run, so the doctor works while the
stack is locked, as it does on a file backend.
"""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from dockyard.releases import backend
from dockyard.releases.team_lock import LOCK_CLASS, lock_key


@dataclass
class BackendState:
    """A stack's rows in the backend, and whether the backend answered (``problem`` says why not)."""

    reachable: bool
    problem: str = ""
    #: (key, lock document) of every engine lock on the stack.
    locks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None
    #: The session holding the stack's Dockyard lock (:mod:`dockyard.releases.team_lock`), if one does.
    mover: str | None = None


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def blob_key(url: str, path: str) -> str:
    """The row key of the file ``path`` (relative to a file backend's root, e.g. ``.pulumi/meta.yaml``)."""
    return f"{urlsplit(url).path.strip('/')}/{path}"


def blob_data(content: bytes) -> str:
    """The ``data`` of a row holding ``content``."""
    return json.dumps({"data": base64.b64encode(content).decode()})


def _document(key: str, data: Any) -> dict[str, Any]:
    """The JSON document a row holds (gzipped when the engine writes ``.gz`` keys); empty when it is not one."""
    try:
        content = base64.b64decode(dict(data or {}).get("data", ""))
        parsed = json.loads(gzip.decompress(content) if key.endswith(".gz") else content)
    except (ValueError, OSError, TypeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def read(url: str, project: str, stack: str) -> BackendState:
    """The engine's lock entries and checkpoint of ``stack``; an unreachable backend is a state, not an error."""
    from psycopg import errors, sql

    prefix = _like(blob_key(url, ".pulumi/"))
    try:
        with backend.connect(url, application_name="dockyard doctor") as connection:
            held = connection.execute(
                "select coalesce(a.application_name, '') from pg_locks l join pg_stat_activity a on a.pid = l.pid "
                "where l.locktype = 'advisory' and l.granted and l.classid = %s and l.objid = %s and l.objsubid = 2",
                (LOCK_CLASS, lock_key(f"{backend.identity(url)}|{stack}")),
            ).fetchone()
            mover = (str(held[0]) or "another session") if held else None
            query = sql.SQL("select key, data from {} where key like %s order by key").format(
                sql.Identifier(backend.table(url))
            )
            try:
                locks = connection.execute(query, (f"{prefix}locks/%/{_like(project)}/{_like(stack)}/%.json",))
                lock_rows = [(str(key), _document(str(key), data)) for key, data in locks.fetchall()]
                stacks = connection.execute(query, (f"{prefix}stacks/{_like(project)}/{_like(stack)}.json%",))
                checkpoint_rows = stacks.fetchall()
            except errors.UndefinedTable:
                return BackendState(True, mover=mover)  # the engine makes its table on first use: nothing yet
    except backend.BackendUnavailableError as error:
        return BackendState(False, str(error))
    # stack.json (or stack.json.gz); never the .bak beside it.
    current = [(str(key), data) for key, data in checkpoint_rows if str(key).endswith((".json", ".json.gz"))]
    checkpoint = _document(*current[0]) if current else None
    return BackendState(True, locks=lock_rows, checkpoint=checkpoint, mover=mover)
