"""CircleCI: the pipeline model as ``.circleci/config.yml`` (version 2.1).

Branches other than the default run the image check and the previews (the ``change`` workflow); the default branch
runs the chain (``delivery``). Each job's secrets come from its stack's context, ``dockyard-<stack>`` (restrict
prod's to its approvers' group); an ``approval`` job stands before the prod-tier job; a ``serial-group`` per
stack keeps one update of it at a time. No orb is used: orbs are pinned
by version only, so every tool comes from the runner image, pinned by digest like every image here. The build hands
on only ``IMAGE_REF``, through the workspace. Keyless signing and cloud logins use the job's OIDC token
(``circleci run oidc get`` / ``$CIRCLE_OIDC_TOKEN_V2``), issued in jobs that use a context.

A branch with an open pull request also gets its own environment after the check (``mr-env``, context
``dockyard-<template>-mr``). CircleCI starts no pipeline when a pull request is merged or closed, so there is no stop
job: a scheduled pipeline (``mr-env-sweep``) destroys each environment once its TTL has passed.
"""

from __future__ import annotations

from typing import Any

from dockyard.pipeline.derive import preview_command, summary_command
from dockyard.pipeline.model import (
    BUILD_JOB,
    IMAGE_REF_ENV,
    PIP_INSTALL,
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
)
from dockyard.pipeline.render import Document, dump_yaml
from dockyard.pipeline.shell import IMAGE_REF_FILE, block, cloud_login, install_project, registry_login

CIRCLECI_FILE = ".circleci/config.yml"
WORKSPACE = "workspace"
PUBLISH = (
    f"mkdir -p {WORKSPACE} && printf 'export {IMAGE_REF_ENV}=%s\\n' \"${{variable}}\" > {WORKSPACE}/{IMAGE_REF_FILE}"
)
#: The job's OIDC token, issued when the job uses a context (its audience is the organization's ID).
OIDC_TOKEN = "CIRCLE_OIDC_TOKEN_V2"
#: Assigned, then exported: ``export X="$(...)"`` would hide a failed token request behind export's own success.
SIGSTORE_TOKEN = (
    'SIGSTORE_ID_TOKEN="$(circleci run oidc get --claims \'{"aud": "sigstore"}\')"\nexport SIGSTORE_ID_TOKEN\n'
)


def context(stack: str) -> str:
    """The context holding ``stack``'s secrets."""
    return f"dockyard-{stack}"


def _fact(fact: CiFact) -> str:
    if fact == CiFact.PUSH_REMOTE:
        return "origin"
    if fact == CiFact.PIPELINE_URL:
        return '"$CIRCLE_BUILD_URL"'
    if fact == CiFact.MERGE_REQUEST:
        # Set only while the branch has an open pull request: its URL, which ends in the number.
        return '"${CIRCLE_PULL_REQUEST##*/}"'
    if fact == CiFact.SIGNING_IDENTITY:
        # Fulcio's CircleCI identity: the project's pipeline definition.
        return '"https://circleci.com/api/v2/projects/$CIRCLE_PROJECT_ID/pipeline-definitions/$CIRCLE_PIPELINE_DEFINITION_ID"'
    return '"https://oidc.circleci.com/org/$CIRCLE_ORGANIZATION_ID"'


def _run(name: str, command: str, timeout_minutes: int = 10, *, when: str | None = None) -> dict[str, Any]:
    step = {"name": name, "command": command, "no_output_timeout": f"{timeout_minutes}m"}
    return {"run": step | ({"when": when} if when else {})}


def _steps(job: Job, registry: RegistryLogin) -> list[Any]:
    minutes = job.timeout_minutes
    steps: list[Any] = ["checkout"]
    if job.hold_minutes:
        # CircleCI has no delayed start: prod's wait timer and the target's promotion soak are waited out here.
        steps.insert(
            0, _run("Wait out the soak and wait timer", f"sleep {job.hold_minutes * 60}\n", minutes + job.hold_minutes)
        )
    prelude = ""
    if BUILD_JOB in job.needs:
        steps.append({"attach_workspace": {"at": WORKSPACE}})
        # The digest the build pushed: the only value that travels between jobs.
        prelude += f". {WORKSPACE}/{IMAGE_REF_FILE}\n"
    if job.fetches:
        steps.append(_run("Take the gate's report", f"cp {WORKSPACE}/*.json .\n"))
    if job.oidc:
        prelude += SIGSTORE_TOKEN
    if Tool.PULUMI in job.tools:
        steps.append(_run("Install the Pulumi program and dockyard", install_project(), minutes))
    if Tool.KUBECONFIG in job.tools:
        steps.append(
            _run(
                "Write the kubeconfig",
                'umask 077\nprintf \'%s\' "$KUBECONFIG_CONTENT" > "$HOME/kubeconfig"\n'
                'echo \'export KUBECONFIG="$HOME/kubeconfig"\' >> "$BASH_ENV"\n',
            )
        )
    if registry.kind.cloud and (job.cloud_login or job.registry is not None):
        steps.append(_run("Log in to the cloud (OIDC)", cloud_login(registry, OIDC_TOKEN)))
    commands: tuple[Command, ...] = ((job.guard,) if job.guard else ()) + job.commands
    if job.registry is not None:
        commands = (registry_login(registry), *commands)
    steps += [_run(command.name, prelude + block(command, _fact, PUBLISH), minutes) for command in commands]
    kept = list(job.keeps.values())
    if job.publishes_image:
        steps.append({"persist_to_workspace": {"root": WORKSPACE, "paths": [IMAGE_REF_FILE]}})
    if kept and job.stage == Stage.SCAN:
        steps.append(_run("Keep the report for the signing job", f"cp {' '.join(kept)} {WORKSPACE}/\n"))
        steps.append({"persist_to_workspace": {"root": WORKSPACE, "paths": kept}})
    steps += [{"store_artifacts": {"path": path}} for path in kept]
    steps += _test_reports(job)
    if job.on_failure is not None:
        steps.append(_run(job.on_failure.name, prelude + block(job.on_failure, _fact), when="on_fail"))
    return steps


def _test_reports(job: Job) -> list[Any]:
    if not job.test_reports:
        return []
    # CircleCI runs these upload steps also after a failed step: a failing test is shown in the Tests tab.
    return [{"store_test_results": {"path": job.test_reports}}, {"store_artifacts": {"path": job.test_reports}}]


def _secondary(service: ServiceContainer) -> dict[str, Any]:
    """A secondary container, reachable by its compose name. CircleCI reads no variable in an image, so a
    ``${VAR:-default}`` image is its default; it has no health check, so the job waits for the ports."""
    return {
        "image": service.image,
        "name": service.name,
        **({"environment": dict(service.environment)} if service.environment else {}),
    }


def _job(job: Job, pipeline: Pipeline, runner_image: str) -> dict[str, Any]:
    registry = pipeline.registries[job.stack] if job.stack else pipeline.registry
    return {
        # The job runs in the first image; its services are the secondary containers after it.
        "docker": [{"image": runner_image}, *(_secondary(service) for service in job.services)],
        "resource_class": "medium",
        "steps": _steps(job, registry),
    }


def _check(pipeline: Pipeline, runner_image: str) -> dict[str, Any]:
    return {
        "docker": [{"image": runner_image}],
        "resource_class": "medium",
        "steps": [
            "checkout",
            *(_run(c.name, block(c, _fact)) for c in pipeline.check.commands),
            *_test_reports(pipeline.check),
        ],
    }


def _previews(pipeline: Pipeline, runner_image: str, python_image: str) -> dict[str, Any]:
    # The job's parameter (one of the stack names) sets STACK.
    preview = preview_command(None, pipeline.preview_registries())
    script = block(preview, _fact)
    return {
        PREVIEW_JOB: {
            "parameters": {"stack": {"type": "enum", "enum": list(pipeline.previews)}},
            "docker": [{"image": runner_image}],
            "resource_class": "medium",
            "environment": {"STACK": "<< parameters.stack >>"},
            "steps": [
                "checkout",
                _run("Install the Pulumi program and dockyard", install_project()),
                _run(preview.name, script),
                {"persist_to_workspace": {"root": ".", "paths": [f"{PREVIEW_DIRECTORY}/*"]}},
            ],
        },
        SUMMARY_JOB: {
            "docker": [{"image": python_image}],
            "resource_class": "small",
            "steps": [
                "checkout",
                {"attach_workspace": {"at": "."}},
                _run("Install dockyard", PIP_INSTALL + "\n"),
                _run("Summarize", block(summary_command(), _fact)),
                {"store_artifacts": {"path": PREVIEW_SUMMARY}},
            ],
        },
    }


def _only(branch: str) -> dict[str, Any]:
    return {"filters": {"branches": {"only": [branch]}}}


def _workflows(pipeline: Pipeline) -> dict[str, Any]:
    ignore = {"filters": {"branches": {"ignore": [pipeline.default_branch]}}}
    change: list[Any] = [{"image-test": dict(ignore)}]
    for stack in pipeline.previews:
        change.append(
            {
                PREVIEW_JOB: {
                    "name": f"{PREVIEW_JOB}-{stack}",
                    "stack": stack,
                    # The preview context holds only the stack's passphrase.
                    "context": [f"{context(stack)}-preview"],
                    **ignore,
                }
            }
        )
    change.append({SUMMARY_JOB: {"requires": [f"{PREVIEW_JOB}-{stack}" for stack in pipeline.previews], **ignore}})
    delivery: list[Any] = []
    for job in pipeline.delivery:
        requires = list(job.needs)
        if job.approval is not None:
            approval = f"approve-{job.id}"
            delivery.append(
                {approval: {"type": "approval", "requires": list(job.needs), **_only(pipeline.default_branch)}}
            )
            requires.append(approval)
        entry: dict[str, Any] = {}
        if requires:
            entry["requires"] = requires
        if job.environment is not None:
            entry["context"] = [context(job.environment)]
        if job.serialized and job.stack:
            # One update of a stack at a time across pipelines; a queued one waits.
            entry["serial-group"] = f"<< pipeline.project.slug >>/stack-{job.stack}"
        entry.update(_only(pipeline.default_branch))
        delivery.append({job.id: entry})
    workflows: dict[str, dict[str, Any]] = {"change": {"jobs": change}, "delivery": {"jobs": delivery}}
    envs = pipeline.mr_environments
    if envs is None:
        return workflows
    change.append(
        {
            envs.create.id: {
                "requires": list(envs.create.needs),
                "context": [context(str(envs.create.environment))],
                # One update of a branch's environment at a time; a newer push's waits for it.
                "serial-group": "<< pipeline.project.slug >>/mr-env-<< pipeline.git.branch >>",
                **ignore,
            }
        }
    )
    # A scheduled pipeline (project settings: Triggers, on the default branch) sweeps; it runs nothing else.
    for workflow in workflows.values():
        workflow["when"] = {"not": _SCHEDULED}
    sweep = {envs.sweep.id: {"context": [context(str(envs.sweep.environment))], **_only(pipeline.default_branch)}}
    return {**workflows, envs.sweep.id: {"when": _SCHEDULED, "jobs": [sweep]}}


#: A pipeline a schedule started.
_SCHEDULED = {"equal": ["scheduled_pipeline", "<< pipeline.trigger_source >>"]}


def document(pipeline: Pipeline, runner_image: str, python_image: str) -> Document:
    """The ``.circleci/config.yml`` document."""
    jobs: dict[str, Any] = {"image-test": _check(pipeline, runner_image)}
    jobs.update(_previews(pipeline, runner_image, python_image))
    jobs.update({job.id: _job(job, pipeline, runner_image) for job in pipeline.delivery})
    if pipeline.mr_environments is not None:
        # No stop job: CircleCI starts no pipeline when a pull request is merged or closed; the environment goes
        # when its TTL has passed, at the next scheduled sweep.
        envs = pipeline.mr_environments
        jobs.update({job.id: _job(job, pipeline, runner_image) for job in (envs.create, envs.sweep)})
    return {"version": 2.1, "jobs": jobs, "workflows": _workflows(pipeline)}


def render(pipeline: Pipeline, runner_image: str, python_image: str) -> dict[str, str]:
    return {CIRCLECI_FILE: dump_yaml(document(pipeline, runner_image, python_image), CIRCLECI_FILE)}
