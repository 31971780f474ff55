"""``dockyard``: promote, verify, roll back and inspect releases; canary steps and blue-green switches; delivery
metrics; summarize previews for PRs."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from dockyard.admission import cli as admission_cli
from dockyard.model.config import stack_file
from dockyard.model.image_diff import OCI_VERSION_LABEL
from dockyard.model.merge_requests import DEFAULT_TTL
from dockyard.model.notifications import Event
from dockyard.pipeline import pr_summary
from dockyard.releases import metrics as delivery_metrics
from dockyard.releases.chart_move import publish_chart
from dockyard.releases.config_guard import Terminated
from dockyard.releases.doctor import run as run_doctor
from dockyard.releases.errors import EXIT_DONE, EXIT_REFUSED, EXIT_UNHEALTHY, DockyardError
from dockyard.releases.history import CANARY_ABORT, CANARY_COMPLETE, CANARY_STEP, PROMOTE, REVERT, ROLLBACK, SWITCH
from dockyard.releases.ledger import Verification
from dockyard.releases.metrics_export import TEXTFILE_SUFFIX, openmetrics_text, write_textfile
from dockyard.releases.moves import Releases
from dockyard.releases.mr_env import Destroyed, MergeRequestEnvironments
from dockyard.releases.notify import ReleaseEvent, announce
from dockyard.releases.progressive import (
    Ending,
    Run,
    abort_canary,
    advance_canary,
    failed,
    promote_verified,
    switch_colors,
)
from dockyard.releases.project import Project, actor
from dockyard.releases.prune import Pruned, prune
from dockyard.releases.registry_client import RegistryUnreachableError, image_labels
from dockyard.releases.stack_update import Outcome
from dockyard.verify import HEALTH_TIMEOUT, Verifier
from dockyard_components.image_ref import short_image

EXIT_CODES = (
    f"Exit codes: {EXIT_DONE} done (applied, previewed, or nothing to do); {EXIT_REFUSED} refused (nothing changed), "
    f"or a failed check was answered by a rollback or abort; {EXIT_UNHEALTHY} left unhealthy (a failed check could "
    "not be undone to a verified release); 128+N interrupted by signal N (the stack file holds only what was applied)."
)

app = typer.Typer(help=__doc__, epilog=EXIT_CODES, no_args_is_help=True, add_completion=False)
canary_app = typer.Typer(
    help="Step a canary through its configured steps with analysis between them, or abort it.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
)
app.add_typer(canary_app, name="canary")
app.add_typer(admission_cli.app, name="admission")
registry_app = typer.Typer(help="The stacks' registries: what they keep.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")
env_app = typer.Typer(
    help="Environments per merge request: made from a template stack with the merge request's digest, destroyed when "
    "it closes or expires.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
)
app.add_typer(env_app, name="env")
console = Console(stderr=True, soft_wrap=True)
ProjectOption = Annotated[Path, typer.Option("--project", help="Pulumi project directory", file_okay=False)]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="apply without asking (the update shows its diff)")]
StackOption = Annotated[str, typer.Option("--stack", help="the stack")]
#: What --now takes: ISO 8601 with or without a zone (a time without one is UTC).
_TIME_FORMATS = ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]


def _project(directory: Path) -> Project:
    return Project(directory.resolve(), print_line=lambda line: console.print(Text.from_ansi(line.rstrip("\n"))))


def _confirm() -> bool:
    if not sys.stdin.isatty():
        console.print("[yellow]not applied:[/] no terminal to confirm on; re-run with --yes to apply")
        return False
    try:
        return typer.confirm("Apply this change?", default=False)
    except typer.Abort as abort:
        # click turns an interrupt at a prompt into Abort; re-raise the interrupt (Ctrl-C or a Terminated signal) so
        # it is reported as one. End of input is no answer, and no answer is "no".
        if isinstance(abort.__context__, KeyboardInterrupt):
            raise abort.__context__ from None
        return False


def _versions(project: Project, stack: str) -> Callable[[str], str | None]:
    """The OCI version label of an image in the stack's registry (None when the registry cannot say)."""
    view = project.view(stack)

    @cache
    def version(image: str) -> str | None:
        try:
            return image_labels(image, view.credentials).get(OCI_VERSION_LABEL)
        except (RegistryUnreachableError, KeyError, ValueError):
            return None

    return version


#: How each move is reported once applied.
VERBS = {
    PROMOTE: "promoted",
    ROLLBACK: "rolled back",
    CANARY_STEP: "advanced",
    CANARY_COMPLETE: "completed",
    CANARY_ABORT: "aborted",
    SWITCH: "switched",
    REVERT: "reverted",
}


def _report_move(project: Project, outcome: Outcome) -> None:
    verb = VERBS.get(outcome.action, "applied")
    changed = ", ".join(f"{c.op} {c.name}" for c in outcome.changes) or "no resource changes"
    if outcome.applied:
        console.print(f"[green]{verb}[/] {outcome.stack} → {outcome.image} ({outcome.what}; {changed})")
    else:
        console.print(
            f"[yellow]previewed only[/] {outcome.stack} → {outcome.image} ({outcome.what}; {changed}); config restored"
        )
    versions = _versions(project, outcome.stack)
    for change in outcome.changes:
        console.print(f"  {change.op} {change.name}: {', '.join(change.properties) or '(no property diff)'}")
        for image in change.images:
            console.print(f"    image {image.render(versions)}")


def _print_checks(record: Verification) -> None:
    subject = f" {record.track} track" if record.track else ""
    table = Table(
        title=f"verification of {record.stack}{subject} ({record.mode}): {'passed' if record.passed else 'FAILED'}"
    )
    for column in ("check", "result", "detail"):
        table.add_column(column)
    for check in record.checks:
        table.add_row(check.name, "[green]ok[/]" if check.passed else "[red]FAILED[/]", check.detail)
    console.print(table)
    console.print(f"{record.image} verified by {record.actor} at {record.at.isoformat(timespec='seconds')}")


def _reporter(project: Project) -> Callable[[Outcome | Verification], None]:
    """Prints each move and check of a flow as it happens."""

    def report(event: Outcome | Verification) -> None:
        if isinstance(event, Outcome):
            _report_move(project, event)
            return
        _print_checks(event)
        if not event.passed:
            console.print(f"[red]verification of {event.stack} failed[/] on {event.image}: {failed(event)}")

    return report


Report = Callable[[Outcome | Verification], None]
Flow = Callable[[Releases, Verifier, Report], Run]


def _run_flow(project: Path, stack: str, what: str, flow: Flow) -> Run:
    """Run a flow that looks before and after it moves, printing each move and check and how it ended."""
    dockyard = _project(project)
    with _handled(project, stack):
        run = flow(Releases(dockyard), Verifier(dockyard), _reporter(dockyard))
    if run.ending is not Ending.DONE and run.ending is not Ending.PREVIEWED:
        colour = "red" if run.ending is Ending.UNHEALTHY else "yellow"
        console.print(f"[{colour}]{what} {run.ending}[/]: {escape(str(run.problem))}")
    return run


def _fail(error: DockyardError) -> typer.Exit:
    # Escaped: the engine's and the pods' words hold brackets ("unready status: [app]") that are no markup.
    console.print(f"[red]error:[/] {escape(str(error))}")
    return typer.Exit(code=error.exit_code)


@contextmanager
def _handled(project: Path, stack: str) -> Iterator[None]:
    """A refusal: its message and exit code. Ctrl-C, SIGTERM or SIGHUP during a config change: one line, the
    shell's exit code, no traceback."""
    try:
        yield
    except DockyardError as error:
        raise _fail(error) from None
    except KeyboardInterrupt as interrupt:
        signum = interrupt.signum if isinstance(interrupt, Terminated) else signal.SIGINT
        console.print(
            f"[yellow]interrupted[/] ({signal.Signals(signum).name}): {stack_file(project, stack).name} holds only "
            "what was applied; an update that had already started may have changed resources "
            f"(dockyard history --stack {stack})"
        )
        raise typer.Exit(code=128 + signum) from None


@app.command(epilog=EXIT_CODES)
def promote(
    source: Annotated[str, typer.Option("--from", help="stack whose deployed digest is promoted")],
    target: Annotated[str, typer.Option("--to", help="stack that receives it")],
    yes: YesOption = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="after applying, check the release where it landed (what TARGET serves, its canary, or its idle "
            f"color); on failure undo it (roll back, abort the canary, revert the idle color) and exit "
            f"{EXIT_REFUSED} ({EXIT_UNHEALTHY} when no verified release could be restored)",
        ),
    ] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Promote the digest SOURCE serves into TARGET: gate, write it where TARGET's strategy takes a release (image.ref,
    the canary at its first step, or the idle color), preview the diff, apply with --yes."""
    if not verify:
        dockyard = _project(project)
        with _handled(project, target):
            _report_move(dockyard, Releases(dockyard).promote(source, target, yes=yes, confirm=_confirm))
        return
    run = _run_flow(
        project,
        target,
        f"promotion {source} → {target}",
        lambda moves, checks, report: promote_verified(
            moves, checks, source, target, yes=yes, confirm=_confirm, report=report
        ),
    )
    if run.ending is Ending.ROLLED_BACK and run.moves[-1].action == ROLLBACK:
        console.print(f"[red]{target} was rolled back to its verified release {run.moves[-1].image}[/]")
    raise typer.Exit(code=run.exit_code)


@app.command(epilog=EXIT_CODES)
def rollback(
    stack: Annotated[str, typer.Option("--stack", help="stack to roll back")],
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="digest (sha256:...) or image ref; default: the previously served image (blue-green: the idle "
            "color, which still runs it)",
        ),
    ] = None,
    yes: YesOption = False,
    project: ProjectOption = Path("."),
) -> None:
    """Roll STACK back to its previously served digest (or --to), previewed first; a blue-green stack switches back."""
    dockyard = _project(project)
    with _handled(project, stack):
        outcome = Releases(dockyard).rollback(stack, to=to, yes=yes, confirm=_confirm)
    _report_move(dockyard, outcome)


@app.command(epilog=EXIT_CODES)
def switch(stack: StackOption, yes: YesOption = False, project: ProjectOption = Path(".")) -> None:
    """Switch a blue-green STACK to its idle color: verify the idle color first (rollout, pod digests, its preview
    Service, health), then flip activeColor (only the Service selectors change), then verify what is served; a
    failure there switches back."""
    run = _run_flow(
        project,
        stack,
        f"switch of {stack}",
        lambda moves, checks, report: switch_colors(moves, checks, stack, yes=yes, confirm=_confirm, report=report),
    )
    raise typer.Exit(code=run.exit_code)


@canary_app.command("advance", epilog=EXIT_CODES)
def canary_advance(
    stack: StackOption,
    auto: Annotated[bool, typer.Option("--auto", help="walk every remaining step, analysing and soaking each")] = False,
    yes: YesOption = False,
    project: ProjectOption = Path("."),
) -> None:
    """Analyse STACK's canary at its current step (its track's rollout and pod digests on the live API, the health of
    its digest), then move to the next step; past the last step the canary image becomes the stable one. A failed
    analysis aborts the canary."""
    run = _run_flow(
        project,
        stack,
        f"canary of {stack}",
        lambda moves, checks, report: advance_canary(
            moves, checks, stack, auto=auto, yes=yes, confirm=_confirm, report=report
        ),
    )
    raise typer.Exit(code=run.exit_code)


@canary_app.command("abort", epilog=EXIT_CODES)
def canary_abort(stack: StackOption, yes: YesOption = False, project: ProjectOption = Path(".")) -> None:
    """Abort STACK's canary: back to 0 %, the canary Deployment removed, the stable track serving everything."""
    run = _run_flow(
        project,
        stack,
        f"canary of {stack}",
        lambda moves, checks, report: abort_canary(moves, stack, yes=yes, confirm=_confirm, report=report),
    )
    raise typer.Exit(code=run.exit_code)


MrOption = Annotated[str, typer.Option("--mr", help="the merge (pull) request's number")]


@env_app.command("create", epilog=EXIT_CODES)
def env_create(
    template: Annotated[str, typer.Option("--from", help="the dev or qa stack the environment is made from")],
    mr: MrOption,
    image: Annotated[str, typer.Option("--image", help="the merge request's image, repo@sha256:...")],
    ttl: Annotated[
        str, typer.Option("--ttl", help="how long it lives: 90m, 72h, 7d (at most 30d); a re-run extends it")
    ] = DEFAULT_TTL,
    project: ProjectOption = Path("."),
) -> None:
    """Make (or update) merge request MR's environment: the stack <template>-mr-<MR> from TEMPLATE, in its own
    namespace, deploying IMAGE until now + TTL; applied at once (the update shows its diff)."""
    dockyard = _project(project)
    with _handled(project, f"{template}-mr-{mr}"):
        outcome = MergeRequestEnvironments(dockyard).create(template, mr, image, ttl)
    changed = ", ".join(f"{c.op} {c.name}" for c in outcome.changes) or "no resource changes"
    console.print(f"[green]deployed[/] {outcome.stack} → {outcome.image} ({outcome.what}; {changed})")


@env_app.command("destroy", epilog=EXIT_CODES)
def env_destroy(
    mr: MrOption,
    template: Annotated[
        str | None, typer.Option("--from", help="only the environment made from this stack (default: every one)")
    ] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Destroy merge request MR's environment: pulumi destroy, stack rm, its stack file removed; exit 0 when there is
    none."""
    with _handled(project, f"{template or '*'}-mr-{mr}"):
        destroyed = MergeRequestEnvironments(_project(project)).destroy(mr, template)
    if not destroyed:
        console.print(f"merge request {mr} has no environment: nothing to destroy")
    for each in destroyed:
        console.print(_destroyed(each))


def _destroyed(each: Destroyed) -> str:
    if each.deployed:
        return f"[green]destroyed[/] {each.stack} (resources, stack and Pulumi.{each.stack}.yaml)"
    return f"removed Pulumi.{each.stack}.yaml ({each.stack} was not in the backend)"


@env_app.command("sweep", epilog=EXIT_CODES)
def env_sweep(
    now: Annotated[
        datetime | None,
        typer.Option("--now", help="judge expiry at this time (ISO 8601; default: now, UTC)", formats=_TIME_FORMATS),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would be destroyed, destroy nothing")] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Destroy every merge request environment whose expiry has passed (the scheduled pipeline runs it); one that
    fails is reported (exit 1) and the rest are still swept."""
    moment = (now if now.tzinfo else now.replace(tzinfo=UTC)) if now else None
    with _handled(project, "*-mr-*"):
        swept = MergeRequestEnvironments(_project(project)).sweep(moment, dry_run=dry_run)
    for item in swept:
        until = item.expires.isoformat() if item.expires else "no recorded expiry"
        if item.problem:
            console.print(f"[red]not destroyed[/] {item.stack} (expired {until}): {item.problem}")
        elif item.destroyed:
            console.print(f"{_destroyed(item.destroyed)}, expired {until}")
        elif item.expired:
            console.print(f"would destroy {item.stack} (expired {until})")
        else:
            console.print(f"kept {item.stack} (expires {until})")
    if not swept:
        console.print("no merge request environments")
    if any(item.problem for item in swept):
        raise typer.Exit(code=EXIT_REFUSED)


@app.command(epilog=EXIT_CODES)
def verify(
    stack: Annotated[str, typer.Option("--stack", help="stack whose deployment is checked")],
    candidate: Annotated[
        bool, typer.Option("--candidate", help="check the release on its way in: the canary, or the idle color")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="seconds the health path may take to answer 200 (local run)")
    ] = HEALTH_TIMEOUT,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Check that what STACK serves (or its --candidate) is healthy, and record the outcome where promote reads it.

    Rendered stacks: the manifests pin the stack's images in every Deployment, and the image, pulled from the
    registry and run here, answers its health path and the smoke checks. Cluster stacks: the rollout is complete with
    the expected digest on every ready pod, the Service's ready endpoints are those pods, and the health path answers
    through the Ingress; on the local cluster the digest is also run here.
    """
    with _handled(project, stack):
        record = Verifier(_project(project), health_timeout=timeout).verify(stack, candidate=candidate)
    if as_json:
        typer.echo(json.dumps(record.to_json(), indent=2))
    else:
        _print_checks(record)
    if not record.passed:
        failed = ", ".join(check.name for check in record.failed_checks)
        console.print(f"[red]verification of {stack} failed:[/] {failed}")
        raise typer.Exit(code=EXIT_REFUSED)


class MetricsFormat(StrEnum):
    """What ``dockyard metrics`` prints on stdout."""

    TABLE = "table"
    JSON = "json"
    OPENMETRICS = "openmetrics"


@app.command(epilog=EXIT_CODES)
def metrics(
    stack: Annotated[str, typer.Option("--stack")],
    since: Annotated[str, typer.Option("--since", help="window: 30d, 12h, 2w, 90m")] = "30d",
    output_format: Annotated[
        MetricsFormat | None,
        typer.Option(
            "--format", help="stdout: a table (the default), JSON, or the OpenMetrics exposition (ends with # EOF)"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the same as --format json")] = False,
    chart: Annotated[
        Path | None, typer.Option("--chart", help="write a PNG of deployments and failures per day")
    ] = None,
    textfile: Annotated[
        Path | None,
        typer.Option(
            "--textfile",
            help=f"write the figures in the Prometheus text format to this *{TEXTFILE_SUFFIX} file (atomically) "
            "for node-exporter's textfile collector",
            dir_okay=False,
        ),
    ] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Deployment frequency, lead time, change failure rate, time to restore and build duration of STACK."""
    try:
        window = delivery_metrics.parse_since(since)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if as_json and output_format not in (None, MetricsFormat.JSON):
        raise typer.BadParameter(
            f"it means --format json, which contradicts --format {output_format}", param_hint="'--json'"
        )
    shown = MetricsFormat.JSON if as_json else output_format or MetricsFormat.TABLE
    if textfile is not None and textfile.suffix != TEXTFILE_SUFFIX:
        raise typer.BadParameter(
            f"{textfile}: node-exporter's textfile collector reads only *{TEXTFILE_SUFFIX} files",
            param_hint="'--textfile'",
        )
    if textfile is not None and not textfile.parent.is_dir():
        raise typer.BadParameter(f"{textfile.parent} is no directory", param_hint="'--textfile'")
    with _handled(project, stack):
        figures = delivery_metrics.collect(
            _project(project),
            stack,
            since=window,
            now=datetime.now(UTC),
            warn=lambda message: console.print(f"[yellow]warning:[/] {message}"),
        )
    if chart is not None:
        delivery_metrics.write_chart(figures, chart)
        console.print(f"chart written to {chart}")
    if textfile is not None:
        write_textfile(figures, textfile)
        console.print(f"textfile written to {textfile}")
    if shown is MetricsFormat.JSON:
        typer.echo(delivery_metrics.to_json_text(figures))
    elif shown is MetricsFormat.OPENMETRICS:
        typer.echo(openmetrics_text(figures), nl=False)
    else:
        Console().print(_metrics_table(figures))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s"]
    return " ".join(p for p in parts if p and (p != "0s" or not any(parts[:3])))


def _metrics_table(figures: delivery_metrics.Metrics) -> Table:
    def summary(s: delivery_metrics.Summary) -> str:
        return f"median {_duration(s.median)}, mean {_duration(s.mean)} (n={s.count})" if s.count else "n/a"

    rate = figures.change_failure_rate
    table = Table(
        title=f"delivery metrics of {figures.stack}, {figures.start:%Y-%m-%d %H:%M} → {figures.end:%Y-%m-%d %H:%M} UTC"
    )
    table.add_column("metric")
    table.add_column("value")
    table.add_row("deployments", f"{figures.deployments} ({figures.deployments_per_day:.2f} per day)")
    table.add_row(
        "lead time for changes",
        summary(figures.lead_time)
        + (f"; {figures.lead_time_unknown} without a commit time" if figures.lead_time_unknown else ""),
    )
    table.add_row(
        "change failure rate",
        ("n/a" if rate is None else f"{rate:.0%}") + f" ({figures.failed_changes} of {figures.changes} changes)",
    )
    table.add_row("failed updates / verifications", f"{figures.failed_updates} / {figures.failed_verifications}")
    table.add_row("rollbacks and switch-backs / aborted canaries", f"{figures.rollbacks} / {figures.aborted_canaries}")
    table.add_row(
        "time to restore",
        summary(figures.time_to_restore) + (f"; {figures.open_incidents} still open" if figures.open_incidents else ""),
    )
    table.add_row("build duration", summary(figures.build_duration))
    return table


@app.command(epilog=EXIT_CODES)
def history(
    stack: Annotated[str, typer.Option("--stack")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    project: ProjectOption = Path("."),
) -> None:
    """The updates of STACK, newest first: promotions, canary steps, switches, rollbacks and plain updates."""
    with _handled(project, stack):
        entries = _project(project).history(stack)
    if as_json:
        typer.echo(json.dumps([entry.to_json() for entry in entries], indent=2))
        return
    table = Table(title=f"history of {stack}")
    # No version column: the file backend numbers every update 0. The image a move names in full; what the stack
    # then served, and served before, by digest.
    for column in ("when", "action", "result", "image", "then serving", "before", "by"):
        table.add_column(column, overflow="fold", no_wrap=column in ("when", "then serving", "before"))
    for entry in entries:
        table.add_row(
            entry.at.strftime("%Y-%m-%d %H:%M:%S"),
            entry.action or entry.kind,
            entry.result,
            entry.image or "",
            short_image(entry.served) if entry.served else "",
            entry.source or (short_image(entry.previous) if entry.previous else ""),
            entry.actor or "",
        )
    Console().print(table)


@app.command(epilog=EXIT_CODES)
def doctor(stack: StackOption, project: ProjectOption = Path(".")) -> None:
    """What is wrong with STACK after an interrupted run (lock, pending operations, stale config, local services),
    and the safe way out; exit 0 when nothing needs fixing."""
    report, code = run_doctor(project.resolve(), stack)
    typer.echo(report)
    raise typer.Exit(code)


@app.command("notify", epilog=EXIT_CODES)
def notify_command(
    stack: StackOption,
    event: Annotated[Event, typer.Option("--event", help="what happened")],
    image: Annotated[str | None, typer.Option("--image", help="the image it is about")] = None,
    detail: Annotated[str | None, typer.Option("--detail", help="one line on why or what")] = None,
    run_url: Annotated[str | None, typer.Option("--run-url", help="the CI run that sends it")] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Tell STACK's webhooks (dockyard:notifications) of EVENT: what the pipelines send when a job fails and once a
    deployment is verified. A webhook that cannot be reached is logged and the command still exits 0: a
    notification never fails a release."""
    dockyard = _project(project)
    with _handled(project, stack):
        view = dockyard.view(stack)
        name = dockyard.name
    if not view.env.notifications:
        console.print(f"{stack} has no dockyard:notifications: nothing to send")
        return
    release = ReleaseEvent(event, name, stack, actor(), image=image or None, detail=detail or None, run_url=run_url)
    for delivery in announce(view, release):
        outcome = "sent to" if delivery.sent else "[yellow]not sent[/] to"
        console.print(f"{event} {outcome} the {delivery.kind} webhook at {delivery.host}")


@app.command(epilog=EXIT_CODES)
def chart(
    stack: StackOption,
    push: Annotated[bool, typer.Option("--push/--no-push", help="push to the stack's registry")] = True,
    project: ProjectOption = Path("."),
) -> None:
    """helm mode: make what `pulumi up` rendered for STACK a Helm chart (image digests in values, a schema that pins
    them, secrets given at install), lint it (--strict), package it and push it to the stack's registry (OCI)."""
    dockyard = _project(project)
    with _handled(project, stack):
        made = publish_chart(dockyard.view(stack), dockyard.directory, push=push)
    console.print(f"chart {made.release.name} {made.version}: {made.directory} (linted), {made.package}")
    if made.digest:
        console.print(f"pushed {made.reference}:{made.version}@{made.digest}")
        console.print(
            f"install: helm install {made.release.name} {made.reference} --version {made.version} "
            "--namespace default --values YOUR-SECRET-VALUES.yaml --wait"
        )


@registry_app.command("prune")
def registry_prune(
    keep_days: Annotated[
        int,
        typer.Option(
            "--keep-days",
            min=1,
            help="keep what a stack's history named within this many days, and unreferenced digests built within it",
        ),
    ] = 30,
    apply: Annotated[bool, typer.Option("--apply", help="delete; without it, only list what would go and why")] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Delete the digests of the stacks' repositories that nothing references: no stack's config, no stack's last
    update, no update within --keep-days, no release tag (1.2.3, 1.2, 1); with their signatures, attestations and
    SBOMs. A dry run by default: every digest is listed, kept (and why) or to delete (and why)."""
    dockyard = _project(project)
    try:
        pruned = prune(
            dockyard,
            now=datetime.now(UTC),
            keep_days=keep_days,
            apply=apply,
            report=lambda verdict: console.print(f"deleting {verdict.repository}@{verdict.digest}"),
        )
    except DockyardError as error:
        raise _fail(error) from None
    for repository in pruned:
        Console().print(_retention_table(repository))
        gone = len(repository.deleted)
        if repository.applied:
            console.print(
                f"deleted {gone} digest(s) from {repository.repository}; the registry frees their layers at its "
                "next garbage collection"
            )
        else:
            console.print(
                f"[yellow]dry run:[/] {gone} digest(s) would be deleted from {repository.repository} "
                "(re-run with --apply)"
            )


def _retention_table(pruned: Pruned) -> Table:
    verb = "deleted" if pruned.applied else "delete"
    table = Table(title=f"retention of {pruned.repository}")
    for column in ("digest", "tags", "verdict", "why"):
        table.add_column(column, overflow="fold")
    for verdict in pruned.verdicts:
        tags = ", ".join(verdict.tags) + (f" (+{len(verdict.attached)} attached)" if verdict.attached else "")
        outcome = "[green]keep[/]" if verdict.keep else f"[red]{verb}[/]"
        table.add_row(verdict.digest.removeprefix("sha256:")[:12], tags, outcome, "; ".join(verdict.reasons))
    return table


@app.command("pr-summary")
def pr_summary_command(
    previews: Annotated[list[Path], typer.Argument(help="<stack>.json files of pulumi preview --json", exists=True)],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")] = None,
    errors: Annotated[bool, typer.Option("--errors", help="only the previews' errors, one line each")] = False,
) -> None:
    """One compact Markdown comment for a pull request from the previews of several stacks (--errors: what a
    failed preview's job log shows)."""
    loaded = pr_summary.load(previews)
    text = (
        "\n".join(f"{preview.stack}: {error}" for preview in loaded for error in preview.errors)
        if errors
        else pr_summary.render(loaded)
    )
    if output:
        output.write_text(text)
    else:
        typer.echo(text)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
