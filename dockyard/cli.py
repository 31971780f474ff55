"""``dockyard``: promote, roll back and inspect releases; summarize previews for pull requests."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dockyard import pr_summary
from dockyard.promotion import DockyardError, Outcome, Project

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
    return typer.confirm("Apply this change?", default=False)


def _report(outcome: Outcome, verb: str) -> None:
    changed = ", ".join(f"{c.op} {c.name}" for c in outcome.changes) or "no resource changes"
    if outcome.applied:
        console.print(f"[green]{verb}[/] {outcome.stack} → {outcome.image} ({changed})")
    else:
        console.print(f"[yellow]previewed only[/] {outcome.stack} → {outcome.image} ({changed}); config restored")


def _fail(error: DockyardError) -> typer.Exit:
    console.print(f"[red]error:[/] {error}")
    return typer.Exit(code=1)


@app.command()
def promote(
    source: Annotated[str, typer.Option("--from", help="stack whose deployed digest is promoted")],
    target: Annotated[str, typer.Option("--to", help="stack that receives it")],
    yes: YesOption = False,
    project: ProjectOption = Path("."),
) -> None:
    """Promote the digest SOURCE serves into TARGET: gate, write config, preview the diff, apply with --yes."""
    try:
        outcome = _project(project).promote(source, target, yes=yes, confirm=_confirm)
    except DockyardError as error:
        raise _fail(error) from None
    _report(outcome, "promoted")


@app.command()
def rollback(
    stack: Annotated[str, typer.Option("--stack", help="stack to roll back")],
    to: Annotated[
        str | None, typer.Option("--to", help="digest (sha256:...), image ref, or history version; default: previous")
    ] = None,
    yes: YesOption = False,
    project: ProjectOption = Path("."),
) -> None:
    """Roll STACK back to its previously served digest (or --to), previewed first."""
    try:
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
    for column in ("#", "when", "action", "result", "image", "from", "by"):
        table.add_column(column)
    for entry in entries:
        table.add_row(
            str(entry.version or ""),
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
