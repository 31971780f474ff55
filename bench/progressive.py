"""Progressive delivery on the local cluster, as figures and ratios measured in one run.

    source scripts/local-env.sh && .venv/bin/python -m bench.progressive [--pairs 5]

Targets: ``dockyard promote`` without ``--yes`` (gates, then the preview diff) ≤ 1.5x a plain ``pulumi preview`` of
the target (median of interleaved pairs, local-staging → local-prod); each canary step of ``dockyard canary advance
--yes`` (analysis of the current step, then the next step applied and rolled out) ≤ 15 s on the local cluster.
Builds local once (cached layers make it quick after the first run), on a throw-away copy of the project whose
namespaces are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from rich.console import Console
from rich.table import Table

from bench.timing import on_local_cluster, verdict
from dockyard.releases.project import Project
from dockyard.releases.trust import trust_problems
from tests.engine.harness import Result, Workspace, dockyard

STACKS = ("local", "local-staging", "local-prod")


def timed_dockyard(project: Workspace, *args: str) -> tuple[float, Result]:
    start = time.perf_counter()
    result = dockyard(project, *args)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"dockyard {' '.join(args)} failed ({result.returncode}):\n{result.output[-4000:]}")
    return elapsed, result


def timed_pulumi(project: Workspace, *args: str) -> float:
    start = time.perf_counter()
    project.pulumi(*args, timeout=1800)
    return time.perf_counter() - start


def timed_trust(project: Workspace) -> float:
    """Seconds local-prod's trust policy takes to accept local-staging's digest (0 without a policy); once a digest
    is accepted it is answered from the trust cache (dockyard.model.trust.TrustCache)."""
    os.environ.update({k: v for k, v in project.env.items() if k.startswith(("PULUMI_", "DOCKYARD_"))})
    dockyard_project = Project(project.directory)
    target = dockyard_project.view("local-prod")
    if target.env.signing is None:
        return 0.0
    image = str(dockyard_project.outputs("local-staging")["image_ref"])
    start = time.perf_counter()
    problems = trust_problems(project.directory, target, image)
    elapsed = time.perf_counter() - start
    if problems:
        raise RuntimeError(f"local-prod's trust policy refuses {image}: {problems}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5, help="interleaved promote/preview pairs; the median is kept")
    pairs = parser.parse_args().pairs
    table = on_local_cluster(lambda project: measure(project, pairs), STACKS)
    Console().print(table)


def measure(project: Workspace, pairs: int) -> Table:
    for stack in STACKS:
        project.init(stack)
        project.pulumi("up", "--stack", stack, "--yes", "--skip-preview", timeout=3600)
    timed_dockyard(project, "verify", "--stack", "local")
    timed_dockyard(project, "promote", "--from", "local", "--to", "local-staging", "--yes")

    # Every step of the canary: analysis of the step it is at, then the next one applied (the last completes it).
    steps: list[tuple[str, float]] = []
    while True:
        elapsed, result = timed_dockyard(project, "canary", "advance", "--stack", "local-staging", "--yes")
        completed = "completed local-staging" in result.output
        steps.append(
            ("completion (+ verification of what is served)" if completed else f"step {len(steps) + 2}", elapsed)
        )
        if completed:
            break

    # local-staging now serves the verified release: promote it onto local-prod's idle color, preview only.
    promote, preview = [], []
    for _ in range(pairs):
        promote.append(timed_dockyard(project, "promote", "--from", "local-staging", "--to", "local-prod")[0])
        preview.append(timed_pulumi(project, "preview", "--stack", "local-prod"))
    ratio = statistics.median(promote) / statistics.median(preview)
    # The promotion gates include the target's trust policy (cosign verifies the signature and the SBOM attestation):
    # timed alone, so the table says what of the ratio is that gate.
    trust = statistics.median(timed_trust(project) for _ in range(pairs))

    table = Table(title=f"bench/progressive.py (one run; promote/preview: median of {pairs} interleaved pairs)")
    for column in ("measurement", "value", "target", ""):
        table.add_column(column)
    table.add_row(
        f"promote preview-only {statistics.median(promote):.2f} s / pulumi preview {statistics.median(preview):.2f} s",
        f"{ratio:.2f}x",
        "≤ 1.50x",
        verdict(ratio <= 1.5),
    )
    if trust:
        table.add_row(
            f"  of which the trust policy (cosign, {trust:.2f} s); without it",
            f"{(statistics.median(promote) - trust) / statistics.median(preview):.2f}x",
            "",
            "",
        )
    for name, elapsed in steps:
        table.add_row(f"canary advance --yes: {name}", f"{elapsed:.1f} s", "≤ 15 s", verdict(elapsed <= 15))
    return table


if __name__ == "__main__":
    main()
