"""What signing costs a warm `pulumi up --stack local` that rebuilds, as a ratio measured in one run.

    source scripts/local-env.sh && .venv/bin/python -m bench.signing [--rounds 2]

Two copies of the project, one with ``dockyard:signing`` (SBOM with syft, cosign sign and attest, verify both) and
one without, take turns rebuilding after a one-line source change (each change is new, so both really rebuild).
Target: signing adds ≤ 20 % (ratio ≤ 1.20x).
"""

from __future__ import annotations

import argparse

import yaml
from rich.console import Console
from rich.table import Table

from bench.timing import rebuild, workspace
from tests.engine.harness import Workspace
from tests.local_services import start_local_cluster, start_local_services


def without_signing(ws: Workspace) -> None:
    stack_file = ws.stack_file("local")
    document = yaml.safe_load(stack_file.read_text())
    for key in ("dockyard:signing", "dockyard:cosignPrivateKey", "dockyard:cosignPassword"):
        document["config"].pop(key)
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="rebuilds per copy; the best is kept")
    rounds = parser.parse_args().rounds
    env = {**start_local_services(), **start_local_cluster()}
    signing, plain = workspace(env), workspace(env)
    without_signing(plain)
    for ws in (signing, plain):
        ws.init("local")
        ws.pulumi("up", "--stack", "local", "--yes", "--skip-preview", timeout=3600)  # warm: first build
    signed_times, plain_times = [], []
    for n in range(rounds):
        signed_times.append(rebuild(signing, f"signed round {n}"))
        plain_times.append(rebuild(plain, f"plain round {n}"))
    signed, unsigned = min(signed_times), min(plain_times)
    ratio = signed / unsigned
    table = Table(title=f"bench/signing.py (best of {rounds})")
    for column in ("measurement", "value", "target", ""):
        table.add_column(column)
    table.add_row("warm up that rebuilds, without signing", f"{unsigned:.1f} s", "", "")
    table.add_row("the same with SBOM + sign + attest + verify", f"{signed:.1f} s", "", "")
    met = ratio <= 1.2
    table.add_row("ratio", f"{ratio:.2f}x", "≤ 1.20x", "[green]met[/green]" if met else "[red]MISSED[/red]")
    Console().print(table)


if __name__ == "__main__":
    main()
