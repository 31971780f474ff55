"""The generated pipelines tell the stacks' webhooks: a delivery job that fails sends ``build-failed`` (the build) or
``deploy-failed`` (a deployment or promotion) from its failure path only, and the deploy job sends ``deployed`` once
its verification passed. Each renderer's document is read back into the two paths (what runs when every step before
passed, what runs only once the job failed) and the same checks run on all four."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dockyard.model.notifications import Event
from dockyard.pipeline import circleci, github, gitlab, jenkins
from dockyard.pipeline.derive import derive_pipeline, read_stack_environments
from dockyard.pipeline.model import Pipeline
from tests.unit.test_registry_kinds import PYTHON, RUNNER

ROOT = Path(__file__).resolve().parents[2]
#: Delivery job → the event its failure path sends, and the stack whose webhooks it tells.
FAILURES = {
    "build": (Event.BUILD_FAILED, "dev"),
    "deploy-dev": (Event.DEPLOY_FAILED, "dev"),
    "promote-staging": (Event.DEPLOY_FAILED, "staging"),
    "promote-prod": (Event.DEPLOY_FAILED, "prod"),
}
#: (the shell run when every step before passed, the shell run only once the job failed), by job.
Paths = dict[str, tuple[str, str]]


def _github(pipeline: Pipeline) -> Paths:
    def text(step: dict[str, object]) -> str:
        env = step.get("env") or {}
        assert isinstance(env, dict)
        return "".join(f"export {name}={value}\n" for name, value in env.items()) + str(step.get("run", ""))

    jobs = github.documents(pipeline)[github.DELIVERY_WORKFLOW]["jobs"]
    paths = {}
    for job_id, job in jobs.items():
        steps = [step for step in job["steps"] if "run" in step]
        assert {step.get("if") for step in steps} <= {None, "failure()"}
        paths[job_id] = (
            "\n".join(text(step) for step in steps if "if" not in step),
            "\n".join(text(step) for step in steps if step.get("if") == "failure()"),
        )
    return paths


def _gitlab(pipeline: Pipeline) -> Paths:
    document = gitlab.document(pipeline, RUNNER, PYTHON)
    paths = {}
    for job_id in (job.id for job in pipeline.delivery):
        script = document[job_id]["script"]
        # The failure path is a function the first item's EXIT trap calls only on a non-zero status.
        trap = "trap '[ \"$?\" -eq 0 ] || on_failure' EXIT\n"
        failure = (
            script[0].removeprefix("on_failure() {\n").removesuffix("}\n" + trap) if script[0].endswith(trap) else ""
        )
        paths[job_id] = ("\n".join(script[1:] if failure else script), failure)
    return paths


def _circleci(pipeline: Pipeline) -> Paths:
    document = circleci.document(pipeline, RUNNER, PYTHON)
    paths = {}
    for job_id in (job.id for job in pipeline.delivery):
        runs = [step["run"] for step in document["jobs"][job_id]["steps"] if isinstance(step, dict) and "run" in step]
        assert {run.get("when") for run in runs} <= {None, "on_fail"}
        paths[job_id] = (
            "\n".join(run["command"] for run in runs if "when" not in run),
            "\n".join(run["command"] for run in runs if run.get("when") == "on_fail"),
        )
    return paths


def _jenkins(pipeline: Pipeline) -> Paths:
    text = jenkins.document(pipeline, RUNNER, PYTHON)
    heads = list(re.finditer(r"^ {8}stage\('([^']+)'\) \{$", text, re.MULTILINE))
    paths = {}
    for index, head in enumerate(heads):
        end = heads[index + 1].start() if index + 1 < len(heads) else len(text)
        body = text[head.end() : end]
        steps, _, post = body.partition("\n            post {\n")
        _, _, failure = post.partition("                failure {\n")  # beside `always` (the test reports)
        paths[head[1]] = (steps, failure)
    return paths


READERS = {"github": _github, "gitlab": _gitlab, "circleci": _circleci, "jenkins": _jenkins}


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return derive_pipeline(read_stack_environments(ROOT))


def _notifies(shell: str, event: Event, stack: str) -> bool:
    return "dockyard notify" in shell and f"EVENT={event.value}" in shell and f"STACK={stack}" in shell


@pytest.mark.parametrize("system", list(READERS))
def test_a_failed_delivery_job_tells_its_stacks_webhooks_from_its_failure_path_only(
    system: str, pipeline: Pipeline
) -> None:
    paths = READERS[system](pipeline)
    for job_id, (event, stack) in FAILURES.items():
        passed, failed = paths[job_id]
        assert _notifies(failed, event, stack), f"{system} {job_id}: no {event} notification when it fails"
        assert event.value not in passed, f"{system} {job_id}: {event} sent when nothing failed"
        # A notification that cannot be sent is reported, never the job's (or the release's) failure.
        assert "|| echo" in failed


@pytest.mark.parametrize("system", list(READERS))
def test_the_deploy_job_tells_its_webhooks_once_the_deployment_is_verified(system: str, pipeline: Pipeline) -> None:
    passed, failed = READERS[system](pipeline)["deploy-dev"]
    assert _notifies(passed, Event.DEPLOYED, "dev")
    assert passed.index("dockyard verify") < passed.index("EVENT=deployed")
    assert "deployed" not in failed.replace("deploy-failed", "")


def test_the_failure_notification_can_decrypt_the_webhooks(pipeline: Pipeline) -> None:
    """``dockyard notify`` decrypts ``dockyard:notifications`` with the engine: the stack's passphrase and backend."""
    jobs = {job.id: job for job in pipeline.delivery}
    github_paths = _github(pipeline)
    for job_id in FAILURES:
        on_failure = jobs[job_id].on_failure
        assert on_failure is not None
        assert {"PULUMI_CONFIG_PASSPHRASE", "PULUMI_BACKEND_URL"} <= set(on_failure.env)
        # GitHub hands a step only the secrets its env names (the shell renderers bind them for the whole job).
        assert "export PULUMI_CONFIG_PASSPHRASE=${{ secrets.PULUMI_CONFIG_PASSPHRASE }}" in github_paths[job_id][1]
