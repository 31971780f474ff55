"""GitLab CI: the pipeline model as ``.gitlab-ci.yml``.

A merge request into the default branch runs the image check and the previews; a push to the default branch runs the
chain. Each job's secrets are CI/CD variables scoped to its stack's environment (``environment:``), protected so
that only protected branches see them; ``KUBECONFIG`` is a File variable. ``resource_group`` keeps one update of a
stack at a time. The build hands on only ``IMAGE_REF`` (a dotenv report read by the jobs that need it). Keyless
signing uses ``id_tokens`` (``SIGSTORE_ID_TOKEN``, audience ``sigstore``); a cloud registry's login another ID token
whose audience the cloud's federation expects. The prod-tier job is ``when: manual`` in a protected environment:
it blocks the pipeline until someone allowed to deploy there runs it (and GitLab's deployment approvals, when the
environment has them, hold it further).

A merge request gets an environment of its own after the check: a GitLab environment ``<template>-mr/<iid>`` with a
stop job (run by GitLab when the merge request is merged or closed) and ``auto_stop_in`` the TTL; a pipeline schedule
runs the sweep.
"""

from __future__ import annotations

from typing import Any

from dockyard.pipeline.derive import preview_command, summary_command
from dockyard.pipeline.model import (
    BUILD_JOB,
    IMAGE_REF_ENV,
    PREVIEW_DIRECTORY,
    PREVIEW_JOB,
    PREVIEW_SUMMARY,
    SUMMARY_JOB,
    CiFact,
    Command,
    Job,
    Pipeline,
    RegistryLogin,
    ServiceContainer,
    Stage,
    Tool,
    mr_environment_name,
    preview_environment_name,
)
from dockyard.pipeline.render import Document, dump_yaml
from dockyard.pipeline.shell import (
    IMAGE_REF_FILE,
    block,
    cloud_login,
    install_project,
    oidc_audience,
    registry_login,
)

GITLAB_FILE = ".gitlab-ci.yml"
MAIN_RULE = '$CI_PIPELINE_SOURCE == "push" && $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH'
CHANGE_RULE = (
    '$CI_PIPELINE_SOURCE == "merge_request_event" && $CI_MERGE_REQUEST_TARGET_BRANCH_NAME == $CI_DEFAULT_BRANCH'
)
#: A pipeline schedule (CI/CD > Schedules, on the default branch): it sweeps the expired merge request environments.
SCHEDULE_RULE = '$CI_PIPELINE_SOURCE == "schedule"'
#: The ID token a cloud registry's login presents to the cloud's federation.
OIDC_TOKEN = "DOCKYARD_OIDC_TOKEN"
STAGES = ["test", "preview", *(stage.value for stage in Stage if stage != Stage.TEST)]
#: How the build job hands on the digest it pushed: a dotenv report, read by the jobs that need the build.
PUBLISH = "printf '" + IMAGE_REF_ENV + '=%s\\n\' "${variable}" > ' + IMAGE_REF_FILE


def _fact(fact: CiFact) -> str:
    if fact == CiFact.PUSH_REMOTE:
        return "origin"
    if fact == CiFact.PIPELINE_URL:
        return '"$CI_PIPELINE_URL"'
    if fact == CiFact.MERGE_REQUEST:
        return '"${CI_MERGE_REQUEST_IID:-}"'
    if fact == CiFact.SIGNING_IDENTITY:
        # Fulcio's GitLab identity: the pipeline file of this project on the default branch.
        return '"$CI_SERVER_URL/$CI_PROJECT_PATH//.gitlab-ci.yml@refs/heads/$CI_DEFAULT_BRANCH"'
    return '"$CI_SERVER_URL"'


def _environment(job: Job) -> dict[str, str] | None:
    if job.environment is None:
        return None
    if job.stage in (Stage.DEPLOY, Stage.PROMOTE):
        return {"name": job.environment}
    # Only the stack's variables are wanted, not a deployment record: build prepares, the gates access.
    return {"name": job.environment, "action": "prepare" if job.stage == Stage.BUILD else "access"}


def _needs(job: Job, pipeline: Pipeline) -> list[dict[str, Any]]:
    keeping = {name for other in pipeline.delivery for name in other.keeps}
    wanted = {name for name in job.fetches if name in keeping}
    needs = []
    for need in job.needs:
        producer = pipeline.job(need)
        artifacts = need == BUILD_JOB or bool(wanted & set(producer.keeps))
        needs.append({"job": need, "artifacts": artifacts})
    return needs


def _script(job: Job, registry: RegistryLogin) -> list[str]:
    script: list[str] = []
    if Tool.PULUMI in job.tools:
        script.append(install_project())
    if registry.kind.cloud and (job.cloud_login or job.registry is not None):
        script.append(cloud_login(registry, OIDC_TOKEN))
    if job.registry is not None:
        script.append(block(registry_login(registry), _fact))
    commands: tuple[Command, ...] = ((job.guard,) if job.guard else ()) + job.commands
    script += [block(command, _fact, PUBLISH) for command in commands]
    return script


def on_failure_trap(command: Command) -> str:
    """The job's first script item: ``command`` runs when the job's shell exits with a failure. A trap in the job's
    own shell, not ``after_script``: gitlab-ci-local (--shell-isolation) runs after_script in a fresh copy of the
    checkout, which loses the job's files (its dotenv report among them); GitLab runs ``script`` in one shell. The
    command swallows its own failure, and the shell keeps the job's exit status."""
    body = "".join(f"  {line}\n" for line in block(command, _fact).splitlines())
    return f"on_failure() {{\n{body}}}\ntrap '[ \"$?\" -eq 0 ] || on_failure' EXIT\n"


def _job(job: Job, pipeline: Pipeline) -> dict[str, Any]:
    registry = pipeline.registries[job.stack] if job.stack else pipeline.registry
    rule: dict[str, Any] = {"if": MAIN_RULE}
    if job.approval is not None:
        # Blocks the pipeline (allow_failure: false) until someone allowed to deploy to the environment runs it.
        # (A manual job cannot also be delayed: the soak gate checks the upstream's age when it is run.)
        rule["when"] = "manual"
    elif job.hold_minutes:
        # The target's promotion soak: started this long after its needs, instead of refused by the soak gate.
        rule.update({"when": "delayed", "start_in": f"{job.hold_minutes} minutes"})
    entry: dict[str, Any] = {"stage": job.stage.value, "rules": [rule], "needs": _needs(job, pipeline)}
    if job.approval is not None:
        entry["allow_failure"] = False
    environment = _environment(job)
    if environment is not None:
        entry["environment"] = environment
    if job.serialized and job.stack:
        entry["resource_group"] = f"stack-{job.stack}"
    id_tokens: dict[str, Any] = {}
    if job.oidc:
        id_tokens["SIGSTORE_ID_TOKEN"] = {"aud": "sigstore"}
    audience = oidc_audience(registry)
    if audience is not None and (job.cloud_login or job.registry is not None):
        id_tokens[OIDC_TOKEN] = {"aud": audience}
    if id_tokens:
        entry["id_tokens"] = id_tokens
    if job.services:
        entry.update(_services(job.services))
    entry["timeout"] = f"{job.timeout_minutes} minutes"
    entry["script"] = _script(job, registry)
    if job.on_failure is not None:
        entry["script"].insert(0, on_failure_trap(job.on_failure))
    artifacts: dict[str, Any] = {}
    if job.publishes_image:
        artifacts["reports"] = {"dotenv": IMAGE_REF_FILE}
    if job.keeps:
        artifacts["paths"] = list(job.keeps.values())
        artifacts["expire_in"] = "30 days" if job.stage == Stage.PROMOTE else "7 days"
    _add_test_reports(job, artifacts)
    if artifacts:
        entry["artifacts"] = artifacts
    return entry


def _services(services: tuple[ServiceContainer, ...]) -> dict[str, Any]:
    """GitLab ``services``, each reachable by its compose name (``alias``). An image the compose file lets a variable
    replace is that variable, defaulted in the job's ``variables`` (a project CI/CD variable of the same name wins).
    GitLab waits for a service's exposed ports itself; it has no health command, so the job waits for the ports."""
    variables = {service.image_variable: service.image for service in services if service.image_variable}
    entries = []
    for service in services:
        entry: dict[str, Any] = {
            "name": f"${service.image_variable}" if service.image_variable else service.image,
            "alias": service.name,
        }
        if service.environment:
            entry["variables"] = dict(service.environment)
        entries.append(entry)
    return {"services": entries, **({"variables": variables} if variables else {})}


def _add_test_reports(job: Job, artifacts: dict[str, Any]) -> None:
    if job.test_reports:
        # The merge request's and pipeline's test tab; uploaded also when a test failed the build.
        artifacts.setdefault("reports", {})["junit"] = f"{job.test_reports}/junit.xml"
        artifacts["paths"] = [*artifacts.get("paths", []), f"{job.test_reports}/"]
        artifacts["expire_in"] = artifacts.get("expire_in", "7 days")
        artifacts["when"] = "always"


def _check(pipeline: Pipeline) -> dict[str, Any]:
    job = pipeline.check
    entry: dict[str, Any] = {
        "stage": "test",
        "rules": [{"if": CHANGE_RULE}],
        "needs": [],
        "timeout": f"{job.timeout_minutes} minutes",
        "script": [block(command, _fact) for command in job.commands],
    }
    artifacts: dict[str, Any] = {}
    _add_test_reports(job, artifacts)
    if artifacts:
        entry["artifacts"] = artifacts
    return entry


def _previews(pipeline: Pipeline, python_image: str) -> dict[str, Any]:
    # The matrix sets STACK; the passphrase comes from the stack's preview environment.
    preview = preview_command(None, pipeline.preview_registries())
    return {
        PREVIEW_JOB: {
            "stage": "preview",
            "rules": [{"if": CHANGE_RULE}],
            "needs": [],
            "parallel": {"matrix": [{"STACK": list(pipeline.previews)}]},
            # Holds the stack's passphrase, backend and (where its program reads it from a variable) a registry
            # password its trust check reads signatures with; prod's is protected, so its preview waits for approvers.
            "environment": {"name": preview_environment_name("$STACK"), "action": "prepare"},
            "timeout": "20 minutes",
            "script": [install_project(), block(preview, _fact)],
            "artifacts": {"paths": [f"{PREVIEW_DIRECTORY}/"], "expire_in": "7 days", "when": "always"},
        },
        SUMMARY_JOB: {
            "stage": "preview",
            "image": python_image,
            # A failed preview is a section of the summary too.
            "rules": [{"if": CHANGE_RULE, "when": "always"}],
            "needs": [{"job": PREVIEW_JOB, "artifacts": True}],
            "timeout": "10 minutes",
            # In a virtualenv, as the other jobs: a runner whose pip puts scripts off PATH still finds dockyard.
            "script": [install_project(), block(summary_command(".venv/bin/dockyard"), _fact)],
            # Shown on the merge request; posting a note would need a write token in a job that ran its code.
            "artifacts": {"paths": [PREVIEW_SUMMARY], "expose_as": "preview summary", "expire_in": "7 days"},
        },
    }


def _review_job(job: Job, pipeline: Pipeline, rule: dict[str, Any], environment: dict[str, str]) -> dict[str, Any]:
    return {
        "stage": job.stage.value,
        "rules": [rule],
        "needs": [{"job": need, "artifacts": False} for need in job.needs],
        "environment": environment,
        "timeout": f"{job.timeout_minutes} minutes",
        "script": _script(job, pipeline.registry),
    }


def _mr_environments(pipeline: Pipeline) -> dict[str, Any]:
    """A merge request's environment is a GitLab environment of its own, ``<template>-mr/<iid>`` (its variables are
    scoped ``<template>-mr/*``): its stop job runs when the merge request is merged or closed, or after the TTL
    (``auto_stop_in``; each change restarts it), and a pipeline schedule sweeps whatever is left."""
    envs = pipeline.mr_environments
    if envs is None:
        return {}
    scope = mr_environment_name(envs.template)
    name = f"{scope}/$CI_MERGE_REQUEST_IID"
    create = {"name": name, "on_stop": envs.stop.id, "auto_stop_in": f"{envs.ttl_hours} hours"}
    # GitLab runs a stop job itself; as a manual job it never runs on its own in the merge request's pipeline.
    stop = _review_job(envs.stop, pipeline, {"if": CHANGE_RULE, "when": "manual"}, {"name": name, "action": "stop"})
    stop["allow_failure"] = True
    return {
        envs.create.id: _review_job(envs.create, pipeline, {"if": CHANGE_RULE}, create),
        envs.stop.id: stop,
        envs.sweep.id: _review_job(
            envs.sweep, pipeline, {"if": SCHEDULE_RULE}, {"name": f"{scope}/sweep", "action": "access"}
        ),
    }


def document(pipeline: Pipeline, runner_image: str, python_image: str) -> Document:
    """The ``.gitlab-ci.yml`` document."""
    jobs: dict[str, Any] = {"image-test": _check(pipeline), **_previews(pipeline, python_image)}
    jobs.update({job.id: _job(job, pipeline) for job in pipeline.delivery})
    jobs.update(_mr_environments(pipeline))
    schedule = [{"if": SCHEDULE_RULE}] if pipeline.mr_environments else []
    return {
        # No pipeline for anything else (and no duplicate branch pipeline beside a merge request's).
        "workflow": {"rules": [{"if": CHANGE_RULE}, {"if": MAIN_RULE}, *schedule]},
        "stages": STAGES,
        "default": {"image": runner_image, "interruptible": False},
        **jobs,
    }


def render(pipeline: Pipeline, runner_image: str, python_image: str) -> dict[str, str]:
    return {GITLAB_FILE: dump_yaml(document(pipeline, runner_image, python_image), GITLAB_FILE)}
