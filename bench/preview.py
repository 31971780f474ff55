"""Preview cost on the real engine, as ratios measured in one run (the machine is noisy; absolute times are not).

    source scripts/local-env.sh && .venv/bin/python -m bench.preview [--repeat 3]

Targets: prod preview ≤ 1.3x the empty program's; no-op `up` of the local stack ≤ 1.2x its preview.
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from bench.timing import program_workspace, timed, workspace
from tests.local_services import start_local_cluster, start_local_services


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    repeat = parser.parse_args().repeat
    console = Console()

    empty = program_workspace("empty")
    empty.init("bench")
    empty_preview = timed(empty, "preview", "--stack", "bench", repeat=repeat)

    floor = program_workspace("provider-only")
    floor.init("bench")
    floor_preview = timed(floor, "preview", "--stack", "bench", repeat=repeat)

    project = workspace({"DOCKYARD_SKIP_GITHUB": "1"})
    project.init("prod")
    prod_preview = timed(project, "preview", "--stack", "prod", repeat=repeat)

    services = program_workspace("services")
    per_count = {}
    for count in (1, 10):
        stack = f"n{count}"
        services.init(stack)
        services.pulumi("config", "set", "services", str(count), "--stack", stack)
        per_count[count] = timed(services, "preview", "--stack", stack, repeat=repeat)

    local = workspace({**start_local_services(), **start_local_cluster()})
    local.init("local")
    local.pulumi("up", "--stack", "local", "--yes", timeout=3600)
    local_preview = timed(local, "preview", "--stack", "local", repeat=repeat)
    # The main job runs `up --yes --skip-preview` (one program run); plain `up --yes` runs the program twice.
    local_noop_up = timed(local, "up", "--stack", "local", "--yes", "--skip-preview", repeat=repeat)
    local_noop_up_with_preview = timed(local, "up", "--stack", "local", "--yes", "--expect-no-changes", repeat=repeat)

    table = Table(title=f"bench/preview.py (best of {repeat})")
    for column in ("measurement", "ratio", "target"):
        table.add_column(column)
    table.add_row("prod preview / empty program preview", f"{prod_preview / empty_preview:.2f}x", "≤ 1.30x")
    table.add_row("prod preview / one-ConfigMap kubernetes program preview", f"{prod_preview / floor_preview:.2f}x", "")
    table.add_row("10 services / 1 service preview", f"{per_count[10] / per_count[1]:.2f}x", "")
    table.add_row(
        "cost of each extra service / empty preview",
        f"{(per_count[10] - per_count[1]) / 9 / empty_preview:.3f}x",
        "",
    )
    table.add_row("local no-op up --skip-preview / local preview", f"{local_noop_up / local_preview:.2f}x", "≤ 1.20x")
    table.add_row(
        "local no-op up (with its preview) / local preview", f"{local_noop_up_with_preview / local_preview:.2f}x", ""
    )
    console.print(table)


if __name__ == "__main__":
    main()
