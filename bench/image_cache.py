"""Image build cost through `pulumi up --stack local`, as ratios measured in one run.

    .venv/bin/python -m bench.image_cache

cold: no layer cache (podman --no-cache) and an empty Go build cache (buildah's RUN --mount=type=cache directory,
which --no-cache keeps); rebuild: after a change to the app's source; no change: `up` again.
Targets: rebuild ≤ 0.3x cold; no change → no build at all (the build resource is not touched).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

from rich.console import Console
from rich.table import Table

from bench.timing import workspace
from tests.local_services import start_local_cluster, start_local_services


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    console = Console()
    ws = workspace({**start_local_services(), **start_local_cluster()})
    ws.init("local")

    def up(**env: str) -> tuple[float, str]:
        saved = dict(ws.env)
        ws.env.update(env)
        start = time.perf_counter()
        output = ws.pulumi("up", "--stack", "local", "--yes", timeout=3600).output
        ws.env = saved
        return time.perf_counter() - start, output

    # buildah keeps RUN --mount=type=cache directories here across builds, even with --no-cache.
    shutil.rmtree(os.environ.get("DOCKYARD_BUILDAH_CACHE", "/var/tmp/buildah-cache"), ignore_errors=True)
    cold, _ = up(DOCKYARD_BUILD_NO_CACHE="1")
    main_go = ws.directory / "app" / "main.go"
    main_go.write_text(main_go.read_text() + "\n// bench: a source change\n")
    rebuild, _ = up()
    unchanged, output = up()
    built = "image-podman-build" in output and ("replaced" in output or "created" in output)

    table = Table(title="bench/image_cache.py")
    for column in ("measurement", "seconds", "ratio to cold", "target"):
        table.add_column(column)
    table.add_row("cold build + push (no layer cache)", f"{cold:.1f}", "1.00x", "")
    table.add_row("rebuild after an app source change", f"{rebuild:.1f}", f"{rebuild / cold:.2f}x", "≤ 0.30x")
    table.add_row(
        "no change", f"{unchanged:.1f}", f"{unchanged / cold:.2f}x", "no build: " + ("FAILED" if built else "ok")
    )
    console.print(table)


if __name__ == "__main__":
    main()
