"""The program's trust check on every update, as a ratio measured in one run.

    source scripts/local-env.sh && .venv/bin/python -m bench.trust [--pairs 5]

Target: a no-op ``pulumi preview`` of local-prod whose trust policy checks the digests it runs (blue: local's signed
build), answered from the trust cache as every unchanged preview is, takes ≤ 1.05x (+5 %) the same no-op preview
with no trust policy (``dockyard:signing`` and the key pair taken out of the stack file; nothing else changes). Median
of interleaved pairs. Also shown: the first check of a digest (an empty cache: cosign verifies the signature and the
SBOM attestation against the registry), which a stack pays once per new digest. Builds local once (cached layers
make it quick after the first run), on a throw-away copy of the project whose namespaces are deleted at the end.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from bench.timing import on_local_cluster, verdict
from tests.engine.harness import Workspace, set_stack_config

TARGET = 1.05
STACKS = ("local", "local-prod")
#: What a stack without a trust policy lacks: the policy and the key pair that signs its verifications.
POLICY_KEYS = ("dockyard:signing", "dockyard:cosignPrivateKey", "dockyard:cosignPassword")


def timed_preview(project: Workspace) -> float:
    start = time.perf_counter()
    project.pulumi("preview", "--stack", "local-prod", "--expect-no-changes", timeout=1800)
    return time.perf_counter() - start


def without_policy(document: bytes) -> bytes:
    parsed = yaml.safe_load(document)
    for key in POLICY_KEYS:
        parsed["config"].pop(key)
    return yaml.safe_dump(parsed, sort_keys=False).encode()


def measure(project: Workspace, pairs: int) -> Table:
    project.init("local")
    project.pulumi("up", "--stack", "local", "--yes", "--skip-preview", timeout=3600)
    # local-prod's first release: local's signed build on blue, the active color (its trust policy accepts it).
    set_stack_config(
        project, "local-prod", ["kubernetes", "strategy", "blueImage"], project.outputs("local")["image_ref"]
    )
    project.init("local-prod")
    project.pulumi("up", "--stack", "local-prod", "--yes", "--skip-preview", timeout=3600)

    stack_file = project.stack_file("local-prod")
    trusting = stack_file.read_bytes()
    untrusting = without_policy(trusting)
    cache = Path(project.env["DOCKYARD_TRUST_CACHE"])
    checked, unchecked, first = [], [], []
    try:
        for _ in range(pairs):
            stack_file.write_bytes(untrusting)
            unchecked.append(timed_preview(project))
            stack_file.write_bytes(trusting)
            checked.append(timed_preview(project))
        for _ in range(pairs):
            shutil.rmtree(cache, ignore_errors=True)
            first.append(timed_preview(project))
    finally:
        stack_file.write_bytes(trusting)

    with_check, without = statistics.median(checked), statistics.median(unchecked)
    ratio = with_check / without
    table = Table(title=f"bench/trust.py (one run; medians of {pairs} interleaved pairs)")
    for column in ("measurement", "value", "target", ""):
        table.add_column(column)
    table.add_row(
        f"no-op preview of local-prod, trust check (cached) {with_check:.2f} s / no trust policy {without:.2f} s",
        f"{ratio:.3f}x",
        f"≤ {TARGET:.2f}x",
        verdict(ratio <= TARGET),
    )
    cold = statistics.median(first)
    table.add_row(
        f"  first check of the digest (empty cache: cosign) {cold:.2f} s / no trust policy", f"{cold / without:.3f}x"
    )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5, help="interleaved previews with and without; medians kept")
    pairs = parser.parse_args().pairs
    table = on_local_cluster(lambda project: measure(project, pairs), STACKS)
    Console().print(table)


if __name__ == "__main__":
    main()
