"""The local chain on a PostgreSQL backend with two operators: two checkouts of the project, one backend, no ledger
directory anywhere. Build, verify (by the other operator), concurrent promotions into one stack (one proceeds, the
other is refused naming the holder, nothing is lost) and into two stacks (both succeed), then history, metrics and
doctor as every operator sees them, and the database password nowhere in what was stored or printed."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from dockyard.releases import backend
from dockyard.releases.ledger import Check, Verification
from dockyard.releases.records import PostgresRecords
from tests.engine.harness import (
    PROJECT,
    SESSION,
    Result,
    Workspace,
    deploy_local_stacks,
    dockyard,
    make_workspace,
    rolling,
)
from tests.local_services import SERVICES, parse_exports
from tests.team_postgres import cli_runs_the_copy

pytestmark = pytest.mark.engine

ALICE, BOB = "alice@team", "bob@team"


@dataclass(frozen=True)
class Team:
    """Two operators' checkouts on one PostgreSQL backend (its own table in the local services' database)."""

    alice: Workspace
    bob: Workspace
    url: str
    passfile: str

    def operator(self, actor: str) -> Workspace:
        return self.alice if actor == ALICE else self.bob


def start_postgres() -> dict[str, str]:
    """The local services' PostgreSQL (``start postgres`` is idempotent), and its ``env`` exports."""
    started = subprocess.run([str(SERVICES), "start", "postgres"], capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    printed = subprocess.run([str(SERVICES), "env"], capture_output=True, text=True, timeout=60, check=True)
    return parse_exports(printed.stdout)


def operator_env(local_services: dict[str, str], url: str, passfile: str, actor: str) -> dict[str, str]:
    return {**local_services, "PULUMI_BACKEND_URL": url, "PGPASSFILE": passfile, "DOCKYARD_ACTOR": actor}


def add_stack_like(workspace: Workspace, source: str, name: str) -> None:
    """A stack file ``name`` made from ``source``'s, in a namespace of its own."""
    document = yaml.safe_load(workspace.stack_file(source).read_text())
    kubernetes = document["config"]["dockyard:kubernetes"]
    kubernetes["namespace"] = f"{kubernetes['namespace']}-{name}"[:63].rstrip("-")
    kubernetes["replicas"] = 1
    workspace.stack_file(name).write_text(yaml.safe_dump(document, sort_keys=False))


@pytest.fixture(scope="module")
def team(engine: str, local_services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    exports = start_postgres()
    url = f"{exports['DOCKYARD_POSTGRES_URL']}&table={SESSION}_team"
    passfile = exports["DOCKYARD_POSTGRES_PASSFILE"]
    alice = make_workspace(tmp_path_factory.mktemp("alice"), operator_env(local_services, url, passfile, ALICE))
    bob = make_workspace(tmp_path_factory.mktemp("bob"), operator_env(local_services, url, passfile, BOB))
    for workspace in (alice, bob):
        workspace.env.pop("DOCKYARD_LEDGER_DIR", None)
        cli_runs_the_copy(workspace.directory, workspace.env)
    rolling(alice, "local-staging")
    add_stack_like(alice, "local-staging", "local-qa")
    # One repository, two checkouts: the same stack files (and so the same namespaces) in both.
    for stack_file in alice.directory.glob("Pulumi.*.yaml"):
        shutil.copy2(stack_file, bob.directory / stack_file.name)
    deploy_local_stacks(alice)
    verified = dockyard(bob, "verify", "--stack", "local")
    assert verified.returncode == 0, verified.output
    yield Team(alice, bob, url, passfile)
    with psycopg.connect(backend.libpq_url(url), autocommit=True, connect_timeout=5, passfile=passfile) as connection:
        # The namespaces go with the session's (conftest); the state and records with the table.
        connection.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(f"{SESSION}_team")))
        connection.execute("delete from dockyard_verifications where state_table = %s", (f"{SESSION}_team",))


@pytest.fixture
def database(team: Team, monkeypatch: pytest.MonkeyPatch) -> str:
    """The team's backend URL, with this test process able to read it (the pgpass file)."""
    monkeypatch.setenv("PGPASSFILE", team.passfile)
    return team.url


def start(workspace: Workspace, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(PROJECT / ".venv" / "bin" / "dockyard"), *args, "--project", str(workspace.directory)],
        env=workspace.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> Result:
    stdout, stderr = process.communicate(timeout=1800)
    return Result(process.returncode, stdout, stderr)


def history(workspace: Workspace, stack: str) -> list[dict[str, Any]]:
    shown = dockyard(workspace, "history", "--stack", stack, "--json")
    assert shown.returncode == 0, shown.output
    entries: list[dict[str, Any]] = json.loads(shown.stdout)
    return entries


def test_the_verification_is_in_the_database_and_no_directory_beside_any_state(team: Team, database: str) -> None:
    (record,) = PostgresRecords(database, "dockyard").verifications("local")
    assert record.passed
    assert record.actor == BOB
    assert record.image == team.alice.outputs("local")["image_ref"]
    for workspace in (team.alice, team.bob):
        assert list(workspace.backend.iterdir()) == [], "the state lives in PostgreSQL, nothing beside a file"
        assert not list(workspace.directory.parent.rglob(".dockyard")), "no ledger directory anywhere"


def test_two_operators_promoting_at_once(team: Team) -> None:
    image = team.alice.outputs("local")["image_ref"]
    before = {w.directory: w.stack_file("local-staging").read_bytes() for w in (team.alice, team.bob)}

    # Into the same stack: one proceeds, the other is refused at once, naming who holds it.
    racing = {actor: start(team.operator(actor), "promote", "--from", "local", "--to", "local-staging", "--yes")
              for actor in (ALICE, BOB)}  # fmt: skip
    results = {actor: finish(process) for actor, process in racing.items()}
    assert sorted(r.returncode for r in results.values()) == [0, 1], {a: r.output for a, r in results.items()}
    winner = next(actor for actor, result in results.items() if result.returncode == 0)
    loser = BOB if winner == ALICE else ALICE
    refusal = results[loser].output
    errors = [line for line in refusal.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, refusal
    assert errors[0].startswith(f"error: local-staging is locked by dockyard {winner} pid "), refusal
    assert "nothing changed" in errors[0]
    assert team.operator(loser).stack_file("local-staging").read_bytes() == before[team.operator(loser).directory]
    assert team.alice.outputs("local-staging")["image_ref"] == image
    newest = history(team.operator(loser), "local-staging")[0]
    assert (newest["action"], newest["actor"], newest["image"]) == ("promote", winner, image)

    # Into two stacks at once: the refused operator takes the winner's stack file (as a pull of the promotion's
    # commit would; from its stale file the move is refused) and goes again, the other promotes elsewhere; both succeed.
    shutil.copy2(team.operator(winner).stack_file("local-staging"), team.operator(loser).stack_file("local-staging"))
    again = start(team.operator(loser), "promote", "--from", "local", "--to", "local-staging", "--yes")
    elsewhere = start(team.operator(winner), "promote", "--from", "local", "--to", "local-qa", "--yes")
    retried, other = finish(again), finish(elsewhere)
    assert retried.returncode == 0, retried.output
    assert other.returncode == 0, other.output
    assert team.bob.outputs("local-qa")["image_ref"] == image

    # Nothing lost: each operator's move is in the shared history, seen from either checkout.
    for workspace in (team.alice, team.bob):
        staging = [e for e in history(workspace, "local-staging") if e["action"] == "promote"]
        assert [e["actor"] for e in staging[:2]] == [loser, winner]
        assert {e["image"] for e in staging[:2]} == {image}
        qa = [e for e in history(workspace, "local-qa") if e["action"] == "promote"]
        assert [(e["actor"], e["image"]) for e in qa] == [(winner, image)]


def test_metrics_and_doctor_read_the_shared_backend(team: Team, database: str) -> None:
    # Alice's failed check of local-qa, recorded where everyone reads: Bob's metrics count it.
    image = team.alice.outputs("local-qa")["image_ref"]
    failed = Verification(
        "local-qa", image, False, datetime.now(UTC), ALICE, "cluster", checks=(Check("x", False, ""),)
    )
    PostgresRecords(database, "dockyard").append(failed)
    figures = dockyard(team.bob, "metrics", "--stack", "local-qa", "--json")
    assert figures.returncode == 0, figures.output
    counted = json.loads(figures.stdout)
    assert counted["failed_verifications"] == 1
    assert counted["deployments"] == 1
    doctor = dockyard(team.alice, "doctor", "--stack", "local-staging")
    assert doctor.returncode == 0, doctor.output
    shown = backend.redact(team.url)
    assert f"backend {shown}: ok (answers; 0 engine lock(s) on local-staging)" in doctor.stdout
    assert "nothing to fix" in doctor.stdout


def test_the_database_password_is_nowhere_in_state_outputs_or_what_was_printed(team: Team, database: str) -> None:
    password = Path(team.passfile).read_text().strip().rsplit(":", 1)[1]
    assert len(password) >= 32
    seen = [
        json.dumps(team.alice.export(stack)) + json.dumps(team.alice.outputs(stack))
        for stack in ("local", "local-staging", "local-qa")
    ]
    seen += [dockyard(team.bob, "history", "--stack", "local-staging").output]
    table = backend.table(database)
    with psycopg.connect(backend.libpq_url(database), autocommit=True, connect_timeout=5) as connection:
        rows = connection.execute(sql.SQL("select data from {}").format(sql.Identifier(table))).fetchall()
        seen += [base64.b64decode(row[0]["data"]).decode(errors="replace") for row in rows]
        records = connection.execute("select record::text from dockyard_verifications").fetchall()
        seen += [str(row[0]) for row in records]
    assert len(rows) > 10
    assert not [text for text in seen if password in text]
    assert os.environ.get("PGPASSWORD") is None
