"""Where Dockyard keeps verification outcomes: in the state backend's own PostgreSQL database, or beside a file backend.

Promotions, rollbacks, canary steps and switches are stack updates, so the backend's stack history holds them
(:mod:`dockyard.releases.history`) on every backend. Verification outcomes are Dockyard's own records: the staging and prod
gates, rollbacks and metrics read them, so every operator must read the same ones.

- ``postgres://``: a table of Dockyard's own, ``dockyard_verifications``, in the backend's database, created and
  migrated by this module (:data:`MIGRATIONS`, applied in order under a transaction lock, the version kept in
  ``dockyard_schema``). Rows carry the engine's table, so each ``?table=`` backend has records of its own.
- ``file://``: the ledger beside the state (:mod:`dockyard.releases.ledger`).
- ``DOCKYARD_LEDGER_DIR``: a ledger in that directory, for a file-like backend whose state has no directory beside it
  (an object store); it wins over the file backend's own place, never over PostgreSQL.

Stacks with ``dockyard:signing`` also attest every outcome in the registry (:mod:`dockyard.releases.attestations`), which is
what a promotion gate with a trust policy reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from dockyard.releases import backend
from dockyard.releases.ledger import Ledger, Verification, ledger_root

if TYPE_CHECKING:
    import psycopg

#: The schema of Dockyard's tables, one step per version (index + 1). Append only: a step already applied anywhere
#: is never edited.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """create table dockyard_verifications (
            id bigserial primary key,
            state_table text not null,
            project text not null,
            stack text not null,
            at timestamptz not null,
            record jsonb not null
        )""",
        "create index dockyard_verifications_stack on dockyard_verifications (state_table, project, stack, at)",
    ),
)
#: Serializes migrations of one database (pg_advisory_xact_lock key: "dockyard schema").
_MIGRATION_LOCK = 0x446F636B5363686D


class VerificationRecords(Protocol):
    """The verification outcomes of one project's stacks, wherever they are kept."""

    def append(self, record: Verification, /) -> None: ...

    def verifications(self, stack: str, /) -> list[Verification]: ...


def migrate(connection: psycopg.Connection[Any]) -> None:
    """Bring Dockyard's tables in ``connection``'s database to the newest schema; a no-op when they are."""
    with connection.transaction():
        connection.execute("select pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        connection.execute("create table if not exists dockyard_schema (version integer not null)")
        row = connection.execute("select max(version) from dockyard_schema").fetchone()
        current = int(row[0]) if row and row[0] is not None else 0
        for version, statements in enumerate(MIGRATIONS[current:], start=current + 1):
            for statement in statements:
                connection.execute(statement)
            connection.execute("insert into dockyard_schema (version) values (%s)", (version,))


@dataclass(frozen=True)
class PostgresRecords:
    """The records of ``project`` in the PostgreSQL backend at ``url``."""

    url: str
    project: str

    def append(self, record: Verification, /) -> None:
        with backend.connect(self.url) as connection:
            migrate(connection)
            connection.execute(
                "insert into dockyard_verifications (state_table, project, stack, at, record) "
                "values (%s, %s, %s, %s, %s)",
                (backend.table(self.url), self.project, record.stack, record.at, json.dumps(record.to_json())),
            )

    def verifications(self, stack: str, /) -> list[Verification]:
        """Every record of ``stack``, oldest first."""
        with backend.connect(self.url) as connection:
            migrate(connection)
            rows = connection.execute(
                "select record from dockyard_verifications where state_table = %s and project = %s and stack = %s "
                "order by at, id",
                (backend.table(self.url), self.project, stack),
            ).fetchall()
        return [Verification.from_json(row[0]) for row in rows]


def records_for(backend_url: str | None, project: str) -> VerificationRecords:
    """Where ``project``'s verifications live for the backend at ``backend_url`` (see the module's list)."""
    if backend_url and backend.is_postgres(backend_url):
        return PostgresRecords(backend_url, project)
    # DOCKYARD_LEDGER_DIR or a file backend; any other backend: ledger_root refuses, naming what to set.
    return Ledger(ledger_root(backend_url), project)
