"""Move a team from a file backend to PostgreSQL: every stack with its whole history, and Dockyard's records.

The engine's DIY backends keep the same files; the PostgreSQL one keeps each as a row (:mod:`dockyard.releases.backend_state`).
So the move is a copy of every file under ``<file backend>/.pulumi`` (checkpoints, history, backups, the meta file)
into the rows the engine would have written, in one transaction: the history survives, which ``pulumi stack
export``/``import`` would lose, and the secrets stay readable because nothing is re-encrypted (the passphrase and each
stack file's salt are the same). Engine locks are not copied: a lock belongs to a run on the old backend. The ledger
beside the file backend (``.dockyard/<project>/<stack>.jsonl``) becomes rows of :mod:`dockyard.releases.records`.

It refuses, changing nothing, when the target already holds any of the stacks, or when a run holds a lock on the
source (its state may be half written).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

from dockyard.releases import backend, backend_state
from dockyard.releases.errors import DockyardError
from dockyard.releases.ledger import Ledger
from dockyard.releases.records import migrate as migrate_records

#: The engine's own table schema (pkg/backend/diy/postgres/schema.sql at v3.260.0), so the target looks as if the
#: engine had made it.
_ENGINE_TABLE = (
    "create table if not exists {table} (key text primary key, data json not null, "
    "updated_at timestamp with time zone not null default now())",
    "create index if not exists {index} on {table} (key text_pattern_ops)",
)


class MigrationError(DockyardError):
    """The move was refused; nothing was written."""


@dataclass(frozen=True)
class Moved:
    """What a migration copied."""

    stacks: list[str]
    files: int
    verifications: int


def _root(url: str) -> Path:
    parsed = urlsplit(url)
    if parsed.scheme != "file":
        raise MigrationError(f"the source must be a file:// backend, not {backend.redact(url)}")
    root = Path(unquote(parsed.netloc + parsed.path if parsed.netloc not in ("", "localhost") else parsed.path))
    if not (root / ".pulumi").is_dir():
        raise MigrationError(f"{root} holds no file backend (no .pulumi directory)")
    return root.expanduser()


def _copy(connection: psycopg.Connection[Any], target: str, rows: dict[str, Path]) -> None:
    """Write ``rows`` (key → file) in one transaction, unless the target holds any of their stacks already."""
    table = sql.Identifier(backend.table(target))
    with connection.transaction():
        for statement in _ENGINE_TABLE:
            index = sql.Identifier(f"{backend.table(target)}_key_prefix_idx")
            connection.execute(sql.SQL(statement).format(table=table, index=index))
        taken = connection.execute(
            sql.SQL("select key from {} where key = any(%s) and key like %s").format(table),
            (list(rows), "%/.pulumi/stacks/%"),
        ).fetchall()
        if taken:
            names = {str(row[0]).split("/.pulumi/stacks/", 1)[1] for row in taken}
            held = ", ".join(sorted(n.removesuffix(".gz").removesuffix(".json") for n in names if ".json.bak" not in n))
            raise MigrationError(f"{backend.redact(target)} already holds {held}: nothing was copied")
        insert = sql.SQL("insert into {} (key, data) values (%s, %s) on conflict (key) do nothing").format(table)
        for key, path in rows.items():
            connection.execute(insert, (key, backend_state.blob_data(path.read_bytes())))


def migrate(source: str, target: str) -> Moved:
    """Copy the file backend at ``source`` into the PostgreSQL backend at ``target`` (see the module)."""
    if not backend.is_postgres(target):
        raise MigrationError(f"the target must be a postgres:// backend, not {backend.redact(target)}")
    root = _root(source)
    state = root / ".pulumi"
    locks = (
        sorted(str(p.relative_to(state)) for p in (state / "locks").rglob("*.json"))
        if (state / "locks").exists()
        else []
    )
    if locks:
        raise MigrationError(f"a run holds a lock on the source ({', '.join(locks)}): let it finish first")
    # Not the locks, nor the .attrs files beside each file (the file store's own metadata, not the engine's).
    files = sorted(
        p
        for p in state.rglob("*")
        if p.is_file() and p.relative_to(state).parts[0] != "locks" and not p.name.endswith(".attrs")
    )
    stacks = sorted(
        str(p.relative_to(state / "stacks")).removesuffix(".gz").removesuffix(".json")
        for p in files
        if p.relative_to(state).parts[0] == "stacks" and p.name.endswith((".json", ".json.gz"))
    )
    if not stacks:
        raise MigrationError(f"{root} holds no stack: nothing to move")
    keys = [backend_state.blob_key(target, f".pulumi/{p.relative_to(state)}") for p in files]
    with backend.connect(target, application_name="dockyard state migration") as connection:
        _copy(connection, target, dict(zip(keys, files, strict=True)))
    verifications = 0
    ledgers = root / ".dockyard"
    if ledgers.is_dir():
        from dockyard.releases.records import PostgresRecords

        with backend.connect(target) as connection:
            migrate_records(connection)
        for project_dir in sorted(p for p in ledgers.iterdir() if p.is_dir()):
            records = PostgresRecords(target, project_dir.name)
            for ledger_file in sorted(project_dir.glob("*.jsonl")):
                for record in Ledger(ledgers, project_dir.name).verifications(ledger_file.stem):
                    records.append(record)
                    verifications += 1
    return Moved(stacks, len(files), verifications)
