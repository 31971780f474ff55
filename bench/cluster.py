"""The local control plane and the live-cluster deploy, as figures and ratios measured in one run.

    source scripts/local-env.sh && .venv/bin/python -m bench.cluster

Targets: control plane start → ready ≤ 10 s; `pulumi up` of local-prod on the live cluster ≤ 2x the same stack in
render mode; control plane idle memory ≤ 700 MiB RSS. Restarts the local cluster (its state and objects are kept).
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from bench.timing import timed, workspace
from tests.engine.harness import Workspace, accepted_release
from tests.local_services import CLUSTER, start_local_cluster

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
SETTLE_SECONDS = 20


def cluster_state() -> Path:
    printed = subprocess.run([str(CLUSTER), "env"], capture_output=True, text=True, check=True).stdout
    kubeconfig = next(line for line in printed.splitlines() if "KUBECONFIG=" in line).split("=", 1)[1]
    return Path(kubeconfig.strip("'\"")).parent


def rss_mib(state: Path, names: tuple[str, ...] = COMPONENTS) -> float:
    """Resident memory of the control plane's processes (or those ``names``), from their pid files."""
    total_kib = 0
    for name in names:
        pid = (state / f"{name}.pid").read_text().strip()
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def render_mode(project: Workspace, stack: str) -> None:
    stack_file = project.stack_file(stack)
    document = yaml.safe_load(stack_file.read_text())
    kubernetes = document["config"]["dockyard:kubernetes"]
    kubernetes["mode"] = "render"
    kubernetes.pop("context")
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))


def verdict(met: bool) -> str:
    return "[green]met[/green]" if met else "[red]MISSED[/red]"


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    console = Console()
    subprocess.run([str(CLUSTER), "stop"], check=True, capture_output=True)
    start = time.perf_counter()
    env = start_local_cluster()
    start_to_ready = time.perf_counter() - start
    time.sleep(SETTLE_SECONDS)
    idle = rss_mib(cluster_state())

    live = workspace(env)
    # A release on blue, so the up rolls its Deployments out (without one, local-prod runs no pods).
    accepted_release(live, "local-prod", ["kubernetes", "strategy", "blueImage"])
    live.init("local-prod")
    live_up = timed(live, "up", "--stack", "local-prod", "--yes", "--skip-preview")
    rendered = workspace()
    render_mode(rendered, "local-prod")
    accepted_release(rendered, "local-prod", ["kubernetes", "strategy", "blueImage"])
    rendered.init("local-prod")
    render_up = timed(rendered, "up", "--stack", "local-prod", "--yes", "--skip-preview")
    live.pulumi("destroy", "--stack", "local-prod", "--yes")

    table = Table(title="bench/cluster.py (one run)")
    for column in ("measurement", "value", "target", ""):
        table.add_column(column)
    table.add_row(
        "control plane start → ready (stop, start)", f"{start_to_ready:.1f} s", "≤ 10 s", verdict(start_to_ready <= 10)
    )
    table.add_row(
        f"control plane idle RSS ({SETTLE_SECONDS} s after ready)", f"{idle:.0f} MiB", "≤ 700 MiB", verdict(idle <= 700)
    )
    ratio = live_up / render_up
    table.add_row(
        f"up local-prod: live cluster {live_up:.1f} s / render {render_up:.1f} s",
        f"{ratio:.2f}x",
        "≤ 2.00x",
        verdict(ratio <= 2),
    )
    console.print(table)


if __name__ == "__main__":
    main()
