"""The team state backend for real: local-services' PostgreSQL (start, stop, status, its refusals), Dockyard's records
table and its lock in that database, and what the doctor reads of it. Each test runs a PostgreSQL of its own on a
port of its own; the shared one is never touched."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dockyard.releases import backend, backend_state
from dockyard.releases.ledger import Check, Verification
from dockyard.releases.records import PostgresRecords
from dockyard.releases.team_lock import StackBusyError, stack_lock
from tests.team_postgres import OwnPostgres, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def require_root() -> None:
    if os.geteuid() != 0:
        message = "needs root (installs postgresql-15, runs the server as its user)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def postgres(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OwnPostgres]:
    require_root()
    own = OwnPostgres(tmp_path / "state", free_port())
    own.start()
    monkeypatch.setenv("PGPASSFILE", own.exports()["DOCKYARD_POSTGRES_PASSFILE"])
    yield own
    own.destroy()


def test_start_stop_and_status_are_idempotent_and_the_password_is_never_printed(postgres: OwnPostgres) -> None:
    password = (postgres.state / "postgres" / "password").read_text().strip()
    again = postgres.services("start", "postgres")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stderr
    status = postgres.services("status", "postgres")
    assert status.returncode == 0, status.stdout
    assert f"postgres: running, healthy, 127.0.0.1:{postgres.port}" in status.stdout
    exported = postgres.services("env")
    for output in (again.stdout + again.stderr, status.stdout + status.stderr, exported.stdout + exported.stderr):
        assert password not in output
    assert (postgres.state / "postgres" / "password").stat().st_mode & 0o077 == 0
    assert (postgres.state / "postgres" / "pgpass").stat().st_mode & 0o077 == 0

    for _ in range(2):
        stopped = postgres.services("stop", "postgres")
        assert stopped.returncode == 0, stopped.stderr
    assert "PostgreSQL not running" in stopped.stderr
    assert postgres.services("status", "postgres").returncode == 3
    postgres.start()  # the same data, the same password: the database is still there
    assert postgres.services("status", "postgres").returncode == 0


def test_only_tls_with_the_password_gets_in(postgres: OwnPostgres) -> None:
    url = backend.libpq_url(postgres.url("t"))
    base = f"host=127.0.0.1 port={postgres.port} user=dockyard dbname=dockyard"

    def psql(conninfo: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["psql", "-X", "-At", conninfo, "-c", "select 1"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    assert psql(url).stdout.strip() == "1"
    plain = psql(f"{base} sslmode=disable")
    assert plain.returncode != 0
    assert "no encryption" in plain.stderr
    wrong = psql(f"{base} sslmode=require", PGPASSFILE="/dev/null", PGPASSWORD="not-the-password")
    assert wrong.returncode != 0
    assert "password authentication failed" in wrong.stderr
    # A client that does not trust the local CA is refused before it sends anything.
    untrusted = psql(f"{base} sslmode=verify-full sslrootcert=/etc/ssl/certs/ca-certificates.crt")
    assert untrusted.returncode != 0
    assert "certificate verify failed" in untrusted.stderr


def test_a_taken_port_is_one_clear_error(tmp_path: Path) -> None:
    require_root()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        refused = OwnPostgres(tmp_path / "state", port).services("start", "postgres")
    assert refused.returncode == 1
    errors = [line for line in refused.stderr.splitlines() if "ERROR" in line]
    assert errors == [
        f"[local-services] ERROR: port {port} on 127.0.0.1 is taken by another process: free it, or set "
        "DOCKYARD_POSTGRES_PORT"
    ]


def record(stack: str, minutes: int, *, passed: bool = True, actor: str = "ann@one") -> Verification:
    return Verification(
        stack=stack,
        image=f"127.0.0.1:5443/dockyard/app@sha256:{'a' * 64}",
        passed=passed,
        at=datetime(2026, 12, 4, 12, 0, tzinfo=UTC) + timedelta(minutes=minutes),
        actor=actor,
        mode="cluster",
        checks=(Check("rollout", passed, "1/1"),),
    )


def test_records_are_shared_by_everyone_on_the_backend_and_kept_apart_per_table(postgres: OwnPostgres) -> None:
    first = PostgresRecords(postgres.url("team_a"), "dockyard")
    second_operator = PostgresRecords(postgres.url("team_a"), "dockyard")
    other_backend = PostgresRecords(postgres.url("team_b"), "dockyard")
    later, earlier = record("local", 5, actor="bob@two"), record("local", 1, passed=False)
    first.append(later)
    second_operator.append(earlier)
    assert second_operator.verifications("local") == [earlier, later]
    assert first.verifications("local") == [earlier, later]
    assert first.verifications("local-staging") == []
    assert other_backend.verifications("local") == []
    assert PostgresRecords(postgres.url("team_a"), "another-project").verifications("local") == []


def test_the_stack_lock_refuses_a_second_operator_naming_the_first_and_dies_with_its_holder(
    postgres: OwnPostgres,
) -> None:
    url = postgres.url("locks")
    with stack_lock(url, "local-staging", holder="dockyard ann@one pid 11"):
        with (
            pytest.raises(StackBusyError) as refused,
            stack_lock(url, "local-staging", holder="dockyard bob@two pid 22"),
        ):
            pytest.fail("two holders of one stack")
        message = str(refused.value)
        assert message.startswith("local-staging is locked by dockyard ann@one pid 11 since ")
        assert backend_state.read(url, "dockyard", "local-staging").mover == "dockyard ann@one pid 11"
        assert "\n" not in message
        with stack_lock(url, "local-prod", holder="dockyard bob@two pid 22"):
            pass  # another stack: no wait
        with stack_lock(postgres.url("other"), "local-staging", holder="dockyard bob@two pid 22"):
            pass  # the same stack name in another backend
    assert backend_state.read(url, "dockyard", "local-staging").mover is None
    with stack_lock(url, "local-staging", holder="dockyard bob@two pid 22"):
        pass  # released


def test_a_lock_holder_that_dies_leaves_no_lock(postgres: OwnPostgres) -> None:
    url = postgres.url("locks")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from dockyard.releases.team_lock import stack_lock\n"
            "with stack_lock(sys.argv[1], 'local', holder='dockyard crash@test pid 1'):\n"
            "    print('held', flush=True); time.sleep(600)\n",
            url,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(StackBusyError, match="crash@test"),
            stack_lock(url, "local", holder="dockyard bob@two pid 22"),
        ):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=30)
    done = threading.Event()
    for _ in range(50):  # the server notices the closed connection at once, or within a moment
        try:
            with stack_lock(url, "local", holder="dockyard bob@two pid 22"):
                done.set()
            break
        except StackBusyError:
            done.wait(0.1)
    assert done.is_set()


def test_an_unreachable_backend_is_one_error_naming_it_without_its_password(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgres://dockyard:hunter2-secret@127.0.0.1:{port}/dockyard?sslmode=require&table=x"
    with pytest.raises(backend.BackendUnavailableError) as refused:
        PostgresRecords(url, "dockyard").verifications("local")
    message = str(refused.value)
    assert "hunter2-secret" not in message
    assert f"the state backend postgres://dockyard:****@127.0.0.1:{port}/dockyard" in message
    assert backend.LOCAL_START in message
    assert backend_state.read(url, "dockyard", "local").reachable is False
