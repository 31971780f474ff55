"""The local chain's GitLab push pipeline, commit → local-prod serving, with per-job times.

    source scripts/local-env.sh && .venv/bin/python -m bench.pipeline

Target: ≤ 6 min on a warm 2-core machine (base images, engine, wheelhouse and podman layers cached), from the
generator's ``.gitlab-ci.yml`` for local,local-staging,local-prod run job by job under gitlab-ci-local
(tests/engine/gitlab_local.py: each job's virtualenv from a shared wheelhouse, not the network; trivy a stand-in
that scans nothing). A fresh backend and namespaces of its own; the namespaces are left for the session's clean-up.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tests.engine.ci_scratch import Backend
from tests.engine.gitlab_local import scratch_pipeline
from tests.local_services import start_local_cluster, start_local_services

JOBS = ("build", "scan", "supply-chain", "deploy-local", "promote-local-staging", "promote-local-prod")
TARGET_SECONDS = 360


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    services = {**start_local_services(), **start_local_cluster()}
    root = Path(tempfile.mkdtemp(prefix="dockyard-bench-pipeline-"))
    backend = root / "state"
    backend.mkdir()
    pipeline = scratch_pipeline(root, services, Backend(f"file://{backend}"))
    table = Table(title="local chain, GitLab push pipeline under gitlab-ci-local")
    table.add_column("job")
    table.add_column("seconds", justify="right")
    total = 0.0
    for job in JOBS:
        run = pipeline.run(job, manual=job == "promote-local-prod")
        total += run.seconds
        table.add_row(job, f"{run.seconds:.0f}")
        if run.returncode != 0:
            Console().print(table)
            print(run.log[-4000:])
            return 1
    table.add_row("commit → local-prod serving", f"{total:.0f} (target ≤ {TARGET_SECONDS})")
    Console().print(table)
    return 0 if total <= TARGET_SECONDS else 2


if __name__ == "__main__":
    raise SystemExit(main())
