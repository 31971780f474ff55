"""The PostgreSQL backend against the file backend, as ratios measured in one run (the machine is noisy).

    source scripts/local-env.sh && .venv/bin/python -m bench.backend [--repeat 3]

Target: on PostgreSQL (the local services' server, TLS, a table of the run's own) a no-op ``pulumi preview`` and a
``dockyard promote --yes`` (gates, records, the Dockyard lock, preview and update) each take ≤ 1.2x what they take
on a file backend. Both projects deploy local (build, cached after the first run) and local-staging (rolling) on the
local cluster, and verify local; measurements alternate between the two backends. The applied promotion is one
sample per backend (its first: a second would change nothing); the previews are the best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import subprocess
import time
import uuid

import psycopg
import yaml
from psycopg import sql
from rich.console import Console
from rich.table import Table

from bench.timing import timed, workspace
from dockyard.releases import backend
from tests.engine.harness import Workspace, deploy_local_stacks, dockyard, kubectl, rolling
from tests.local_services import SERVICES, parse_exports, start_local_cluster, start_local_services
from tests.team_postgres import cli_runs_the_copy

TARGET = 1.2


def postgres_env(table: str) -> dict[str, str]:
    started = subprocess.run([str(SERVICES), "start", "postgres"], capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        raise RuntimeError(f"local-services.sh start postgres failed:\n{started.stderr[-3000:]}")
    exports = parse_exports(subprocess.run([str(SERVICES), "env"], capture_output=True, text=True, check=True).stdout)
    return {
        "PULUMI_BACKEND_URL": f"{exports['DOCKYARD_POSTGRES_URL']}&table={table}",
        "PGPASSFILE": exports["DOCKYARD_POSTGRES_PASSFILE"],
    }


def prepared(env: dict[str, str]) -> Workspace:
    project = workspace(env)
    cli_runs_the_copy(project.directory, project.env)
    rolling(project, "local-staging")
    deploy_local_stacks(project)
    verified = dockyard(project, "verify", "--stack", "local")
    if verified.returncode != 0:
        raise RuntimeError(f"dockyard verify --stack local failed:\n{verified.output[-4000:]}")
    return project


def promoted(project: Workspace) -> float:
    start = time.perf_counter()
    result = dockyard(project, "promote", "--from", "local", "--to", "local-staging", "--yes")
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"dockyard promote failed ({result.returncode}):\n{result.output[-4000:]}")
    return elapsed


def verdict(ratio: float) -> str:
    return f"[green]met[/green] (≤ {TARGET}x)" if ratio <= TARGET else f"[red]MISSED[/red] (> {TARGET}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="previews per backend; the best is kept")
    repeat = parser.parse_args().repeat
    console = Console()
    services = {**start_local_services(), **start_local_cluster(), "DOCKYARD_SKIP_GITHUB": "1"}
    table_name = f"bench_{uuid.uuid4().hex[:8]}"
    pg = postgres_env(table_name)
    projects = {"file": prepared(services), "postgres": prepared({**services, **pg})}
    try:
        previews = {name: float("inf") for name in projects}
        for _ in range(repeat):  # alternating, so a busy moment hurts both
            for name, project in projects.items():
                previews[name] = min(previews[name], timed(project, "preview", "--stack", "local-staging"))
        promotions = {name: promoted(project) for name, project in projects.items()}
    finally:
        for project in projects.values():
            for stack in ("local-staging", "local"):
                config = yaml.safe_load(project.stack_file(stack).read_text())["config"]
                namespace = config["dockyard:kubernetes"]["namespace"]  # each copy's own (isolate_namespaces)
                kubectl(project, "delete", "namespace", namespace, "--wait=false", check=False)
        with psycopg.connect(backend.libpq_url(pg["PULUMI_BACKEND_URL"]), passfile=pg["PGPASSFILE"]) as connection:
            connection.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(table_name)))
            connection.execute("delete from dockyard_verifications where state_table = %s", (table_name,))
            connection.commit()

    report = Table(title=f"bench/backend.py (previews: best of {repeat}; promotion: one each)")
    for column in ("measurement", "file", "postgres", "ratio", "target"):
        report.add_column(column)
    for label, figures in (("no-op preview of local-staging", previews), ("dockyard promote --yes", promotions)):
        ratio = figures["postgres"] / figures["file"]
        report.add_row(
            label, f"{figures['file']:.2f} s", f"{figures['postgres']:.2f} s", f"{ratio:.2f}x", verdict(ratio)
        )
    console.print(report)


if __name__ == "__main__":
    main()
