"""How the tiers share the two cores, and one line per tier at the end of a run.

``scripts/test.sh`` runs every tier in one ``pytest -n 2 --dist loadgroup``: the engine, drill and integration tests
mostly wait on processes (pulumi, podman, the API server), so a second worker fills the gaps. Placement keeps each
module's live state on one worker: an engine module builds one workspace (its stacks, backend and namespaces) in a
module-scoped fixture, so all its tests form one group; the drills share one drill registry on a fixed port, so they
form one group together.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from _pytest.terminal import TerminalReporter

#: Tiers whose tests all go to one worker (a session fixture of theirs holds a fixed port).
ONE_WORKER_TIERS = {"drills"}


def tier_of(item_or_nodeid: str) -> str:
    """``tests/<tier>/...`` → ``<tier>``."""
    parts = item_or_nodeid.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else "other"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        tier = tier_of(item.nodeid)
        group = tier if tier in ONE_WORKER_TIERS else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    """One line per tier: passed/failed/error/skipped counts and the seconds its tests took, fixtures included."""
    outcomes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    seconds: dict[str, float] = defaultdict(float)
    for key, reports in terminalreporter.stats.items():
        for report in reports:
            nodeid = getattr(report, "nodeid", "")
            if not nodeid or not hasattr(report, "when"):
                continue
            tier = tier_of(nodeid)
            seconds[tier] += report.duration
            if key in ("passed", "failed", "error", "skipped"):  # "" holds the passing setups and teardowns
                outcomes[tier][key] += 1
    if not outcomes:
        return
    terminalreporter.section("tiers")
    for tier in sorted(outcomes):
        counts = ", ".join(f"{n} {key}" for key, n in sorted(outcomes[tier].items()))
        terminalreporter.write_line(f"tier {tier:<12} {counts}; {seconds[tier]:.0f} s of test time")
