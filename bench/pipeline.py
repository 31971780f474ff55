"""The local chain's GitLab push pipeline, commit → local-prod serving, with per-job times.

    source scripts/local-env.sh && .venv/bin/python -m bench.pipeline

Target: ≤ 6 min on a warm 2-core machine (base images, engine, wheelhouse and podman layers cached), from the
generator's ``.gitlab-ci.yml`` for local,local-staging,local-prod run job by job under gitlab-ci-local, exactly as
``tests/engine/test_pipeline_run.py`` runs it (tests/engine/gitlab_local.py: each job's virtualenv from a shared
wheelhouse, not the network; the scan job runs the real trivy against the local registry's DB). A file backend and
namespaces of its own; the namespaces are left for the engine tests' session clean-up.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tests.engine.ci_scratch import Backend
from tests.engine.gitlab_local import PUSH_JOBS, scratch_pipeline
from tests.local_services import start_local_cluster, start_local_services

TARGET_SECONDS = 360


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    services = {**start_local_services(), **start_local_cluster()}
    root = Path(tempfile.mkdtemp(prefix="dockyard-bench-pipeline-"))
    (root / "state").mkdir()
    pipeline = scratch_pipeline(root, services, Backend(f"file://{root / 'state'}"))
    table = Table(title="local chain, GitLab push pipeline under gitlab-ci-local")
    table.add_column("job")
    table.add_column("seconds", justify="right")
    total = 0.0
    for job in PUSH_JOBS:
        run = pipeline.run(job, manual=job == "promote-local-prod")
        total += run.seconds
        table.add_row(job, f"{run.seconds:.0f}")
        if run.returncode != 0:
            Console().print(table)
            print(f"job {job} failed ({run.returncode}):\n{run.log[-4000:]}")
            return 1
    met = total <= TARGET_SECONDS
    table.add_row(
        "commit → local-prod serving",
        f"{total:.0f} = {total / TARGET_SECONDS:.2f}x the target of {TARGET_SECONDS} s: {'met' if met else 'MISSED'}",
    )
    Console().print(table)
    return 0 if met else 2


if __name__ == "__main__":
    raise SystemExit(main())
