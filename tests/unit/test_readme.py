"""The README stays true: its config reference is generated from the models, and it opens with the two commands."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dockyard import cli
from dockyard.releases.errors import EXIT_DONE, EXIT_REFUSED, EXIT_UNHEALTHY
from scripts.config_reference import README, render_readme
from tests.stacks import PROJECT


def test_config_reference_is_up_to_date() -> None:
    current = README.read_text()
    assert current == render_readme(current), "run: python -m scripts.config_reference --write"


def test_readme_opens_with_the_main_job_and_the_tests() -> None:
    lines = README.read_text().splitlines()
    fence = lines.index("```bash")
    assert lines[fence + 1].startswith("./scripts/main-job.sh")
    assert lines[fence + 2].startswith("./scripts/test.sh")


def test_exit_codes_are_the_same_in_help_and_readme() -> None:
    shown = " ".join(CliRunner().invoke(cli.app, ["--help"], terminal_width=200).output.split())
    readme = " ".join(README.read_text().split())
    for code, meaning in ((EXIT_DONE, "done"), (EXIT_REFUSED, "refused"), (EXIT_UNHEALTHY, "left unhealthy")):
        assert f"{code} {meaning}" in shown
        assert f"**{code}** {meaning}" in readme


@pytest.mark.parametrize(
    ("example", "fence"),
    [("examples/python-app/__main__.py", "python"), ("examples/yaml-app/Pulumi.yaml", "yaml")],
)
def test_the_readme_shows_the_examples_the_engine_tests_run(example: str, fence: str) -> None:
    """The README's component examples are the programs tests/engine runs, word for word."""
    code = (PROJECT / example).read_text().rstrip()
    assert f"```{fence}\n{code}\n```" in README.read_text()
