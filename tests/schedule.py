"""Longest modules first.

pytest-xdist's ``loadfile`` places whole modules on the workers, one after another; left to itself it orders them by
their number of tests, which puts the many small unit modules first and a ten-minute engine module near the end,
where it alone sets the run's tail. Each run keeps how long every module took (setup, calls and teardown) in
``$DOCKYARD_CACHE/test-durations.json``; the next run collects the modules longest first, then those not timed yet
in collection order (a new module, once: the run that adds it times it). With no file (a fresh machine) xdist's own
order stays.
The controller reads the file once and hands the same times to every worker: workers must collect in one order.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest

DURATIONS = Path(os.environ.get("DOCKYARD_CACHE", Path.home() / ".cache" / "dockyard")) / "test-durations.json"
#: Where the controller puts the times for its workers (``workerinput``).
WORKER_INPUT = "dockyard_module_seconds"


def read(path: Path = DURATIONS) -> dict[str, float]:
    """The module times of earlier runs; nothing when there is no readable file (a fresh machine)."""
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(recorded, dict):
        return {}
    return {str(module): float(seconds) for module, seconds in recorded.items() if isinstance(seconds, int | float)}


def record(module_seconds: Mapping[str, float], path: Path = DURATIONS) -> None:
    """Keep this run's times beside the earlier ones (a run of some modules updates those), written whole."""
    merged = {**read(path), **{module: round(seconds, 1) for module, seconds in module_seconds.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".test-durations-", delete=False) as handle:
        json.dump(merged, handle, indent=0, sort_keys=True)
    os.replace(handle.name, path)


def longest_first(items: list[pytest.Item], module_seconds: Mapping[str, float]) -> list[pytest.Item]:
    """``items`` with whole modules ordered by their recorded time, longest first, then the modules without one;
    ties (and the tests within a module) keep the collection order."""

    def key(item: pytest.Item) -> float:
        return -module_seconds.get(item.nodeid.split("::")[0], 0.0)

    return sorted(items, key=key)
