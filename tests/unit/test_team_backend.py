"""The team state backend without a server: URLs never shown with their password, where records and locks live per
backend, the engine's errors when PostgreSQL goes away, the doctor's way out of a stale lock in a database, and the
backend URL reaching CI only as a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.pipeline.derive import state_env
from dockyard.pipeline.model import Secret
from dockyard.releases import backend
from dockyard.releases.doctor import EngineLock, Facts, diagnose
from dockyard.releases.engine import BackendGoneError, EngineError, failure
from dockyard.releases.ledger import Ledger, LedgerError
from dockyard.releases.records import MIGRATIONS, PostgresRecords, records_for

PASSWORD = "s3cr3t-pw-4f1d"
URL = f"postgres://dockyard:{PASSWORD}@127.0.0.1:5433/dockyard?sslmode=verify-full&sslrootcert=/ca.crt&table=ws1"


def test_redact_hides_the_password_in_the_authority_and_in_a_parameter() -> None:
    assert PASSWORD not in backend.redact(URL)
    assert backend.redact(URL).startswith("postgres://dockyard:****@127.0.0.1:5433/dockyard?")
    in_query = f"postgres://127.0.0.1/db?user=dockyard&password={PASSWORD}&sslmode=require"
    assert PASSWORD not in backend.redact(in_query)
    assert "password=****" in backend.redact(in_query)
    # Nothing to hide: the URL as it was (the local services' URL names no password; the pgpass file holds it).
    plain = "postgres://dockyard@127.0.0.1:5433/dockyard?sslmode=verify-full&sslrootcert=/ca.crt"
    assert backend.redact(plain) == plain


def test_scrub_removes_the_password_wherever_a_message_repeats_it() -> None:
    said = f'dial failed for "{URL}": password {PASSWORD} refused'
    assert PASSWORD not in backend.scrub(said, URL)
    assert backend.scrub("nothing secret", "file:///state") == "nothing secret"


def test_identity_keeps_what_tells_backends_apart_and_no_credentials() -> None:
    assert backend.identity(URL) == "postgres://127.0.0.1:5433/dockyard?table=ws1"
    other_table = URL.replace("table=ws1", "table=ws2")
    assert backend.identity(other_table) != backend.identity(URL)
    assert backend.identity(URL.replace("&table=ws1", "")).endswith("?table=pulumi_state")
    assert backend.identity("file:///root/.cache/dockyard/state") == "file:///root/.cache/dockyard/state"
    assert backend.identity("s3://user:secret@state-bucket/dockyard?region=eu-west-1") == "s3://state-bucket/dockyard"


def test_libpq_gets_the_url_without_the_engines_table_parameter() -> None:
    converted = backend.libpq_url(URL)
    assert "table=" not in converted
    assert "sslmode=verify-full" in converted
    assert "sslrootcert=/ca.crt" in converted


def test_records_live_in_the_database_of_a_postgres_backend_and_beside_a_file_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKYARD_LEDGER_DIR", raising=False)
    assert records_for(URL, "dockyard") == PostgresRecords(URL, "dockyard")
    assert records_for(f"file://{tmp_path}", "dockyard") == Ledger(tmp_path / ".dockyard", "dockyard")
    with pytest.raises(LedgerError) as refused:
        records_for("s3://user:secret@bucket/state", "dockyard")
    assert "secret" not in str(refused.value)
    # The optional directory serves a backend with no place of its own, never instead of the database.
    monkeypatch.setenv("DOCKYARD_LEDGER_DIR", str(tmp_path / "shared"))
    assert records_for("s3://bucket/state", "dockyard") == Ledger(tmp_path / "shared", "dockyard")
    assert records_for(URL, "dockyard") == PostgresRecords(URL, "dockyard")


def test_migrations_only_grow() -> None:
    # Applied steps are never edited: the first one made the table every later step builds on.
    assert MIGRATIONS[0][0].startswith("create table dockyard_verifications")


def test_a_backend_that_went_away_is_named_with_its_way_back_and_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PULUMI_BACKEND_URL", URL)
    said = (
        f"error: unable to open state database {URL}: failed to ping PostgreSQL: dial tcp 127.0.0.1:5433: "
        f"connect: connection refused (password {PASSWORD})"
    )
    error = failure(["up", "--yes", "--stack", "local"], said)
    assert isinstance(error, BackendGoneError)
    message = str(error)
    assert PASSWORD not in message
    assert "the state backend postgres://dockyard:****@127.0.0.1:5433/dockyard" in message
    assert backend.LOCAL_START in message
    assert "dockyard doctor --stack local" in message
    assert "\n" not in message
    # Another peer that went away (the cluster) is not the backend's failure.
    cluster = "error: dial tcp 127.0.0.1:6443: connect: connection refused"
    assert type(failure(["up", "--stack", "local"], cluster)) is EngineError
    # The same words on a file backend are the engine's own failure.
    monkeypatch.setenv("PULUMI_BACKEND_URL", "file:///state")
    assert type(failure(["up", "--stack", "local"], said)) is EngineError


def test_an_engine_error_never_repeats_the_backend_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_BACKEND_URL", URL)
    assert PASSWORD not in str(failure(["preview"], f"error: something about {URL}"))


def test_a_stale_lock_in_a_database_is_cancelled_by_the_engine_not_removed_as_a_file() -> None:
    key = "dockyard/.pulumi/locks/organization/dockyard/local/1234.json"
    dead = Facts("local", "dockyard", "cluster", locks=[EngineLock(key, 4242, "vm", "root", False)])
    steps = [step for finding in diagnose(dead) for step in finding.steps]
    assert "$ pulumi cancel --stack local --yes" in steps
    assert not any(step.startswith("$ rm") for step in steps)
    elsewhere = Facts("local", "dockyard", "cluster", locks=[EngineLock(key, 4242, "ci-7", "ci", None)])
    assert any("pulumi cancel --stack local --yes" in step for f in diagnose(elsewhere) for step in f.steps)


def test_the_pipelines_read_the_backend_url_from_a_ci_secret() -> None:
    assert state_env("prod")["PULUMI_BACKEND_URL"] == Secret("PULUMI_BACKEND_URL")


def test_a_move_in_progress_on_a_postgres_backend_is_waited_for() -> None:
    facts = Facts("local-staging", "dockyard", "cluster", mover="dockyard ann@one pid 11")
    (finding,) = diagnose(facts)
    assert finding.problem == "held by dockyard ann@one pid 11: a move on local-staging is in progress"
    assert not [step for step in finding.steps if step.startswith("$ ")]
