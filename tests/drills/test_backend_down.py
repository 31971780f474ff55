"""PostgreSQL dies in the middle of ``pulumi up``: the error names the backend (never its password) and the way back,
the state stays readable once it is started again, and ``dockyard doctor``'s advice, followed as printed, converges.
The drill's PostgreSQL is its own (another port and state directory): the shared one keeps serving."""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from dockyard.releases import backend
from dockyard.releases.engine import BackendGoneError, Engine
from dockyard.releases.errors import DockyardError
from tests.drills.processes import follow_advice
from tests.engine.harness import SESSION, Workspace, accepted_release, dockyard, make_workspace
from tests.team_postgres import OwnPostgres, cli_runs_the_copy, free_port

pytestmark = pytest.mark.drills

STACK = "local-staging"
TABLE = f"{SESSION}_drill"


@dataclass
class Killed:
    workspace: Workspace
    postgres: OwnPostgres
    error: DockyardError | None
    resources_at_kill: int


def rows(url: str, passfile: str) -> dict[str, bytes]:
    """The engine's rows of the backend at ``url``: key → the file's bytes."""
    with psycopg.connect(backend.libpq_url(url), autocommit=True, connect_timeout=2, passfile=passfile) as connection:
        found = connection.execute(sql.SQL("select key, data from {}").format(sql.Identifier(TABLE))).fetchall()
    return {str(key): base64.b64decode(data["data"]) for key, data in found}


def saved_resources(url: str, passfile: str) -> tuple[bool, int]:
    """Whether the stack is locked, and how many resources its last saved checkpoint holds."""
    try:
        stored = rows(url, passfile)
    except psycopg.Error:
        return False, 0
    locked = any(f"/locks/organization/dockyard/{STACK}/" in key for key in stored)
    checkpoint = next((v for k, v in stored.items() if k.endswith(f"/stacks/dockyard/{STACK}.json")), b"{}")
    latest = (json.loads(checkpoint).get("checkpoint") or {}).get("latest") or {}
    return locked, len(latest.get("resources") or [])


@pytest.fixture(scope="module")
def killed(engine: str, local_services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Killed]:
    """A first ``up`` of local-staging (namespace, Deployments, Service on the local cluster) whose PostgreSQL is shut
    down immediately (SIGQUIT to the postmaster: every session killed, no checkpoint, as a crash) once the update
    has saved a few resources."""
    own = OwnPostgres(tmp_path_factory.mktemp("drill-postgres"), free_port())
    own.start()
    try:
        env = {**local_services, **own.client_env(TABLE), "DOCKYARD_SKIP_GITHUB": "1"}
        url, passfile = env["PULUMI_BACKEND_URL"], env["PGPASSFILE"]
        workspace = make_workspace(tmp_path_factory.mktemp("backend-down"), env)
        cli_runs_the_copy(workspace.directory, workspace.env)
        # A release, so the first `up` rolls a Deployment out: the drill needs an update that lasts.
        accepted_release(workspace, STACK, ["image", "ref"])
        workspace.init(STACK)
        failure: list[DockyardError] = []

        def up() -> None:
            try:
                Engine(workspace.directory).stack(STACK, create=False).up()
            except DockyardError as error:
                failure.append(error)

        with pytest.MonkeyPatch.context() as patch:
            for key, value in workspace.env.items():
                patch.setenv(key, value)
            runner = threading.Thread(target=up)
            runner.start()
            deadline = time.monotonic() + 600
            locked, saved = False, 0
            while not (locked and saved >= 3):
                assert runner.is_alive(), f"the update ended before PostgreSQL could be stopped: {failure}"
                assert time.monotonic() < deadline, "the update saved no resources within 600 s"
                time.sleep(0.1)
                locked, saved = saved_resources(url, passfile)
            pid = own.postmaster_pid()
            assert pid is not None
            os.kill(pid, signal.SIGQUIT)
            runner.join(timeout=600)
        yield Killed(workspace, own, failure[0] if failure else None, saved)
    finally:
        own.destroy()


def test_the_error_names_the_backend_and_the_way_back(killed: Killed) -> None:
    assert isinstance(killed.error, BackendGoneError), killed.error
    message = str(killed.error)
    password = (killed.postgres.state / "postgres" / "password").read_text().strip()
    assert password not in message
    url = killed.workspace.env["PULUMI_BACKEND_URL"]
    assert f"the state backend {backend.redact(url)} did not answer" in message
    assert backend.LOCAL_START in message
    assert f"dockyard doctor --stack {STACK}" in message


def test_the_state_is_valid_and_doctors_advice_converges(killed: Killed) -> None:
    workspace = killed.workspace
    down = dockyard(workspace, "doctor", "--stack", STACK)
    assert down.returncode == 1, down.output
    assert f"backend {backend.redact(workspace.env['PULUMI_BACKEND_URL'])}: DOWN" in down.stdout
    assert "$ scripts/local-services.sh start postgres" in down.stdout

    killed.postgres.start()  # as the advice says (on the drill's own state and port)
    exported = workspace.export(STACK)
    assert len(exported["deployment"]["resources"]) >= killed.resources_at_kill
    for _ in range(3):  # each round: the doctor's commands as printed, in order
        report = dockyard(workspace, "doctor", "--stack", STACK)
        if report.returncode == 0:
            break
        follow_advice(workspace, report)
    assert report.returncode == 0, report.output
    workspace.pulumi("up", "--stack", STACK, "--yes")
    workspace.pulumi("up", "--stack", STACK, "--yes", "--expect-no-changes")
