"""Moving the local stacks from the file backend to PostgreSQL (scripts/migrate_state.py): every stack with its
history, the secrets still readable with the same passphrase, the verification ledger in Dockyard's table, and a
second move refused without writing anything."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql

from dockyard.releases import backend
from dockyard.releases.ledger import Check, Ledger, Verification
from dockyard.releases.records import PostgresRecords
from tests.engine.harness import PROJECT, SESSION, Workspace, dockyard, make_workspace
from tests.local_services import SERVICES, parse_exports
from tests.team_postgres import cli_runs_the_copy

pytestmark = pytest.mark.engine

TABLE = f"{SESSION}_migrated"
STACKS = ("local", "local-staging")


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, str]]:
    """The local services' PostgreSQL and a table of this module's own in it."""
    started = subprocess.run([str(SERVICES), "start", "postgres"], capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    exports = parse_exports(subprocess.run([str(SERVICES), "env"], capture_output=True, text=True, check=True).stdout)
    env = {"PULUMI_BACKEND_URL": f"{exports['DOCKYARD_POSTGRES_URL']}&table={TABLE}"}
    env["PGPASSFILE"] = exports["DOCKYARD_POSTGRES_PASSFILE"]
    yield env
    url = backend.libpq_url(env["PULUMI_BACKEND_URL"])
    with psycopg.connect(url, autocommit=True, connect_timeout=5, passfile=env["PGPASSFILE"]) as connection:
        connection.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(TABLE)))
        connection.execute("delete from dockyard_verifications where state_table = %s", (TABLE,))


def migrate(workspace: Workspace, target: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.migrate_state", f"file://{workspace.backend}", target["PULUMI_BACKEND_URL"]],
        cwd=PROJECT,
        # scripts/ from the checkout (the copy has none), dockyard from the copy.
        env={**workspace.env, **target, "PYTHONPATH": f"{workspace.env['PYTHONPATH']}{os.pathsep}{PROJECT}"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_local_stacks_move_with_history_secrets_and_records(
    engine: str, tmp_path_factory: pytest.TempPathFactory, postgres: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    on_file = make_workspace(tmp_path_factory.mktemp("file-team"))
    cli_runs_the_copy(on_file.directory, on_file.env)
    before = {}
    for stack in STACKS:
        on_file.init(stack)
        # Two updates of history each (refreshes of the empty stacks: no build, no cluster needed).
        for _ in range(2):
            on_file.pulumi("refresh", "--stack", stack, "--yes")
        history = on_file.pulumi("stack", "history", "--stack", stack, "--json").json()
        secret = on_file.pulumi("config", "get", "dockyard:cosignPassword", "--stack", stack).stdout
        before[stack] = (len(history), [h["startTime"] for h in history], secret)
    record = Verification(
        "local", "127.0.0.1:5443/dockyard/app@sha256:" + "b" * 64, True, datetime.now(UTC), "ann@one", "cluster",
        checks=(Check("rollout", True, "1/1"),),
    )  # fmt: skip
    Ledger(on_file.backend / ".dockyard", "dockyard").append(record)

    moved = migrate(on_file, postgres)
    assert moved.returncode == 0, moved.stderr
    assert "moved 2 stack(s) (dockyard/local, dockyard/local-staging;" in moved.stdout
    assert "and 1 verification record(s)" in moved.stdout

    on_postgres = Workspace(on_file.directory, on_file.backend, {**on_file.env, **postgres})
    listed = {s["name"] for s in on_postgres.pulumi("stack", "ls", "--json").json()}
    assert listed == set(STACKS)
    for stack in STACKS:
        history = on_postgres.pulumi("stack", "history", "--stack", stack, "--json").json()
        secret = on_postgres.pulumi("config", "get", "dockyard:cosignPassword", "--stack", stack).stdout
        assert (len(history), [h["startTime"] for h in history], secret) == before[stack]
        assert on_postgres.export(stack)["deployment"]["secrets_providers"]["type"] == "passphrase"
    assert [e["kind"] for e in dockyard(on_postgres, "history", "--stack", "local", "--json").json()] == [
        "refresh",
        "refresh",
    ]
    monkeypatch.setenv("PGPASSFILE", postgres["PGPASSFILE"])
    assert PostgresRecords(postgres["PULUMI_BACKEND_URL"], "dockyard").verifications("local") == [record]
    # The moved stacks take updates on their new backend.
    on_postgres.pulumi("refresh", "--stack", "local", "--yes")

    again = migrate(on_file, postgres)
    assert again.returncode == 1
    assert "already holds dockyard/local, dockyard/local-staging: nothing was copied" in again.stderr
    assert len(on_postgres.pulumi("stack", "history", "--stack", "local", "--json").json()) == 3
