"""The delivery figures as scrapeable metrics: the OpenMetrics exposition and node-exporter's textfile, read back
with prometheus_client's own parsers, and ``dockyard metrics --format`` / ``--json`` / ``--textfile``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus
from typer.testing import CliRunner

from dockyard import cli
from dockyard.releases import metrics as delivery_metrics
from dockyard.releases.metrics import Metrics, Summary, compute
from dockyard.releases.metrics_export import openmetrics_text, write_textfile
from dockyard.releases.project import Project
from tests.unit.test_metrics import COMMIT_TIMES, DEV_BUILDS, NOW, REPO, STAGING, VERIFICATIONS, D, at, build

#: The figure each gauge carries, as the table and --json show it.
FIGURES: dict[str, Callable[[Metrics], float | None]] = {
    "dockyard_window_seconds": lambda m: (m.end - m.start).total_seconds(),
    "dockyard_deployments": lambda m: m.deployments,
    "dockyard_deployments_per_day": lambda m: m.deployments_per_day,
    "dockyard_lead_time_median_seconds": lambda m: m.lead_time.median,
    "dockyard_lead_time_mean_seconds": lambda m: m.lead_time.mean,
    "dockyard_lead_time_observations": lambda m: m.lead_time.count,
    "dockyard_lead_time_unknown_deployments": lambda m: m.lead_time_unknown,
    "dockyard_changes": lambda m: m.changes,
    "dockyard_failed_changes": lambda m: m.failed_changes,
    "dockyard_change_failure_ratio": lambda m: m.change_failure_rate,
    "dockyard_failed_updates": lambda m: m.failed_updates,
    "dockyard_failed_verifications": lambda m: m.failed_verifications,
    "dockyard_rollbacks": lambda m: m.rollbacks,
    "dockyard_aborted_canaries": lambda m: m.aborted_canaries,
    "dockyard_time_to_restore_median_seconds": lambda m: m.time_to_restore.median,
    "dockyard_time_to_restore_mean_seconds": lambda m: m.time_to_restore.mean,
    "dockyard_time_to_restore_observations": lambda m: m.time_to_restore.count,
    "dockyard_open_incidents": lambda m: m.open_incidents,
    "dockyard_build_duration_median_seconds": lambda m: m.build_duration.median,
    "dockyard_build_duration_mean_seconds": lambda m: m.build_duration.mean,
    "dockyard_build_duration_observations": lambda m: m.build_duration.count,
}


def figures(since: timedelta = timedelta(days=30)) -> Metrics:
    """staging's recorded history, with D's commit time known and a long fourth build, so medians and means differ."""
    return compute(
        "staging",
        STAGING,
        VERIFICATIONS,
        commit_times={**COMMIT_TIMES, D: at("2026-11-10T08:00:00")},  # D deployed 34 min later
        builds=[*DEV_BUILDS, build("2026-11-20T10:00:00", 600)],
        building=False,
        since=since,
        now=NOW,
    )


def values(families: Iterable[Metric]) -> dict[str, dict[str, float]]:
    """Each family's samples by their ``stack`` label; every family a gauge labelled by stack alone."""
    found: dict[str, dict[str, float]] = {}
    for family in families:
        assert family.type == "gauge", family.name
        assert family.name not in found, f"{family.name} twice"
        found[family.name] = {}
        for sample in family.samples:
            assert (sample.name, list(sample.labels)) == (family.name, ["stack"])
            found[family.name][sample.labels["stack"]] = sample.value
    return found


def expected(metrics: Metrics) -> dict[str, dict[str, float]]:
    return {
        name: {} if (value := figure(metrics)) is None else {metrics.stack: float(value)}
        for name, figure in FIGURES.items()
    }


def test_the_exposition_carries_every_figure_of_the_table() -> None:
    metrics = figures()
    assert metrics.lead_time == Summary(3, 7200.0, 31880.0)  # 24 h, 2 h and 34 min
    assert metrics.build_duration == Summary(4, 135.0, 240.0)  # 90 s, 150 s, 120 s and 600 s
    assert (metrics.deployments, metrics.changes, metrics.failed_changes) == (3, 4, 3)
    text = openmetrics_text(metrics)
    assert text.endswith("\n# EOF\n")
    assert values(parse_openmetrics(text)) == expected(metrics)
    assert values(parse_openmetrics(text))["dockyard_change_failure_ratio"] == {"staging": 0.75}
    assert REPO not in text, "the figures name no image, so no registry"


def test_units_follow_the_openmetrics_conventions() -> None:
    units = {family.name: family.unit for family in parse_openmetrics(openmetrics_text(figures()))}
    assert {name for name, unit in units.items() if unit == "seconds"} == {n for n in FIGURES if n.endswith("_seconds")}
    assert units["dockyard_change_failure_ratio"] == "ratio"
    assert not [name for name in units if name.endswith(("_total", "_count", "_sum", "_created"))], (
        "window figures fall as events leave the window: no counter or summary suffixes"
    )


def test_each_gauge_carries_its_own_figure() -> None:
    """Every figure different, so a gauge reading its neighbour's figure shows."""
    distinct = replace(
        figures(),
        deployments=2,
        deployments_per_day=3.5,
        lead_time=Summary(5, 7.0, 11.0),
        lead_time_unknown=13,
        changes=17,
        failed_changes=19,
        change_failure_rate=0.23,
        failed_updates=29,
        failed_verifications=31,
        rollbacks=37,
        aborted_canaries=41,
        time_to_restore=Summary(43, 47.0, 53.0),
        open_incidents=59,
        build_duration=Summary(61, 67.0, 71.0),
    )
    found = values(parse_openmetrics(openmetrics_text(distinct)))
    assert found == expected(distinct)
    carried = [value for family in found.values() for value in family.values()]
    assert len(set(carried)) == len(FIGURES)


def test_a_figure_without_data_has_no_sample() -> None:
    """Two days without a change: no change failure rate, no restore, no build; zeros where zero is the truth."""
    metrics = figures(timedelta(days=2))
    assert (metrics.changes, metrics.change_failure_rate, metrics.build_duration.count) == (0, None, 0)
    text = openmetrics_text(metrics)
    assert "NaN" not in text
    found = values(parse_openmetrics(text))
    assert set(found) == set(FIGURES), "every family is there, with or without a sample"
    empty = {name for name, samples in found.items() if not samples}
    assert empty == {
        "dockyard_change_failure_ratio",
        "dockyard_lead_time_median_seconds",
        "dockyard_lead_time_mean_seconds",
        "dockyard_time_to_restore_median_seconds",
        "dockyard_time_to_restore_mean_seconds",
        "dockyard_build_duration_median_seconds",
        "dockyard_build_duration_mean_seconds",
    }
    assert found["dockyard_changes"] == {"staging": 0.0}
    assert found["dockyard_build_duration_observations"] == {"staging": 0.0}
    assert found["dockyard_open_incidents"] == {"staging": 1.0}


def test_the_textfile_is_the_prometheus_text_format_written_whole(tmp_path: Path) -> None:
    metrics = figures()
    path = tmp_path / "dockyard-staging.prom"
    path.write_text("# an older run's figures\n")
    write_textfile(metrics, path)
    text = path.read_text()
    assert "# EOF" not in text, "node-exporter reads the Prometheus text format, not OpenMetrics"
    assert values(parse_prometheus(text)) == expected(metrics)
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "the temporary file was renamed onto the textfile"


# --- the command ----------------------------------------------------------------------------------------------


@pytest.fixture
def collected(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``collect`` answers staging's figures after one warning; the stacks it was asked for."""
    asked: list[str] = []

    def collect(
        project: Project, stack: str, *, since: timedelta, now: datetime, warn: Callable[[str], None]
    ) -> Metrics:
        asked.append(stack)
        assert since == timedelta(days=30)
        warn(f"commit time of {D} unknown: registry unreachable")
        return figures()

    monkeypatch.setattr(delivery_metrics, "collect", collect)
    return asked


def run(*args: str) -> tuple[int, str, str]:
    # A wide terminal, so an error box keeps its message on one line.
    result = CliRunner().invoke(cli.app, ["metrics", "--stack", "staging", *args], env={"COLUMNS": "250"})
    return result.exit_code, result.stdout, result.stderr


def test_openmetrics_on_stdout_is_the_exposition_alone(collected: list[str]) -> None:
    code, stdout, stderr = run("--format", "openmetrics")
    assert code == 0, stderr
    assert stdout == openmetrics_text(figures())
    assert "warning: commit time of" in stderr, "warnings go to stderr"


@pytest.mark.parametrize("args", [["--json"], ["--format", "json"], ["--json", "--format", "json"]])
def test_json_stays(collected: list[str], args: list[str]) -> None:
    code, stdout, stderr = run(*args)
    assert code == 0, stderr
    assert json.loads(stdout) == json.loads(json.dumps(figures().to_json()))


def test_the_table_is_the_default(collected: list[str]) -> None:
    code, stdout, _ = run()
    assert code == 0
    assert "delivery metrics of staging" in stdout
    assert "75% (3 of 4 changes)" in stdout
    assert "warning" not in stdout


@pytest.mark.parametrize("other", ["table", "openmetrics"])
def test_json_and_another_format_are_one_clear_error(collected: list[str], other: str) -> None:
    code, stdout, stderr = run("--json", "--format", other)
    assert code == 2
    assert f"'--json': it means --format json, which contradicts --format {other}" in " ".join(stderr.split())
    assert (stdout, collected) == ("", []), "refused before reading any record"


def test_the_textfile_beside_any_format(collected: list[str], tmp_path: Path) -> None:
    path = tmp_path / "dockyard-staging.prom"
    code, stdout, stderr = run("--format", "openmetrics", "--textfile", str(path))
    assert code == 0, stderr
    assert stdout == openmetrics_text(figures())
    assert values(parse_prometheus(path.read_text())) == expected(figures())
    assert f"textfile written to {path}" in " ".join(stderr.split())


@pytest.mark.parametrize(
    ("name", "problem"),
    [("metrics.txt", "reads only *.prom files"), ("missing/metrics.prom", "is no directory")],
)
def test_a_textfile_node_exporter_would_not_read_is_refused_first(
    collected: list[str], tmp_path: Path, name: str, problem: str
) -> None:
    code, _, stderr = run("--textfile", str(tmp_path / name))
    assert code == 2
    assert problem in " ".join(stderr.split())
    assert collected == []
