"""The local cluster's real node (containerd, kubelet, kube-proxy beside the kwok nodes), as figures from one run.

    source scripts/local-env.sh && .venv/bin/python -m bench.real_node

Targets: the real node's start with the control plane running (the node taken down first, its Node object deleted:
a cold registration) ≤ 5 s; a 2-replica rollout of the app on the real node (maxSurge 1, maxUnavailable 0: one pod
after the other, each through its startup and readiness probes; image already on the node) ≤ 10 s; the node idle
(containerd + kubelet + kube-proxy RSS, no pods, 20 s after ready) ≤ 300 MiB. Also shown: the slowest of the three
rollouts, and a rollout through `pulumi up` (a settings change). The control plane keeps running; the node restarts.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import time

from rich.console import Console
from rich.table import Table

from bench.cluster import cluster_state, rss_mib
from bench.timing import on_local_cluster, verdict
from tests.engine.harness import Workspace, kubectl, namespace_of, set_stack_config
from tests.local_services import CLUSTER

NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy")
SETTLE_SECONDS = 20
DEPLOYMENT = "deployment/dockyard-app-stable"


def cluster(*args: str, **env: str) -> str:
    """scripts/local-cluster.sh ARGS; its log (stderr)."""
    done = subprocess.run(
        [str(CLUSTER), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"scripts/local-cluster.sh {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stderr


def node_start() -> tuple[float, float]:
    """(wall seconds of a start that only has the node to start, the script's own "real node ready in" figure)."""
    cluster("start", DOCKYARD_CLUSTER_REAL_NODE="0")  # takes the node down and deletes its Node object
    start = time.perf_counter()
    log = cluster("start")
    wall = time.perf_counter() - start
    reported = re.search(r"real node \S+ ready in ([0-9.]+)s", log)
    if reported is None:
        raise SystemExit(f"scripts/local-cluster.sh start did not start the real node:\n{log}")
    return wall, float(reported.group(1))


def rollout_seconds(project: Workspace) -> float:
    """A new ReplicaSet of the local stack's Deployment (kubectl rollout restart), to every replica ready."""
    namespace = namespace_of(project, "local")
    start = time.perf_counter()
    kubectl(project, "rollout", "restart", DEPLOYMENT, "-n", namespace)
    kubectl(project, "rollout", "status", DEPLOYMENT, "-n", namespace, "--timeout", "120s")
    return time.perf_counter() - start


def rollouts(project: Workspace) -> tuple[float, float, float]:
    """(best and worst of three rollouts, a rollout through `pulumi up`) of the local stack, 2 replicas."""
    set_stack_config(project, "local", ["kubernetes", "nodePool"], "real")
    set_stack_config(project, "local", ["kubernetes", "replicas"], 2)
    project.init("local")
    project.pulumi("up", "--stack", "local", "--yes", "--skip-preview", timeout=3600)
    measured = [rollout_seconds(project) for _ in range(3)]
    # A settings change makes a new ConfigMap and so a new pod template: the rollout as an update runs it.
    set_stack_config(project, "local", ["kubernetes", "env", "BENCH"], str(time.time_ns()))
    start = time.perf_counter()
    project.pulumi("up", "--stack", "local", "--yes", "--skip-preview", timeout=3600)
    through_up = time.perf_counter() - start
    return min(measured), max(measured), through_up


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    console = Console()
    wall, reported = node_start()
    time.sleep(SETTLE_SECONDS)
    idle = rss_mib(cluster_state(), NODE_COMPONENTS)
    best, worst, through_up = on_local_cluster(rollouts, ["local"])

    table = Table(title="bench/real_node.py (one run)")
    for column in ("measurement", "value", "target", ""):
        table.add_column(column)
    table.add_row(
        f"real node start, control plane running (script: {reported:.1f} s)",
        f"{wall:.1f} s",
        "≤ 5 s",
        verdict(wall <= 5),
    )
    table.add_row("2-replica rollout on the real node (best of 3)", f"{best:.1f} s", "≤ 10 s", verdict(best <= 10))
    table.add_row("  the slowest of the 3", f"{worst:.1f} s", "", "")
    table.add_row("  a settings change through `pulumi up` (whole update)", f"{through_up:.1f} s", "", "")
    table.add_row(
        f"real node idle RSS ({SETTLE_SECONDS} s after ready, no pods)",
        f"{idle:.0f} MiB",
        "≤ 300 MiB",
        verdict(idle <= 300),
    )
    console.print(table)


if __name__ == "__main__":
    main()
