"""One line per tier at the end of a run.

``scripts/test.sh`` runs every tier in one ``pytest -n 3 --dist loadfile`` on two cores: the engine, drill and
integration tests mostly wait on processes (pulumi, podman, the API server), so a third worker fills the gaps (two
left the cores idle a third of the time). Shared things are locked where the workers meet: the real node
(:func:`tests.local_services.real_node_lease`) and podman's storage (:func:`tests.local_services.remove_images`).
``loadfile`` keeps each module on one worker, so a module-scoped workspace (its stacks, backend and namespaces) is
built once. (``loadgroup`` would group finer, but pytest 9.2 ignores the node-id suffix xdist 3.8 gives a group: it
degrades to ``load``.) Modules run longest first, by the times the last run recorded (:mod:`tests.schedule`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from _pytest.terminal import TerminalReporter

from tests import schedule
from tests.stacks import PROJECT

#: Modules listed by time at the end of a run.
SLOWEST_MODULES = 15


#: The module times this run orders by: read once by the controller (a run beside this one may rewrite the file while
#: the workers collect), handed to every worker.
MODULE_SECONDS = pytest.StashKey[dict[str, float]]()


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    config.stash[MODULE_SECONDS] = workerinput[schedule.WORKER_INPUT] if workerinput else schedule.read()
    # With times to go by, xdist keeps the collection order, which pytest_collection_modifyitems makes longest first;
    # without (a fresh machine) its own order stays: modules by their number of tests.
    if config.stash[MODULE_SECONDS] and hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    node.workerinput[schedule.WORKER_INPUT] = node.config.stash[MODULE_SECONDS]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    module_seconds: dict[str, float] = config.stash[MODULE_SECONDS]
    items[:] = schedule.longest_first(items, module_seconds)


def tier_of(nodeid: str) -> str:
    """``tests/<tier>/...`` → ``<tier>``."""
    parts = nodeid.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else "other"


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    """One line per tier: passed/failed/error/skipped counts and the seconds its tests took, fixtures included."""
    outcomes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    seconds: dict[str, float] = defaultdict(float)
    module_seconds: dict[str, float] = defaultdict(float)
    module_worker: dict[str, str] = {}
    for key, reports in terminalreporter.stats.items():
        for report in reports:
            nodeid = getattr(report, "nodeid", "")
            if not nodeid or not hasattr(report, "when"):
                continue
            tier = tier_of(nodeid)
            seconds[tier] += report.duration
            module = nodeid.split("::")[0]
            module_seconds[module] += report.duration
            module_worker[module] = worker_of(report)
            if key in ("passed", "failed", "error", "skipped"):  # "" holds the passing setups and teardowns
                outcomes[tier][key] += 1
    if not outcomes:
        return
    if not hasattr(terminalreporter.config, "workerinput"):  # the controller, or a run without workers
        schedule.record(module_seconds)
    terminalreporter.section("tiers")
    for tier in sorted(outcomes):
        counts = ", ".join(f"{n} {key}" for key, n in sorted(outcomes[tier].items()))
        terminalreporter.write_line(f"tier {tier:<12} {counts}; {seconds[tier]:.0f} s of test time")
    # Whole modules, because that is what loadfile places on a worker: the longest ones set the run's tail.
    terminalreporter.section(f"slowest {SLOWEST_MODULES} modules (setup, calls and teardown)")
    for module, total in sorted(module_seconds.items(), key=lambda item: -item[1])[:SLOWEST_MODULES]:
        terminalreporter.write_line(f"{total:8.1f}s  {module_worker[module]:<4} {module}")


def worker_of(report: pytest.TestReport) -> str:
    """The pytest-xdist worker that ran a report's test (``gw0``…), ``-`` without xdist."""
    node = getattr(report, "node", None)
    gateway = getattr(node, "gateway", None)
    return str(getattr(gateway, "id", "-"))


@pytest.fixture(autouse=True)
def _in_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts in the project's root, as the CLI and the generator run (paths in stack files, such as the
    compose file of ``image.build.integration``, are relative to it), whatever directory pytest was started from
    or an earlier test left; a test's own ``monkeypatch.chdir`` still wins."""
    monkeypatch.chdir(PROJECT)
