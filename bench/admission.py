"""What the cluster's admission webhook adds to each Pod create, as figures measured in one run.

    source scripts/local-env.sh && .venv/bin/python -m bench.admission [--pods 40]

Target: the webhook adds ≤ 100 ms at the 95th percentile to a Pod create on the local cluster (admission ≤ 100 ms
p95). local-prod is deployed with local's signed build (built once; cached layers make it quick), so its namespace
carries its trust policy and fails closed. Pods of that digest are then created through the API (the official
client, no kubectl start-up in the figure) alternately with the namespace enforced and with the break-glass label
(the webhook not called, everything else the same): the p95 difference is the webhook's cost. The first check of
the digest (the webhook's cache empty: cosign verifies the signature and SBOM attestation) is shown beside it; a
stack pays it once per new digest. Runs on a throw-away copy of the project whose namespaces are deleted at the end.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

from kubernetes import client as kube
from kubernetes import config as kube_config
from rich.console import Console
from rich.table import Table

from bench.timing import on_local_cluster, verdict
from dockyard.admission.registration import BREAK_GLASS_LABEL
from tests.engine.admission_objects import pod
from tests.engine.harness import LOCAL_CONTEXT, Workspace, namespace_of, pull_secret_of, set_stack_config

TARGET_MS = 100.0
STACKS = ("local", "local-prod")


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def measure(project: Workspace, pods: int) -> Table:
    project.init("local")
    project.pulumi("up", "--stack", "local", "--yes", "--skip-preview", timeout=3600)
    image = project.outputs("local")["image_ref"]
    set_stack_config(project, "local-prod", ["kubernetes", "strategy", "blueImage"], image)
    project.init("local-prod")
    project.pulumi("up", "--stack", "local-prod", "--yes", "--skip-preview", timeout=3600)
    namespace = namespace_of(project, "local-prod")

    api = kube.CoreV1Api(
        kube_config.new_client_from_config(config_file=project.env["KUBECONFIG"], context=LOCAL_CONTEXT)
    )
    pull = pull_secret_of(project, "local-prod")

    def create(name: str) -> float:
        start = time.perf_counter()
        api.create_namespaced_pod(namespace, pod(name, namespace, image, pull))  # type: ignore[arg-type]  # a manifest
        elapsed = 1000 * (time.perf_counter() - start)
        api.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        return elapsed

    def break_glass(on: bool) -> None:
        api.patch_namespace(namespace, {"metadata": {"labels": {BREAK_GLASS_LABEL: "bench" if on else None}}})

    # The webhook's cache, emptied: the first create pays cosign's checks, as a new digest does.
    shutil.rmtree(Path(project.env["DOCKYARD_ADMISSION_CACHE"]), ignore_errors=True)
    first = create("bench-first")
    enforced, skipped = [], []
    for i in range(pods):
        enforced.append(create(f"bench-enforced-{i}"))
        break_glass(True)
        skipped.append(create(f"bench-skipped-{i}"))
        break_glass(False)

    added = p95(enforced) - p95(skipped)
    table = Table(title=f"bench/admission.py (one run; {pods} Pod creates each way, interleaved)")
    for column in ("measurement", "value", "target", ""):
        table.add_column(column)
    table.add_row(
        f"webhook's cost per Pod create, p95: enforced {p95(enforced):.0f} ms - break-glass {p95(skipped):.0f} ms",
        f"{added:.0f} ms",
        f"≤ {TARGET_MS:.0f} ms",
        verdict(added <= TARGET_MS),
    )
    table.add_row("  medians: enforced / break-glass", f"{statistics.median(enforced):.0f} ms / "
                  f"{statistics.median(skipped):.0f} ms")  # fmt: skip
    table.add_row("  first create of the digest (the webhook's cache empty: cosign)", f"{first:.0f} ms")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=40, help="Pod creates each way (enforced, break-glass)")
    pods = parser.parse_args().pods
    table = on_local_cluster(lambda project: measure(project, pods), STACKS)
    Console().print(table)


if __name__ == "__main__":
    main()
