"""One problem type for every config error, with one renderer: the stack config, the pipeline derived from the
stacks and the CI config all list every problem at once as ``<where>: <key path>: <found>; <allowed>``."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.model.config import ConfigError, parse_environment
from dockyard.model.problems import ConfigProblemsError, Problem, render
from dockyard.pipeline.derive import derive_pipeline
from dockyard.pipeline.model import PipelineConfigError
from dockyard.pipeline.settings import CiConfigError, read_ci_config


def test_a_problem_names_where_the_key_what_was_found_and_what_is_allowed() -> None:
    problems = [
        Problem("prod", "dockyard:kubernetes.replicas", "found 1", "allowed in prod: 2 or more"),
        Problem(None, "image.build", "set in dev, local", "allowed: one building stack"),
    ]
    assert render(problems, "invalid") == (
        "invalid (2 problem(s)):\n"
        "prod: dockyard:kubernetes.replicas: found 1; allowed in prod: 2 or more\n"
        "image.build: set in dev, local; allowed: one building stack"
    )


def test_the_three_config_errors_share_the_type_and_list_every_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as stack:
        parse_environment("dev", {"tier": "nope", "replicas": 3})
    with pytest.raises(PipelineConfigError) as pipeline:
        derive_pipeline({})
    (tmp_path / "Pulumi.yaml").write_text("name: x\nconfig:\n  dockyard-ci:systems:\n    value: [travis, gitlab]\n")
    with pytest.raises(CiConfigError) as ci:
        read_ci_config(tmp_path)
    for raised in (stack, pipeline, ci):
        assert isinstance(raised.value, ConfigProblemsError)
        assert raised.value.problems == [str(problem) for problem in raised.value.found]
        assert str(raised.value).endswith("\n".join(raised.value.problems))
    assert len(stack.value.problems) == 5, "every problem at once"
    assert stack.value.problems[-1] == (
        "dev: dockyard:replicas: unknown key; "
        "allowed keys: github, image, kubernetes, mergeRequest, notifications, promotion, registry, signing, tier"
    )
    assert ci.value.problems[0].startswith("Pulumi.yaml: dockyard-ci:systems[0]: found 'travis'; allowed: ")
