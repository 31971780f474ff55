"""What the integration stage costs a build that rebuilds, as a ratio measured in one run.

    source scripts/local-env.sh && .venv/bin/python -m bench.integration_stage [--rounds 2]

Two copies of the app are built by the podman builder as the local stack builds it (test stage, test reports,
runtime, push to the local registry), one with the integration stage (app/compose.integration.yaml: the integration
image built, the cache started and healthy, the tests run, the pod removed) and one without. They take turns
rebuilding after a one-line source change (each change is new, so both really rebuild); the best of each is kept.
The build, not a whole `up`: the stage adds to the build alone, so this is the stricter ratio (an `up` adds the
same deploy time to both sides).
Target: the integration stage adds ≤ 30 % (ratio ≤ 1.30x).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from dockyard_components import podman_build
from tests.local_services import build_props, start_local_services
from tests.stacks import PROJECT

TARGET = 1.3
REPOSITORY = "bench/integration-stage"
INTEGRATION = {
    "compose": "compose.integration.yaml",
    "service": "tests",
    "target": "integration",
    "env": {"DOCKYARD_CACHE_IMAGE": "localhost/dockyard/redis:7"},
}


def copy(env: dict[str, str], name: str, integration: bool) -> dict[str, Any]:
    """Build inputs for a fresh copy of the app (``with``: the integration stage too)."""
    root = Path(tempfile.mkdtemp(prefix=f"dockyard-bench-{name}-"))
    shutil.copytree(PROJECT / "app", root / "app")
    props = {**build_props(env, root, REPOSITORY, name), "reports_target": "test-reports"}
    if integration:
        props["integration"] = INTEGRATION
    return props


def rebuild(props: dict[str, Any], change: str) -> float:
    """Seconds of one build after ``change``, a new line in the app's source."""
    main_go = Path(props["project_dir"]) / "app" / "main.go"
    main_go.write_text(main_go.read_text() + f"\n// bench: {change} {time.time_ns()}\n")
    start = time.perf_counter()
    podman_build.run_build(props)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="rebuilds per copy; the best is kept")
    rounds = parser.parse_args().rounds
    env = start_local_services()
    stamp = time.strftime("%H%M%S")
    with_stage, without = copy(env, f"with-{stamp}", True), copy(env, f"without-{stamp}", False)
    for props in (with_stage, without):
        podman_build.run_build(props)  # warm: the first build fills the layer cache
    with_times, without_times = [], []
    for n in range(rounds):
        with_times.append(rebuild(with_stage, f"with round {n}"))
        without_times.append(rebuild(without, f"without round {n}"))
    staged, plain = min(with_times), min(without_times)
    ratio = staged / plain
    table = Table(title=f"bench/integration_stage.py (best of {rounds})")
    for column in ("measurement", "value", "target", ""):
        table.add_column(column)
    table.add_row("build that rebuilds (tests, runtime, push), no integration stage", f"{plain:.1f} s", "", "")
    table.add_row("the same with the integration stage", f"{staged:.1f} s", "", "")
    rounds_text = ", ".join(f"{w:.1f}/{p:.1f}" for w, p in zip(with_times, without_times, strict=True))
    table.add_row("each round, with/without", rounds_text, "", "")
    met = ratio <= TARGET
    table.add_row("ratio", f"{ratio:.2f}x", f"≤ {TARGET:.2f}x", "[green]met[/green]" if met else "[red]MISSED[/red]")
    Console().print(table)
    for props in (with_stage, without):
        shutil.rmtree(props["project_dir"], ignore_errors=True)


if __name__ == "__main__":
    main()
