"""``dockyard``: promote, verify, roll back and inspect releases; delivery metrics; summarize previews for PRs."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from components.config import stack_file
from dockyard import metrics as delivery_metrics
from dockyard import pr_summary
from dockyard.config_guard import Terminated
from dockyard.promotion import DockyardError, Outcome, Project
from dockyard.records import LedgerError, Verification
from dockyard.verify import HEALTH_TIMEOUT, Verifier, promote_verified

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
console = Console(stderr=True, soft_wrap=True)
ProjectOption = Annotated[Path, typer.Option("--project", help="Pulumi project directory", file_okay=False)]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="apply without asking")]


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


def _report(outcome: Outcome, verb: str) -> None:
    changed = ", ".join(f"{c.op} {c.name}" for c in outcome.changes) or "no resource changes"
    if outcome.applied:
        console.print(f"[green]{verb}[/] {outcome.stack} → {outcome.image} ({changed})")
    else:
        console.print(f"[yellow]previewed only[/] {outcome.stack} → {outcome.image} ({changed}); config restored")


def _fail(error: DockyardError | LedgerError) -> typer.Exit:
    console.print(f"[red]error:[/] {error}")
    return typer.Exit(code=1)


@contextmanager
def _interrupt_reported(project: Path, stack: str) -> Iterator[None]:
    """Ctrl-C, SIGTERM or SIGHUP during a config change: one line, the shell's exit code, no traceback."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        signum = interrupt.signum if isinstance(interrupt, Terminated) else signal.SIGINT
        console.print(
            f"[yellow]interrupted[/] ({signal.Signals(signum).name}): {stack_file(project, stack).name} holds only "
            "what was applied; an update that had already started may have changed resources "
            f"(dockyard history --stack {stack})"
        )
        raise typer.Exit(code=128 + signum) from None


#: ``promote --verify`` exit codes: the promotion failed verification and was rolled back to a verified digest (1),
#: or the target is left on a release that is not verified (3).
EXIT_ROLLED_BACK = 1
EXIT_UNHEALTHY = 3


@app.command()
def promote(
    source: Annotated[str, typer.Option("--from", help="stack whose deployed digest is promoted")],
    target: Annotated[str, typer.Option("--to", help="stack that receives it")],
    yes: YesOption = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="verify TARGET after applying; on failure roll it back to its previous verified digest and exit "
            f"{EXIT_ROLLED_BACK} ({EXIT_UNHEALTHY} when no verified release could be restored)",
        ),
    ] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Promote the digest SOURCE serves into TARGET: gate, write config, preview the diff, apply with --yes."""
    dockyard = _project(project)
    if not verify:
        try:
            with _interrupt_reported(project, target):
                outcome = dockyard.promote(source, target, yes=yes, confirm=_confirm)
        except DockyardError as error:
            raise _fail(error) from None
        _report(outcome, "promoted")
        return
    try:
        with _interrupt_reported(project, target):
            result = promote_verified(
                dockyard,
                Verifier(dockyard),
                source,
                target,
                yes=yes,
                confirm=_confirm,
                on_failure=_print_checks,
            )
    except (DockyardError, LedgerError) as error:
        raise _fail(error) from None
    _report(result.promotion, "promoted")
    if result.verification is None:
        return
    if result.verification.passed:
        _print_checks(result.verification)
        return
    failed = "; ".join(f"{c.name}: {c.detail}" for c in result.verification.failed_checks)
    console.print(f"[red]verification of {target} failed[/] on {result.promotion.image}: {failed}")
    if result.rollback is not None:
        _report(result.rollback, "rolled back")
        for change in result.rollback.changes:
            console.print(f"  {change.op} {change.name}: {', '.join(change.properties) or '(no property diff)'}")
    if result.restored is not None:
        _print_checks(result.restored)
    if result.problem:
        console.print(f"[red]error:[/] {result.problem}")
    if result.healthy and result.rollback is not None:
        console.print(
            f"[red]promotion {source} → {target} failed verification ({failed}); "
            f"{target} was rolled back to its verified release {result.rollback.image}[/]"
        )
        raise typer.Exit(code=EXIT_ROLLED_BACK)
    console.print(f"[red]promotion {source} → {target} failed verification ({failed}); {target} is NOT healthy[/]")
    raise typer.Exit(code=EXIT_UNHEALTHY)


def _print_checks(record: Verification) -> None:
    table = Table(title=f"verification of {record.stack} ({record.mode}): {'passed' if record.passed else 'FAILED'}")
    for column in ("check", "result", "detail"):
        table.add_column(column)
    for check in record.checks:
        table.add_row(check.name, "[green]ok[/]" if check.passed else "[red]FAILED[/]", check.detail)
    console.print(table)
    console.print(f"{record.image} verified by {record.actor} at {record.at.isoformat(timespec='seconds')}")


@app.command()
def verify(
    stack: Annotated[str, typer.Option("--stack", help="stack whose deployment is checked")],
    timeout: Annotated[
        float, typer.Option("--timeout", help="seconds the health path may take to answer 200 (local run)")
    ] = HEALTH_TIMEOUT,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Check that what STACK deployed is healthy, and record the outcome where promote reads it.

    Rendered stacks: the manifests pin the stack's image_ref in every Deployment, and the image, pulled from the
    registry and run here, answers its health path and the smoke checks. Cluster stacks: the rollout is complete with
    that digest on every ready pod, and the health path answers through the Service or Ingress.
    """
    dockyard = _project(project)
    try:
        record = Verifier(dockyard, health_timeout=timeout).verify(stack)
    except (DockyardError, LedgerError) as error:
        raise _fail(error) from None
    if as_json:
        typer.echo(json.dumps(record.to_json(), indent=2))
    else:
        _print_checks(record)
    if not record.passed:
        failed = ", ".join(check.name for check in record.failed_checks)
        console.print(f"[red]verification of {stack} failed:[/] {failed}")
        raise typer.Exit(code=1)


@app.command()
def metrics(
    stack: Annotated[str, typer.Option("--stack")],
    since: Annotated[str, typer.Option("--since", help="window: 30d, 12h, 2w, 90m")] = "30d",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    chart: Annotated[
        Path | None, typer.Option("--chart", help="write a PNG of deployments and failures per day")
    ] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Deployment frequency, lead time, change failure rate, time to restore and build duration of STACK."""
    try:
        window = delivery_metrics.parse_since(since)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    try:
        figures = delivery_metrics.collect(
            _project(project),
            stack,
            since=window,
            now=datetime.now(UTC),
            warn=lambda message: console.print(f"[yellow]warning:[/] {message}"),
        )
    except (DockyardError, LedgerError) as error:
        raise _fail(error) from None
    if chart is not None:
        delivery_metrics.write_chart(figures, chart)
        console.print(f"chart written to {chart}")
    if as_json:
        typer.echo(delivery_metrics.to_json_text(figures))
        return
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
    table.add_row("rollbacks", str(figures.rollbacks))
    table.add_row(
        "time to restore",
        summary(figures.time_to_restore) + (f"; {figures.open_incidents} still open" if figures.open_incidents else ""),
    )
    table.add_row("build duration", summary(figures.build_duration))
    return table


@app.command()
def rollback(
    stack: Annotated[str, typer.Option("--stack", help="stack to roll back")],
    to: Annotated[
        str | None, typer.Option("--to", help="digest (sha256:...) or image ref; default: the previously served image")
    ] = None,
    yes: YesOption = False,
    project: ProjectOption = Path("."),
) -> None:
    """Roll STACK back to its previously served digest (or --to), previewed first."""
    try:
        with _interrupt_reported(project, stack):
            outcome = _project(project).rollback(stack, to=to, yes=yes, confirm=_confirm)
    except DockyardError as error:
        raise _fail(error) from None
    _report(outcome, "rolled back")


@app.command()
def history(
    stack: Annotated[str, typer.Option("--stack")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    project: ProjectOption = Path("."),
) -> None:
    """The updates of STACK, newest first: promotions, rollbacks and plain updates with the image served."""
    try:
        entries = _project(project).history(stack)
    except DockyardError as error:
        raise _fail(error) from None
    if as_json:
        rows = [
            {**entry.__dict__, "started": entry.started.isoformat(), "ended": entry.ended and entry.ended.isoformat()}
            for entry in entries
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"history of {stack}")
    # No version column: the file backend numbers every update 0.
    for column in ("when", "action", "result", "image", "from", "by"):
        table.add_column(column, overflow="fold", no_wrap=column == "when")
    for entry in entries:
        table.add_row(
            (entry.ended or entry.started).strftime("%Y-%m-%d %H:%M:%S"),
            entry.action or entry.kind,
            entry.result,
            entry.image or "",
            entry.source or "",
            entry.actor or "",
        )
    Console().print(table)


@app.command("pr-summary")
def pr_summary_command(
    previews: Annotated[list[Path], typer.Argument(help="<stack>.json files of pulumi preview --json", exists=True)],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")] = None,
) -> None:
    """One compact Markdown comment for a pull request from the previews of several stacks."""
    text = pr_summary.render(pr_summary.load(previews))
    if output:
        output.write_text(text)
    else:
        typer.echo(text)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
