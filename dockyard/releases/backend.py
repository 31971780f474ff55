"""The state backend the stacks live in, as its URL: which kind it is, how to print it, how Dockyard reaches it.

A ``postgres://`` backend (the engine's DIY PostgreSQL backend, driver lib/pq) is the team's: several operators and
pipelines on one database. Dockyard reaches the same database with libpq (psycopg) for what it keeps beside the
engine's state (:mod:`dockyard.releases.records`, :mod:`dockyard.releases.team_lock`), with the same URL and the same PG* variables, so
the password may be in the URL or (as the local services set it up) in the file ``PGPASSFILE`` names. Either way
nothing Dockyard prints shows it: every URL goes through :func:`redact` first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from dockyard.releases.errors import DockyardError

if TYPE_CHECKING:
    import psycopg

POSTGRES_SCHEMES = ("postgres", "postgresql")
#: The engine's table when the URL names none (``?table=``).
DEFAULT_TABLE = "pulumi_state"
#: How the local PostgreSQL is brought back; printed with every error about a local backend that does not answer.
LOCAL_START = "scripts/local-services.sh start postgres"
CONNECT_TIMEOUT_SECONDS = 5


class BackendUnavailableError(DockyardError):
    """The state backend does not answer; the message names it (without its password) and how to recover."""


def is_postgres(url: str | None) -> bool:
    return bool(url) and urlsplit(str(url)).scheme in POSTGRES_SCHEMES


def _password(url: str) -> str | None:
    parsed = urlsplit(url)
    query = dict(parse_qsl(parsed.query))
    return parsed.password or query.get("password")


def redact(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` parameter) replaced by ``****``."""
    parsed = urlsplit(url)
    netloc = parsed.netloc
    if parsed.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:****@{host}"
    query = urlencode([(k, "****" if k == "password" else v) for k, v in parse_qsl(parsed.query)], safe="/*")
    return urlunsplit((parsed.scheme, netloc, parsed.path, query, parsed.fragment))


def scrub(text: str, url: str | None = None) -> str:
    """``text`` without the password of ``url`` (default: ``PULUMI_BACKEND_URL``), wherever it appears."""
    url = url if url is not None else os.environ.get("PULUMI_BACKEND_URL", "")
    password = _password(url) if url else None
    return text.replace(password, "****") if password else text


def table(url: str) -> str:
    """The engine's table of a PostgreSQL backend: separate tables are separate backends in one database."""
    return dict(parse_qsl(urlsplit(url).query)).get("table") or DEFAULT_TABLE


def identity(url: str) -> str:
    """What makes a backend this one and no other, without credentials: scheme, host, port, path, and for
    PostgreSQL its table (two backends may both hold a stack ``local``)."""
    parsed = urlsplit(url)
    host = parsed.hostname or ""
    if parsed.port is not None:
        host = f"{host}:{parsed.port}"
    query = f"table={table(url)}" if is_postgres(url) else ""
    return urlunsplit((parsed.scheme, host, parsed.path, query, ""))


def address(url: str) -> str:
    """``host:port`` of the backend at ``url``, as connection errors name it."""
    parsed = urlsplit(url)
    return f"{parsed.hostname or ''}:{parsed.port or 5432}"


def is_local(url: str) -> bool:
    return urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")


def recovery(url: str, stack: str | None = None) -> str:
    """What to do when the backend at ``url`` does not answer."""
    start = f"start it ({LOCAL_START})" if is_local(url) else "check that it runs and that this machine reaches it"
    return f"{start}, then run dockyard doctor --stack {stack or '<stack>'} and re-run the command"


def libpq_url(url: str) -> str:
    """``url`` as libpq takes it: without the engine's own ``table`` parameter, which libpq would refuse."""
    parsed = urlsplit(url)
    query = urlencode([(k, v) for k, v in parse_qsl(parsed.query) if k != "table"], safe="/")
    return urlunsplit((parsed.scheme, parsed.netloc, parsed.path, query, parsed.fragment))


@contextmanager
def connect(url: str, *, application_name: str = "dockyard") -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the PostgreSQL backend at ``url``; :class:`BackendUnavailableError` when it does
    not answer or refuses us."""
    import psycopg  # only a PostgreSQL backend pays for its import

    try:
        connection = psycopg.connect(
            libpq_url(url),
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            # PostgreSQL keeps 63 bytes of it; pg_stat_activity shows it to whoever asks who holds a lock.
            application_name=application_name[:63],
        )
    except psycopg.Error as error:
        reason = scrub(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__, url)
        raise BackendUnavailableError(
            f"the state backend {redact(url)} does not answer: {reason}; {recovery(url)}"
        ) from None
    with connection:
        yield connection
