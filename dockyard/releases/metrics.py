"""``dockyard metrics``: the four DORA figures and build duration of one stack, from the records it already has.

Inputs are plain records, so the figures are pure functions of them (:func:`compute`):

- the stack's updates (:mod:`.history`: dockyard's moves carry a ``dockyard`` message, every update the config
  it ran with, hence the image it served);
- its verifications (:mod:`dockyard.releases.records`: the backend's database, or the ledger beside a file backend);
- the commit time of each deployed image (OCI label ``org.opencontainers.image.created``, which the build sets to the
  commit time of the build context; the epoch placeholder of a build outside git means unknown);
- the updates of the stack that builds the images (itself, or the first building stack upstream).

Definitions (all within the window ``[now - since, now]``):

- **deployment**: a successful update, not a rollback, that changed the image the stack serves (a promotion onto a
  rolling stack, a canary's completion, a blue-green switch); on a building stack (whose history names no image) a
  successful update that created or replaced resources: the image build is the resource such an update replaces.
- **deployment frequency**: deployments per day.
- **lead time for changes**: deployment end minus the commit time of the deployed image.
- **change failure rate**: failed changes over changes. Changes are deployments, failed updates and aborted canaries
  (rollbacks and switch-backs are remedies, not changes). A deployment failed when a verification of its image on
  the stack failed, or a rollback (a switch back, on blue-green) came before the next deployment; an aborted canary
  is a failed change of its own.
- **time to restore**: from a failure (a failed verification of what took traffic, a failed update, a rollback or
  switch-back, an aborted canary) to the next passed verification of what the stack serves; failures before that
  restore belong to the same incident. A failed check of an idle color, which serves nobody, is no failure.
- **build duration**: wall time of the building stack's updates that built an image.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from dockyard.model.durations import parse_duration
from dockyard.releases.errors import DockyardError
from dockyard.releases.history import ABANDONS, RESTORES, Update
from dockyard.releases.ledger import Verification
from dockyard.releases.project import Project
from dockyard.releases.registry_client import RegistryUnreachableError, image_labels

CREATED_LABEL = "org.opencontainers.image.created"
#: What a build outside a git checkout puts in the created label (dockyard_components.tags.release_identity).
UNKNOWN_COMMIT_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def parse_since(text: str) -> timedelta:
    """``30d``, ``12h``, ``2w`` or ``90m``."""
    return parse_duration(text, "--since")


@dataclass(frozen=True)
class Deployment:
    at: datetime
    image: str | None
    failed: bool


@dataclass(frozen=True)
class Summary:
    """count, median and mean of durations in seconds (``None`` without data)."""

    count: int
    median: float | None
    mean: float | None

    @classmethod
    def of(cls, durations: Sequence[timedelta]) -> Summary:
        seconds = [d.total_seconds() for d in durations]
        if not seconds:
            return cls(0, None, None)
        return cls(len(seconds), statistics.median(seconds), statistics.fmean(seconds))


@dataclass(frozen=True)
class Metrics:
    stack: str
    start: datetime
    end: datetime
    deployments: int
    deployments_per_day: float
    lead_time: Summary
    lead_time_unknown: int
    changes: int
    failed_changes: int
    change_failure_rate: float | None
    failed_updates: int
    failed_verifications: int
    rollbacks: int
    aborted_canaries: int
    time_to_restore: Summary
    open_incidents: int
    build_duration: Summary
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["start"], data["end"] = self.start.isoformat(), self.end.isoformat()
        return data


def _in(moment: datetime, start: datetime, end: datetime) -> bool:
    return start <= moment <= end


def deployments_of(updates: Iterable[Update], building: bool) -> list[Update]:
    """Successful updates, not rollbacks, that changed the served image (or built one), oldest first."""
    served: str | None = None
    found = []
    for update in sorted(updates, key=lambda u: u.started):
        if update.kind != "update" or update.result != "succeeded":
            continue
        # A promoted stack deploys when what it serves changes; an update that serves no release (before the first
        # one, or a first canary beside no stable track) deploys nothing yet.
        changed = update.built if building else update.served is not None and update.served != served
        if update.action not in RESTORES and changed:
            found.append(update)
        served = update.served or served
    return found


def _failed_deployments(
    deployments: list[Update], updates: list[Update], verifications: list[Verification]
) -> list[Deployment]:
    result = []
    for index, deployment in enumerate(deployments):
        until = deployments[index + 1].at if index + 1 < len(deployments) else datetime.max.replace(tzinfo=UTC)
        failed_check = any(
            not v.passed and v.track is None and deployment.at <= v.at < until and deployment.served in (None, v.image)
            for v in verifications
        )
        rolled_back = any(u.action in RESTORES and deployment.at <= u.started < until for u in updates)
        result.append(Deployment(deployment.at, deployment.served, failed_check or rolled_back))
    return result


def incidents(
    updates: Iterable[Update], verifications: Iterable[Verification]
) -> list[tuple[datetime, datetime | None]]:
    """(failure, restore) pairs: a failure opens an incident, the next passed verification of what the stack
    serves closes it."""
    events: list[tuple[datetime, bool]] = []  # (time, is_restore)
    for update in updates:
        if update.kind != "update":
            continue
        if update.result == "failed":
            events.append((update.at, False))
        elif update.action in RESTORES | ABANDONS:
            events.append((update.started, False))
    events += [(v.at, False) for v in verifications if not v.passed and v.serving]
    events += [(v.at, True) for v in verifications if v.passed and v.track is None]
    found: list[tuple[datetime, datetime | None]] = []
    opened: datetime | None = None
    for moment, restore in sorted(events, key=lambda e: (e[0], e[1])):
        if not restore and opened is None:
            opened = moment
        elif restore and opened is not None:
            found.append((opened, moment))
            opened = None
    if opened is not None:
        found.append((opened, None))
    return found


def compute(
    stack: str,
    updates: Sequence[Update],
    verifications: Sequence[Verification],
    *,
    commit_times: Mapping[str, datetime | None],
    builds: Sequence[Update],
    building: bool,
    since: timedelta,
    now: datetime,
) -> Metrics:
    """Every figure from plain records (see the module docstring for the definitions)."""
    start = now - since
    updates = [u for u in updates if u.kind == "update"]
    all_deployments = deployments_of(updates, building)
    judged = [d for d in _failed_deployments(all_deployments, updates, list(verifications)) if _in(d.at, start, now)]
    failed_updates = [u for u in updates if u.result == "failed" and u.action not in RESTORES and _in(u.at, start, now)]
    aborted = [u for u in updates if u.action in ABANDONS and u.result == "succeeded" and _in(u.at, start, now)]
    changes = len(judged) + len(failed_updates) + len(aborted)
    failed_changes = sum(d.failed for d in judged) + len(failed_updates) + len(aborted)

    lead_times, unknown = [], 0
    for deployment in judged:
        committed = commit_times.get(deployment.image or "")
        if committed is None or committed <= UNKNOWN_COMMIT_TIME:
            unknown += 1
        else:
            lead_times.append(deployment.at - committed)

    windowed = [(opened, closed) for opened, closed in incidents(updates, verifications) if _in(opened, start, now)]
    restores = [closed - opened for opened, closed in windowed if closed is not None]
    rollbacks = [u for u in updates if u.action in RESTORES and u.result == "succeeded" and _in(u.at, start, now)]
    failed_verifications = [v for v in verifications if not v.passed and v.serving and _in(v.at, start, now)]
    build_times = [u.at - u.started for u in builds if u.built and u.ended and _in(u.at, start, now)]

    return Metrics(
        stack=stack,
        start=start,
        end=now,
        deployments=len(judged),
        deployments_per_day=len(judged) / (since.total_seconds() / 86400),
        lead_time=Summary.of(lead_times),
        lead_time_unknown=unknown,
        changes=changes,
        failed_changes=failed_changes,
        change_failure_rate=failed_changes / changes if changes else None,
        failed_updates=len(failed_updates),
        failed_verifications=len(failed_verifications),
        rollbacks=len(rollbacks),
        aborted_canaries=len(aborted),
        time_to_restore=Summary.of(restores),
        open_incidents=sum(closed is None for _, closed in windowed),
        build_duration=Summary.of(build_times),
        timeline=timeline(
            judged, [*failed_updates, *aborted], failed_verifications, rollbacks, start.date(), now.date()
        ),
    )


def timeline(
    deployments: Sequence[Deployment],
    failed_updates: Sequence[Update],
    failed_verifications: Sequence[Verification],
    rollbacks: Sequence[Update],
    first: date,
    last: date,
) -> list[dict[str, Any]]:
    """Per day: deployments, failures (failed updates, aborted canaries, failed verifications) and rollbacks, every
    day of the window."""
    counts: dict[str, Counter[date]] = {
        "deployments": Counter(d.at.date() for d in deployments),
        "failures": Counter([u.at.date() for u in failed_updates] + [v.at.date() for v in failed_verifications]),
        "rollbacks": Counter(u.at.date() for u in rollbacks),
    }
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [{"day": day.isoformat(), **{key: counter[day] for key, counter in counts.items()}} for day in days]


# --- collection -------------------------------------------------------------------------------------------------


def commit_time(labels: Mapping[str, str]) -> datetime | None:
    text = labels.get(CREATED_LABEL)
    try:
        moment = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def building_stack(project: Project, stack: str) -> str | None:
    """The stack itself when it builds, else the first building stack up its promotion chain."""
    seen = set()
    current: str | None = stack
    while current is not None and current not in seen:
        seen.add(current)
        env = project.environment(current)
        if env.image.build is not None:
            return current
        current = env.promotion.upstream
    return None


def collect(
    project: Project,
    stack: str,
    *,
    since: timedelta,
    now: datetime,
    warn: Callable[[str], None] = lambda _: None,
) -> Metrics:
    """Read the records of ``stack`` (history, ledger, image labels, the builder's history) and compute."""
    view = project.view(stack)
    env = view.env
    updates = project.history(stack)
    verifications = project.ledger().verifications(stack)
    builder = building_stack(project, stack)
    builds: list[Update] = []
    if builder is not None:
        try:
            builds = updates if builder == stack else project.history(builder)
        except DockyardError as error:
            warn(f"build durations unknown: {error}")
    building = env.image.build is not None
    commit_times: dict[str, datetime | None] = {}
    for deployment in deployments_of(updates, building):
        image = deployment.served
        if image and image not in commit_times and now - since <= deployment.at:
            try:
                commit_times[image] = commit_time(image_labels(image, view.credentials))
            except RegistryUnreachableError as error:
                warn(f"commit time of {image} unknown: {error}")
                commit_times[image] = None
            except (KeyError, ValueError) as error:
                warn(f"commit time of {image} unknown: {error.__class__.__name__}: {error}")
                commit_times[image] = None
    return compute(
        stack,
        updates,
        verifications,
        commit_times=commit_times,
        builds=builds,
        building=building,
        since=since,
        now=now,
    )


def write_chart(metrics: Metrics, path: Path) -> None:
    """A PNG of deployments, failures and rollbacks per day (matplotlib's Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    # Bars centred on noon of each day; numpy datetimes are what matplotlib's date axis (and its types) take.
    noon = np.array([f"{row['day']}T12:00" for row in metrics.timeline], dtype="datetime64[m]")
    figure, axes = plt.subplots(figsize=(10, 4), dpi=100)
    try:
        width = np.timedelta64(8 * 60, "m")
        bars = {"deployments": (-width / 2, "#2e7d32"), "failures": (width / 2, "#c62828")}
        for key, (offset, color) in bars.items():
            axes.bar(noon + offset, [row[key] for row in metrics.timeline], width=width, color=color, label=key)
        rollbacks = np.array([row["rollbacks"] for row in metrics.timeline])
        if rollbacks.any():
            shown = rollbacks > 0
            axes.scatter(noon[shown], rollbacks[shown], marker="v", color="#ef6c00", zorder=3, label="rollbacks")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        rate = "n/a" if metrics.change_failure_rate is None else f"{metrics.change_failure_rate:.0%}"
        axes.set_title(
            f"{metrics.stack}: {metrics.deployments} deployments, change failure rate {rate} "
            f"({metrics.start:%Y-%m-%d} to {metrics.end:%Y-%m-%d})"
        )
        axes.set_ylabel("per day")
        axes.legend(loc="upper left")
        figure.autofmt_xdate()
        figure.tight_layout()
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)


def to_json_text(metrics: Metrics) -> str:
    return json.dumps(metrics.to_json(), indent=2, sort_keys=True)
