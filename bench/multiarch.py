"""A two-architecture build (linux/amd64 + linux/arm64, one image index) against a one-architecture build, one run.

    .venv/bin/python -m bench.multiarch

Each build is the app's (test stage, then runtime) through the podman builder (no Pulumi) in a podman storage of its
own (tests/local_services.py fresh_podman_storage), the base images pulled from the local registry by digest: first
cold (an empty Go build cache too, as on a fresh runner), then with the machine's Go build cache (as a CI runner on
this machine, which keeps buildah's cache mounts in /var/tmp). The second architecture adds a cross-compile and a
push; the tests run once, on the build platform.
Target: two architectures ≤ 1.6x one architecture.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from unittest import mock

from rich.console import Console
from rich.table import Table

from dockyard_components import podman_build
from tests.local_services import fresh_podman_storage, pinned_build_props, services_env

TARGET = 1.6


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    env = services_env()
    seconds: dict[tuple[str, str], float] = {}
    rounds = (("cold", False), ("Go build cache", True))
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-multiarch-") as work:
        root = Path(work)
        for round_name, go_cache in rounds:
            for name, platforms in (("one", "linux/amd64"), ("two", "linux/amd64,linux/arm64")):
                tag = f"bench-{name}-{go_cache}-{root.name.lower()}"
                props = pinned_build_props(env, root, tag, platforms)
                storage_root = root / f"storage-{name}-{go_cache}"
                with (
                    fresh_podman_storage(storage_root, go_cache=go_cache) as storage,
                    mock.patch.dict("os.environ", storage),
                ):
                    started = time.perf_counter()
                    podman_build.run_build(props)
                    seconds[round_name, name] = time.perf_counter() - started
    table = Table(title="bench/multiarch.py")
    for column in ("build (fresh storage)", "one arch s", "two arch s", "ratio", "target"):
        table.add_column(column)
    for round_name, _ in rounds:
        one, two = seconds[round_name, "one"], seconds[round_name, "two"]
        verdict = "met" if two / one <= TARGET else "MISSED"
        table.add_row(round_name, f"{one:.1f}", f"{two:.1f}", f"{two / one:.2f}x", f"≤ {TARGET}x: {verdict}")
    Console().print(table)


if __name__ == "__main__":
    main()
