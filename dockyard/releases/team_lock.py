"""One Dockyard operation per stack at a time across every operator of a PostgreSQL backend.

The engine's own lock covers one update; a Dockyard move spans more (facts, gates, a preview, the update), and two
operators on two machines share no file to ``flock``. PostgreSQL has what that needs: a session advisory lock, held
by the connection of the operation and released by the server when that connection ends, however the process ends
(no stale lock to clean up after a crash). Who holds it is the holding session's ``application_name``, which the
refusal names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from dockyard.releases import backend
from dockyard.releases.errors import DockyardError

#: The first key of Dockyard's advisory locks ("Dock"): other users of the database pick other numbers.
LOCK_CLASS = 0x446F636B


class StackBusyError(DockyardError):
    """Another operator's Dockyard operation holds the stack."""


def lock_key(identity: str) -> int:
    """The second advisory key of a stack: 31 bits of the hash of its backend identity and name."""
    return int.from_bytes(hashlib.sha256(identity.encode()).digest()[:4], "big") & 0x7FFFFFFF


def holder_name(actor: str, pid: int) -> str:
    """What the lock's session calls itself, and what a refused operator reads."""
    return f"dockyard {actor} pid {pid}"


@contextmanager
def stack_lock(url: str, stack: str, *, holder: str) -> Iterator[None]:
    """Hold ``stack``'s Dockyard lock in the backend at ``url`` for the block; refuse at once, naming the holder,
    when another session holds it."""
    key = lock_key(f"{backend.identity(url)}|{stack}")
    with backend.connect(url, application_name=holder) as connection:
        row = connection.execute("select pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, key)).fetchone()
        if not row or not row[0]:
            who = connection.execute(
                "select a.application_name, a.backend_start from pg_locks l join pg_stat_activity a on a.pid = l.pid "
                "where l.locktype = 'advisory' and l.granted and l.classid = %s and l.objid = %s and l.objsubid = 2",
                (LOCK_CLASS, key),
            ).fetchone()
            name = str(who[0]) if who and who[0] else "another session (its name is not visible to this role)"
            since = f" since {who[1]:%Y-%m-%d %H:%M:%S %Z}" if who and who[1] else ""
            raise StackBusyError(
                f"{stack} is locked by {name}{since} (backend {backend.redact(url)}); nothing changed: "
                "wait for it to finish and re-run"
            )
        try:
            yield
        finally:
            import psycopg

            # A backend that went away took the lock with the session: nothing to release, and its error is not
            # the one to report.
            with suppress(psycopg.Error):
                connection.execute("select pg_advisory_unlock(%s, %s)", (LOCK_CLASS, key))
