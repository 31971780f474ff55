"""The local chain on a PostgreSQL backend with two operators: two checkouts of the project, one backend, no ledger
directory anywhere. Build, verify (by the other operator), concurrent promotions into one stack (one proceeds, the
other is refused naming the holder, nothing is lost) and into two stacks (both succeed); a canary walk whose steps the
two operators take in turns; a blue-green promote and switch; a second release switched to and rolled back by the
other operator; then history, metrics and doctor as every operator sees them, and the database password nowhere in
what was stored or printed.

The tests run in order on one module fixture (builds are slow). An operator moves a stack from the newest stack file,
as a pull of the last move's commit gives it (:func:`pull`): from an older one the stale-file gate refuses, as it
should."""

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

import psycopg
import pytest
import yaml
from psycopg import sql

from dockyard.releases import backend
from dockyard.releases.ledger import Check, Verification
from dockyard.releases.records import PostgresRecords
from tests.engine.harness import (
    SESSION,
    SWITCH_CHANGES,
    Result,
    Workspace,
    changed,
    deploy_local_stacks,
    dockyard,
    history,
    image_repository,
    images,
    make_workspace,
    objects,
    ok,
    release,
    replicas,
    rolling,
    short,
    succeeded,
)
from tests.stacks import PROJECT
from tests.team_postgres import cli_runs_the_copy, start_postgres

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


def operator_env(local_services: dict[str, str], url: str, passfile: str, actor: str) -> dict[str, str]:
    return {**local_services, "PULUMI_BACKEND_URL": url, "PGPASSFILE": passfile, "DOCKYARD_ACTOR": actor}


def add_stack_like(workspace: Workspace, source: str, name: str, *, one_replica: bool = True) -> None:
    """A stack file ``name`` made from ``source``'s, in a namespace of its own (with one replica, unless told to keep
    the source's)."""
    document = yaml.safe_load(workspace.stack_file(source).read_text())
    kubernetes = document["config"]["dockyard:kubernetes"]
    kubernetes["namespace"] = f"{kubernetes['namespace']}-{name}"[:63].rstrip("-")
    if one_replica:
        kubernetes["replicas"] = 1
    workspace.stack_file(name).write_text(yaml.safe_dump(document, sort_keys=False))


def pull(source: Workspace, target: Workspace, stack: str) -> None:
    """``target`` takes ``source``'s stack file, as a pull of the commit of ``source``'s last move would (an operator
    already has its own)."""
    if target is not source:
        shutil.copy2(source.stack_file(stack), target.stack_file(stack))


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
    # local-canary: the committed local-staging (canary, 4 replicas, from local), for the canary walk; local-staging
    # itself rolls, so that both operators can promote into it one after the other; local-prod takes local-staging's.
    add_stack_like(alice, "local-staging", "local-canary", one_replica=False)
    rolling(alice, "local-staging")
    add_stack_like(alice, "local-staging", "local-qa")
    # One repository, two checkouts: the same stack files (and so the same namespaces) in both.
    for stack_file in alice.directory.glob("Pulumi.*.yaml"):
        shutil.copy2(stack_file, bob.directory / stack_file.name)
    deploy_local_stacks(alice, "local-canary", "local-prod")
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


def verifications(database: str, stack: str) -> list[Verification]:
    """``stack``'s verification records in Dockyard's table of the team's database, oldest first."""
    return PostgresRecords(database, "dockyard").verifications(stack)


def moves(team: Team, stack: str, count: int) -> list[tuple[str, str, str]]:
    """The newest ``count`` moves of ``stack`` (action, actor, image), the same from either checkout."""
    seen = [[(e["action"], e["actor"], e["image"]) for e in history(w, stack)[:count]] for w in (team.alice, team.bob)]
    assert seen[0] == seen[1], "both operators read one history"
    return seen[0]


def assert_nothing_beside_state(team: Team) -> None:
    for workspace in (team.alice, team.bob):
        assert list(workspace.backend.iterdir()) == [], "the state lives in PostgreSQL, nothing beside a file"
        assert not list(workspace.directory.parent.rglob(".dockyard")), "no ledger directory anywhere"


def test_the_verification_is_in_the_database_and_no_directory_beside_any_state(team: Team, database: str) -> None:
    (record,) = verifications(database, "local")
    assert record.passed
    assert record.actor == BOB
    assert record.image == team.alice.outputs("local")["image_ref"]
    assert_nothing_beside_state(team)


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
    pull(team.operator(winner), team.operator(loser), "local-staging")
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


def test_a_canary_walk_whose_steps_two_operators_take_in_turns(team: Team, database: str) -> None:
    alice, bob = team.alice, team.bob
    image = alice.outputs("local")["image_ref"]
    started = ok(alice, "promote", "--from", "local", "--to", "local-canary", "--yes")
    assert f"promoted local-canary → {image} (canary at 10%" in started
    # The first release: no stable track runs beside it (none was released), so the canary's pods are all there is.
    assert replicas(alice, "local-canary") == {"dockyard-app-canary": 1}
    assert images(alice, "local-canary") == {"dockyard-app-canary": image}

    # Each step analyses the one the canary is at, whoever took it, then takes the next one.
    walked = alice
    for actor, weight, split in (
        (ALICE, 25, {"canary": 1}),
        (BOB, 50, {"canary": 2}),
        (BOB, 100, {"canary": 4}),
    ):
        walker = team.operator(actor)
        pull(walked, walker, "local-canary")
        stepped = ok(walker, "canary", "advance", "--stack", "local-canary", "--yes")
        assert f"advanced local-canary → {image} (canary at {weight}%" in stepped
        assert replicas(walker, "local-canary") == {f"dockyard-app-{t}": n for t, n in split.items()}, weight
        walked = walker
    pull(bob, alice, "local-canary")
    completed = ok(alice, "canary", "advance", "--stack", "local-canary", "--yes")
    assert f"completed local-canary → {image}" in completed
    assert images(bob, "local-canary") == {"dockyard-app-stable": image}, "one stable Deployment, the new digest"
    assert replicas(bob, "local-canary") == {"dockyard-app-stable": 4}
    assert bob.outputs("local-canary")["image_ref"] == image

    assert moves(team, "local-canary", 5) == [
        ("canary-complete", ALICE, image),
        ("canary-step", BOB, image),
        ("canary-step", BOB, image),
        ("canary-step", ALICE, image),
        ("promote", ALICE, image),
    ]
    served_by = [e["served"] for e in history(bob, "local-canary")[:2]]
    assert served_by == [image, None], "nothing was served until the canary completed"
    records = verifications(database, "local-canary")
    analyses = [(r.trigger, r.actor, r.passed) for r in records if r.track == "canary"]
    assert analyses == [
        (f"canary analysis at {weight}%", actor, True)
        for weight, actor in ((10, ALICE), (25, BOB), (50, BOB), (100, ALICE))
    ]
    served = records[-1]
    assert (served.image, served.track, served.actor, served.passed) == (image, None, ALICE, True), "served: last"
    figures = succeeded(bob, "metrics", "--stack", "local-canary", "--json").json()
    # Deployments: the completed canary; no abort, no failed change.
    assert (figures["deployments"], figures["aborted_canaries"], figures["failed_changes"]) == (1, 0, 0)
    assert_nothing_beside_state(team)


def test_a_blue_green_promotion_and_a_switch_by_the_other_operator(team: Team, database: str) -> None:
    alice, bob = team.alice, team.bob
    image = alice.outputs("local-staging")["image_ref"]
    # local-prod (a trust policy) takes what local-staging verified: Bob verifies it there.
    ok(bob, "verify", "--stack", "local-staging")
    before = objects(alice, "local-prod")
    promoted = ok(alice, "promote", "--from", "local-staging", "--to", "local-prod", "--yes")
    assert f"image app-green: (none) → {image_repository(alice)} {short(image)}" in promoted
    after = objects(alice, "local-prod")
    assert after["services/dockyard-app"] == before["services/dockyard-app"], "the live Service is unchanged"
    assert "deployments/dockyard-app-blue" not in after, "blue has no release: no pods"
    assert images(alice, "local-prod") == {"dockyard-app-green": image}
    assert alice.outputs("local-prod").get("image_ref") is None, "nothing serves until the switch"

    pull(alice, bob, "local-prod")
    never_served = dockyard(bob, "rollback", "--stack", "local-prod", "--yes")
    assert never_served.returncode == 1, never_served.output
    assert f"runs {image}, which local-prod has never served (dockyard switch" in never_served.output

    switched = ok(bob, "switch", "--stack", "local-prod", "--yes")
    assert "verification of local-prod green track (cluster): passed" in switched
    assert "update app-service: spec.selector" in switched
    assert changed(after, objects(bob, "local-prod")) == SWITCH_CHANGES, "a switch changes only the Service selectors"
    assert alice.outputs("local-prod")["image_ref"] == image
    idle, served = verifications(database, "local-prod")[-2:]
    assert (idle.image, idle.track, idle.serving, idle.actor, idle.passed) == (image, "green", False, BOB, True)
    assert (served.image, served.track, served.actor, served.passed) == (image, None, BOB, True)
    assert moves(team, "local-prod", 2) == [("switch", BOB, image), ("promote", ALICE, image)]


def test_a_second_release_switched_to_then_rolled_back_by_the_other_operator(team: Team, database: str) -> None:
    alice, bob = team.alice, team.bob
    first = alice.outputs("local-prod")["image_ref"]
    main_go = alice.directory / "app" / "main.go"
    main_go.write_text(main_go.read_text() + f"\n// team release {SESSION}\n")
    second = release(alice)
    assert second != first
    ok(alice, "verify", "--stack", "local")
    ok(alice, "promote", "--from", "local", "--to", "local-staging", "--yes")
    ok(alice, "verify", "--stack", "local-staging")
    pull(bob, alice, "local-prod")
    ok(alice, "promote", "--from", "local-staging", "--to", "local-prod", "--yes")
    before_switch = objects(alice, "local-prod")
    ok(alice, "switch", "--stack", "local-prod", "--yes")
    assert images(alice, "local-prod") == {"dockyard-app-blue": second, "dockyard-app-green": first}
    assert alice.outputs("local-prod")["image_ref"] == second

    # Bob rolls back from the shared history: green, which served the first release, serves again.
    pull(alice, bob, "local-prod")
    rolled_back = ok(bob, "rollback", "--stack", "local-prod", "--yes")
    assert f"rolled back local-prod → {first} (switch back to green" in rolled_back
    assert objects(bob, "local-prod") == before_switch, "switched back: live objects identical to before the switch"
    assert alice.outputs("local-prod")["image_ref"] == first
    ok(alice, "verify", "--stack", "local-prod")
    restored = verifications(database, "local-prod")[-1]
    assert (restored.image, restored.track, restored.actor, restored.passed) == (first, None, ALICE, True)
    assert moves(team, "local-prod", 5) == [
        ("rollback", BOB, first),
        ("switch", ALICE, second),
        ("promote", ALICE, second),
        ("switch", BOB, first),
        ("promote", ALICE, first),
    ]
    figures = succeeded(alice, "metrics", "--stack", "local-prod", "--json").json()
    # Deployments: the two switches; Bob's switch back marks Alice's one failed.
    assert (figures["deployments"], figures["changes"], figures["failed_changes"], figures["rollbacks"]) == (2, 2, 1, 1)
    assert figures["time_to_restore"]["count"] == 1
    assert_nothing_beside_state(team)


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
        for stack in ("local", "local-staging", "local-qa", "local-canary", "local-prod")
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
