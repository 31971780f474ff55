"""The figures of :mod:`.metrics` as metrics a team can scrape: the OpenMetrics exposition (``dockyard metrics
--format openmetrics``) and the Prometheus text format in a file for node-exporter's textfile collector
(``--textfile``), both written by ``prometheus_client`` from one :class:`DeliveryCollector`.

Every figure is a gauge labelled ``stack``. The figures count what happened within a window that slides with the
clock (``--since``), so they fall when an event leaves the window: a counter (and a summary's ``_count`` and
``_sum``, counters by definition) must never fall, and ``rate()`` or ``increase()`` would read each fall as a
reset. The window's length is a gauge of its own, not a label, so a stack keeps one series whatever window a
scrape asks for. Durations are in seconds, each as median, mean and the number of observations (not ``_count``:
that suffix belongs to summaries and histograms). A figure without data (no change in the window, so no change
failure rate; no lead time measured) has no sample rather than a NaN or a 0 that would read as "no failure":
the family is still there, and ``dockyard_changes`` or the ``_observations`` gauge beside it, at 0, says why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.registry import Collector

from dockyard.releases.metrics import Metrics, Summary

#: node-exporter's textfile collector reads only files with this suffix.
TEXTFILE_SUFFIX = ".prom"


@dataclass(frozen=True)
class _Gauge:
    name: str
    help: str
    value: Callable[[Metrics], float | None]
    unit: str = ""


def _durations(name: str, what: str, figure: Callable[[Metrics], Summary]) -> tuple[_Gauge, ...]:
    return (
        _Gauge(f"{name}_median", f"{what}: median in the window", lambda m: figure(m).median, "seconds"),
        _Gauge(f"{name}_mean", f"{what}: mean in the window", lambda m: figure(m).mean, "seconds"),
        _Gauge(f"{name}_observations", f"{what}: how many the median and mean are of", lambda m: figure(m).count),
    )


# The help texts are the same for every stack and window: node-exporter merges one file per stack only when they are.
_GAUGES: tuple[_Gauge, ...] = (
    _Gauge(
        "window",
        "Length of the window the other figures cover (--since)",
        lambda m: (m.end - m.start).total_seconds(),
        "seconds",
    ),
    _Gauge(
        "deployments",
        "Deployments in the window (successful updates, not rollbacks, that changed the served image or built one)",
        lambda m: m.deployments,
    ),
    _Gauge(
        "deployments_per_day",
        "Deployment frequency: deployments in the window per day",
        lambda m: m.deployments_per_day,
    ),
    *_durations(
        "lead_time",
        "Lead time for changes (deployment end minus the commit time of the deployed image)",
        lambda m: m.lead_time,
    ),
    _Gauge(
        "lead_time_unknown_deployments",
        "Deployments in the window whose image has no commit time, so no lead time",
        lambda m: m.lead_time_unknown,
    ),
    _Gauge("changes", "Changes in the window: deployments, failed updates and aborted canaries", lambda m: m.changes),
    _Gauge("failed_changes", "Failed changes in the window", lambda m: m.failed_changes),
    _Gauge(
        "change_failure",
        "Change failure rate: failed changes over changes (no sample without a change)",
        lambda m: m.change_failure_rate,
        "ratio",
    ),
    _Gauge("failed_updates", "Failed updates in the window", lambda m: m.failed_updates),
    _Gauge(
        "failed_verifications",
        "Failed verifications of what the stack serves, in the window",
        lambda m: m.failed_verifications,
    ),
    _Gauge("rollbacks", "Rollbacks and blue-green switch-backs in the window", lambda m: m.rollbacks),
    _Gauge("aborted_canaries", "Aborted canaries in the window", lambda m: m.aborted_canaries),
    *_durations(
        "time_to_restore",
        "Time to restore (a failure to the next passed verification of what is served)",
        lambda m: m.time_to_restore,
    ),
    _Gauge("open_incidents", "Incidents opened in the window and not restored yet", lambda m: m.open_incidents),
    *_durations(
        "build_duration",
        "Build duration (wall time of the building stack's updates that built an image)",
        lambda m: m.build_duration,
    ),
)


class DeliveryCollector(Collector):
    """One stack's figures as ``dockyard_*`` gauge families; what ``prometheus_client``'s writers read."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for gauge in _GAUGES:
            family = GaugeMetricFamily(f"dockyard_{gauge.name}", gauge.help, labels=["stack"], unit=gauge.unit)
            value = gauge.value(self.metrics)
            if value is not None:
                family.add_metric([self.metrics.stack], value)
            yield family


def openmetrics_text(metrics: Metrics) -> str:
    """The OpenMetrics text exposition, ending with ``# EOF``."""
    exposition: bytes = generate_latest(DeliveryCollector(metrics))
    return exposition.decode()


def write_textfile(metrics: Metrics, path: Path) -> None:
    """The Prometheus text format at ``path``, written to a temporary file beside it and renamed, so the textfile
    collector never reads half a file."""
    write_to_textfile(str(path), DeliveryCollector(metrics))
