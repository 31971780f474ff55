"""The README stays true: its config reference is generated from the models, and it opens with the two commands."""

from __future__ import annotations

from scripts.config_reference import README, render_readme


def test_config_reference_is_up_to_date() -> None:
    current = README.read_text()
    assert current == render_readme(current), "run: python -m scripts.config_reference --write"


def test_readme_opens_with_the_main_job_and_the_tests() -> None:
    lines = README.read_text().splitlines()
    fence = lines.index("```bash")
    assert lines[fence + 1].startswith("./scripts/main-job.sh")
    assert lines[fence + 2].startswith("./scripts/test.sh")
