"""The merge request environment in each CI system's own way: made after the check on a change, destroyed where the
system says the merge request closed, swept on a schedule; none where the template's trust policy would refuse the
digest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dockyard.model.config import EnvironmentConfig, parse_environment
from dockyard.pipeline import circleci, github, gitlab, jenkins
from dockyard.pipeline.derive import derive_pipeline
from dockyard.pipeline.model import MR_ENV_JOB, MR_ENV_STOP_JOB, MR_ENV_SWEEP_JOB, Pipeline, Trigger
from tests.unit.test_registry_kinds import PYTHON, RUNNER

ROOT = Path(__file__).resolve().parents[2]


def test_the_model_makes_the_building_stack_the_template_with_the_default_ttl(pipeline: Pipeline) -> None:
    envs = pipeline.mr_environments
    assert envs is not None
    assert envs.template == "dev"
    assert envs.ttl_hours == 72
    assert [job.trigger for job in (envs.create, envs.stop, envs.sweep)] == [
        Trigger.CHANGE,
        Trigger.CHANGE_CLOSED,
        Trigger.SCHEDULE,
    ]
    # Its secrets come from a scope merge request pipelines may see, never dev's own protected environment.
    assert {job.environment for job in (envs.create, envs.stop, envs.sweep)} == {"dev-mr"}
    assert envs.create.needs == ("image-test",)
    create = "".join(command.script for command in envs.create.commands)
    assert '--ttl "$TTL"' in create
    assert envs.create.commands[-1].env["TTL"] == "72h"


def test_a_template_with_a_trust_policy_gets_no_merge_request_environments(
    stacks: dict[str, EnvironmentConfig],
) -> None:
    signing = {"signing": {"publicKeyFile": "keys/dockyard-local-cosign.pub"}}
    dev = stacks["dev"].model_dump(by_alias=True, exclude_none=True, mode="json")
    signed = {**stacks, "dev": parse_environment("dev", {**dev, **signing})}
    assert derive_pipeline(signed).mr_environments is None
    files = {**gitlab.render(derive_pipeline(signed), RUNNER, PYTHON), **github.render(derive_pipeline(signed))}
    assert MR_ENV_JOB not in files[".gitlab-ci.yml"]
    assert ".github/workflows/mr-env.yml" not in files


def test_gitlab_gives_the_environment_a_stop_job_and_an_auto_stop(pipeline: Pipeline) -> None:
    document = gitlab.document(pipeline, RUNNER, PYTHON)
    create, stop, sweep = (document[job] for job in (MR_ENV_JOB, MR_ENV_STOP_JOB, MR_ENV_SWEEP_JOB))
    assert create["environment"] == {
        "name": "dev-mr/$CI_MERGE_REQUEST_IID",
        "on_stop": MR_ENV_STOP_JOB,
        "auto_stop_in": "72 hours",
    }
    assert create["rules"] == [{"if": gitlab.CHANGE_RULE}]
    assert create["needs"] == [{"job": "image-test", "artifacts": False}]
    assert stop["environment"] == {"name": "dev-mr/$CI_MERGE_REQUEST_IID", "action": "stop"}
    # GitLab runs it on merge, close or expiry; as a manual job it never blocks the merge request's pipeline.
    assert stop["rules"] == [{"if": gitlab.CHANGE_RULE, "when": "manual"}]
    assert stop["allow_failure"] is True
    assert 'dockyard env destroy --mr "$MR" --from "$TEMPLATE"' in "".join(stop["script"])
    assert sweep["rules"] == [{"if": gitlab.SCHEDULE_RULE}]
    assert {"if": gitlab.SCHEDULE_RULE} in document["workflow"]["rules"]
    assert 'export MR="${CI_MERGE_REQUEST_IID:-}"' in "".join(create["script"])


def test_github_destroys_on_a_closed_pull_request_and_sweeps_on_a_schedule(pipeline: Pipeline) -> None:
    document = github.documents(pipeline)[github.MR_ENV_WORKFLOW]
    assert document["on"]["pull_request"]["types"] == ["opened", "synchronize", "reopened", "closed"]
    assert document["on"]["schedule"] == [{"cron": github.SWEEP_SCHEDULE}]
    # A newer push waits for a running update instead of cancelling it (the engine's lock would stay).
    assert document["concurrency"]["cancel-in-progress"] is False
    jobs = document["jobs"]
    assert "github.event.action != 'closed'" in jobs[MR_ENV_JOB]["if"]
    assert "github.event.action == 'closed'" in jobs[MR_ENV_STOP_JOB]["if"]
    assert jobs[MR_ENV_SWEEP_JOB]["if"] == "github.event_name == 'schedule'"
    for job in jobs.values():
        assert job["environment"] == "dev-mr"
    # What destroys runs the default branch's code, whatever the closed pull request held.
    for job_id in (MR_ENV_STOP_JOB, MR_ENV_SWEEP_JOB):
        assert jobs[job_id]["steps"][0]["with"]["ref"] == "main"
    numbers = [step["env"]["MR"] for step in jobs[MR_ENV_JOB]["steps"] if "MR" in step.get("env", {})]
    assert numbers == ["${{ github.event.pull_request.number }}"] * 2


def _circleci_jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: settings for entry in workflow["jobs"] for name, settings in entry.items()}


def test_circleci_sweeps_in_a_scheduled_pipeline_that_runs_nothing_else(pipeline: Pipeline) -> None:
    document = circleci.document(pipeline, RUNNER, PYTHON)
    workflows = document["workflows"]
    scheduled = {"equal": ["scheduled_pipeline", "<< pipeline.trigger_source >>"]}
    assert workflows[MR_ENV_SWEEP_JOB]["when"] == scheduled
    assert workflows["change"]["when"] == workflows["delivery"]["when"] == {"not": scheduled}
    create = _circleci_jobs(workflows["change"])[MR_ENV_JOB]
    assert create["requires"] == ["image-test"]
    assert create["context"] == ["dockyard-dev-mr"]
    # No close event: no stop job, the TTL and the sweep take the environment down.
    assert MR_ENV_STOP_JOB not in document["jobs"]
    assert "${CIRCLE_PULL_REQUEST##*/}" in str(document["jobs"][MR_ENV_JOB])


def test_jenkins_makes_it_on_a_change_request_and_sweeps_on_the_default_branchs_timer(pipeline: Pipeline) -> None:
    text = jenkins.document(pipeline, RUNNER, PYTHON)
    assert "cron(env.BRANCH_NAME == 'main' ? 'H * * * *' : '')" in text
    mr_env = text[text.index(f"stage('{MR_ENV_JOB}')") : text.index(f"stage('{MR_ENV_SWEEP_JOB}')")]
    assert "changeRequest target: 'main'" in mr_env
    assert "credentials('dev-mr-pulumi-config-passphrase')" in mr_env
    sweep = text[text.index(f"stage('{MR_ENV_SWEEP_JOB}')") :]
    assert "branch 'main'" in sweep
    assert "triggeredBy 'TimerTrigger'" in sweep
    # A timer build of the default branch runs the sweep alone, not the chain again.
    build = text[text.index("stage('build')") : text.index("stage('scan')")]
    assert "not { triggeredBy 'TimerTrigger' }" in build
    assert f"stage('{MR_ENV_STOP_JOB}')" not in text
