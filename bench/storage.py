"""The app's build on podman's two storage drivers, as ratios measured in one run.

    source scripts/local-env.sh && .venv/bin/python -m bench.storage

Each driver gets a store of its own (a storage.conf under a temporary directory, seeded with the offline base
images), then the real builder (``podman_build.run_build``: the test stage, the runtime stage, the push to the local
registry) builds the app twice: first with no layer in that store (the Go build cache emptied before each driver's
first build), then again with every step cached — what most builds of the test suite and of a pipeline are.
Target: the cached build on overlay ≤ 0.2x the same build on vfs (vfs copies every layer whole at every step).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dockyard_components import podman_build
from dockyard_components.build_memo import MEMO_ENV
from tests.local_services import build_props, start_local_services
from tests.stacks import PROJECT

TARGET = 0.2
DRIVERS = ("vfs", "overlay")


def own_store(directory: Path, driver: str, images: list[str]) -> Path:
    """A storage.conf for ``driver`` in ``directory``, its store seeded with ``images`` from the machine's store."""
    conf = directory / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "{driver}"\nrunroot = "{directory / "run"}"\ngraphroot = "{directory / "graph"}"\n'
    )
    for image in images:
        archive = directory / "image.tar"
        subprocess.run(["podman", "save", "--quiet", "-o", str(archive), image], check=True)
        subprocess.run(
            ["podman", "load", "--quiet", "-i", str(archive)],
            check=True,
            capture_output=True,
            env={**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)},
        )
        archive.unlink()
    return conf


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    services = start_local_services()
    os.environ.pop(MEMO_ENV, None)  # every build builds
    os.environ.pop("DOCKYARD_BUILD_NO_CACHE", None)
    base_images = [services["DOCKYARD_BUILDER_IMAGE"], services["DOCKYARD_RUNTIME_IMAGE"]]
    root = Path(tempfile.mkdtemp(prefix="dockyard-bench-storage-"))
    seconds: dict[tuple[str, str], float] = {}
    try:
        for driver in DRIVERS:
            directory = root / driver
            directory.mkdir()
            os.environ["CONTAINERS_STORAGE_CONF"] = str(own_store(directory, driver, base_images))
            shutil.rmtree(os.environ.get("DOCKYARD_BUILDAH_CACHE", "/var/tmp/buildah-cache"), ignore_errors=True)
            for run in ("no layer in the store", "every step cached"):
                props = build_props(services, PROJECT, "dockyard/bench-storage", f"{driver}-{len(seconds)}")
                started = time.perf_counter()
                podman_build.run_build(props)
                seconds[(driver, run)] = time.perf_counter() - started
    finally:
        os.environ.pop("CONTAINERS_STORAGE_CONF", None)
        # Stores hold read-only layers and, on overlay, may hold mounts: podman removes its own.
        for driver in DRIVERS:
            conf = root / driver / "storage.conf"
            if conf.exists():
                subprocess.run(
                    ["podman", "system", "reset", "--force"],
                    env={**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)},
                    capture_output=True,
                    check=False,
                )
        shutil.rmtree(root, ignore_errors=True)
    table = Table(title="bench/storage.py: the app's build (test stage, runtime, push)")
    for column in ("build", "vfs s", "overlay s", "overlay / vfs"):
        table.add_column(column)
    for run in ("no layer in the store", "every step cached"):
        vfs, overlay = seconds[("vfs", run)], seconds[("overlay", run)]
        table.add_row(run, f"{vfs:.1f}", f"{overlay:.1f}", f"{overlay / vfs:.2f}x")
    Console().print(table)
    ratio = seconds[("overlay", "every step cached")] / seconds[("vfs", "every step cached")]
    met = ratio <= TARGET
    print(f"cached build on overlay: {ratio:.2f}x vfs (target ≤ {TARGET}x): {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
