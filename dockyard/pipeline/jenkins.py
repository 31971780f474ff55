"""Jenkins: the pipeline model as a declarative ``Jenkinsfile`` (multibranch pipeline).

A change request into the default branch runs the image check and the previews; the default branch runs the chain,
stage by stage (``when { branch ... }``). Secrets are Jenkins credentials bound per stage with ``credentials()`` in
``environment {}`` (ID ``<stack>-<secret>``; the kubeconfig a Secret file) or ``withCredentials`` for the cloud's OIDC
token; every script is a single-quoted Groovy string, so the shell, not Groovy, expands them, and no ``sh`` traces.
The prod-tier stage waits on ``input`` (its ``submitter`` the stack's reviewers) before its agent starts;
``lock('stack-<stack>')`` (Lockable Resources) keeps one update of a stack at a time. The build hands on only
``IMAGE_REF`` (``env.IMAGE_REF`` read from the file it wrote).

Jenkins has no OIDC identity the public Sigstore accepts, so where other systems sign keyless the Jenkinsfile signs
with a cosign key pair held as credentials (``cosign-private-key``, ``cosign-password``, ``cosign-public-key``) and
verifies with the public key. A cloud registry's login takes an ID token from the OpenID Connect Provider plugin's
credential ``<stack>-oidc-token`` (its audience set to what the cloud's federation expects).

A change request also gets its own environment after the check (stage ``mr-env``, credentials ``<template>-mr-*``).
A multibranch pipeline runs nothing when a change request is merged or closed (it only drops its job), so there is no
stop stage: the default branch's hourly timer build runs the sweep alone, which destroys each environment once its
TTL has passed.
"""

from __future__ import annotations

import shlex

from dockyard.pipeline.derive import preview_command, summary_command
from dockyard.pipeline.model import (
    INTEGRATION_TAG,
    JUNIT_CONVERTER,
    PIP_INSTALL,
    PREVIEW_DIRECTORY,
    PREVIEW_JOB,
    PREVIEW_SUMMARY,
    SECRET_KUBECONFIG,
    SUMMARY_JOB,
    CiFact,
    Command,
    ComposeEnvironment,
    Job,
    Pipeline,
    RegistryLogin,
    Secret,
    Signing,
    Tool,
    preview_environment_name,
)
from dockyard.pipeline.render import header
from dockyard.pipeline.shell import block, cloud_login, install_project, registry_login

JENKINS_FILE = "Jenkinsfile"
IMAGE_REF_PATH = "image-ref"
PUBLISH = "printf '%s' \"${variable}\" > " + IMAGE_REF_PATH
OIDC_TOKEN = "DOCKYARD_OIDC_TOKEN"
#: The key pair that replaces keyless signing here (see the module docstring), by environment variable.
COSIGN_CREDENTIALS = {
    "COSIGN_KEY": "cosign-private-key",
    "COSIGN_PASSWORD": "cosign-password",
    "COSIGN_PUBLIC_KEY": "cosign-public-key",
}


def credential_id(stack: str, secret: str) -> str:
    """The Jenkins credential that holds ``secret`` of ``stack``, e.g. ``prod-pulumi-config-passphrase``."""
    return f"{stack}-{secret.lower().replace('_', '-')}"


def _fact(fact: CiFact) -> str:
    if fact == CiFact.PUSH_REMOTE:
        return "origin"
    if fact == CiFact.PIPELINE_URL:
        return '"$BUILD_URL"'
    if fact == CiFact.MERGE_REQUEST:
        # A multibranch change request's number (empty on a branch build).
        return '"${CHANGE_ID:-}"'
    raise AssertionError(f"{fact}: Jenkins signs with a key pair, no keyless identity")  # pragma: no cover


def groovy(text: str) -> str:
    """``text`` as a single-quoted Groovy string (no interpolation; only backslashes and quotes escaped)."""
    escaped = text.replace("\\", "\\\\")
    if "\n" not in text:
        return "'" + escaped.replace("'", "\\'") + "'"
    # Inside '''...''' only a run of three quotes (or one just before the end) needs escaping.
    escaped = escaped.replace("'''", "\\'\\'\\'")
    if escaped.endswith("'"):
        escaped = escaped[:-1] + "\\'"
    return "'''" + escaped + "'''"


def _sh(name: str, script: str) -> str:
    # A shebang stops Jenkins' default `sh -xe`, whose trace would print every exported value.
    return (
        f"sh(label: {groovy(name)}, script: {groovy('#!/bin/bash' + chr(10) + 'set -euo pipefail' + chr(10) + script)})"
    )


def _key_pair(command: Command) -> Command:
    """A keyless signing command, signing and verifying with the key pair instead."""
    script = (
        command.script.replace("cosign sign --yes", 'cosign sign --yes --key "$COSIGN_KEY"')
        .replace("cosign attest --yes", 'cosign attest --yes --key "$COSIGN_KEY"')
        .replace(
            'trust=(--certificate-identity "$IDENTITY" --certificate-oidc-issuer "$ISSUER")',
            'trust=(--key "$COSIGN_PUBLIC_KEY")',
        )
    )
    env = {name: value for name, value in command.env.items() if not isinstance(value, CiFact)}
    return Command(command.name.replace("(keyless)", "(key pair)"), script, env, command.publishes)


def _indent(lines: list[str], depth: int) -> list[str]:
    return [("    " * depth + line) if line else "" for line in lines]


def _agent(image: str) -> list[str]:
    return ["agent {", "    docker {", f"        image {groovy(image)}", "    }", "}"]


def _environment(bindings: dict[str, str]) -> list[str]:
    if not bindings:
        return []
    return ["environment {", *(f"    {name} = credentials({groovy(cid)})" for name, cid in bindings.items()), "}"]


def _bindings(job: Job) -> dict[str, str]:
    stack = job.environment
    bindings: dict[str, str] = {}
    if stack is not None:
        for secret in job.secrets:
            bindings[secret] = credential_id(stack, secret)
        if Tool.KUBECONFIG in job.tools:
            # A Secret file credential: the variable holds the file's path, which is what kubectl wants.
            bindings[SECRET_KUBECONFIG] = credential_id(stack, SECRET_KUBECONFIG)
    if job.signing == Signing.KEYLESS:
        bindings.update(COSIGN_CREDENTIALS)
    return bindings


#: Every compose step's first lines: the compose CLI the agent has (podman-compose beside podman, else Docker's
#: plugin), and a project name of this build's own (``BUILD_TAG`` is unique per job and build), so ``down`` removes
#: exactly what ``up`` started, also when two builds run at once.
_COMPOSE = (
    "compose() {\n"
    '  if command -v podman-compose > /dev/null; then podman-compose "$@"; else docker compose "$@"; fi\n'
    "}\n"
    "project=\"dockyard-it-$(printf '%s' \"$BUILD_TAG\" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9_-' '-')\"\n"
)


def _compose_steps(job: Job, compose: ComposeEnvironment) -> list[str]:
    """Jenkins runs the app's compose file itself: its services up (detached), the tests service run in their
    network (its environment is the file's own), the report written from the events also when a test failed."""
    services = " ".join(service.name for service in job.services)
    reports = str(job.test_reports)
    script = (
        _COMPOSE
        + f"export COMPOSE_FILE={shlex.quote(compose.file)}\n"
        # The digest CI pins for an image the file names by tag, unless the agent sets the file's variable itself.
        + "".join(
            f'export {service.image_variable}="${{{service.image_variable}:-{service.image}}}"\n'
            for service in job.services
            if service.image_variable
        )
        + (f'compose --project-name "$project" up --detach {services}\n' if services else "")
        + f"mkdir -p {shlex.quote(reports)}\n"
        + "status=0\n"
        # The tests service's own command is replaced by the event stream (the Dockerfile stage has the toolchain).
        + f'compose --project-name "$project" run --rm -T {shlex.quote(compose.tests)} '
        + f"go test -tags {INTEGRATION_TAG} -count=1 -json ./... > {shlex.quote(reports)}/go-test.json || status=$?\n"
        + f"python3 {JUNIT_CONVERTER} {shlex.quote(reports)}\n"
        + 'exit "$status"\n'
    )
    return [_sh(f"Run the integration tests ({compose.file})", script)]


def _compose_down(compose: ComposeEnvironment) -> str:
    script = (
        _COMPOSE
        + f"export COMPOSE_FILE={shlex.quote(compose.file)}\n"
        + 'compose --project-name "$project" down --volumes --remove-orphans || true\n'
    )
    return _sh("Take the integration environment down", script)


def _steps(job: Job, registry: RegistryLogin) -> list[str]:
    steps: list[str] = []
    if job.compose is not None:
        return _compose_steps(job, job.compose)
    if job.hold_minutes:
        # Prod's wait timer (time to stop an approved release) and the target's promotion soak.
        steps.append(f"sleep(time: {job.hold_minutes}, unit: 'MINUTES')")
    if job.fetches:
        steps += [f"unstash {groovy(name)}" for name in job.fetches]
    if Tool.PULUMI in job.tools:
        steps.append(_sh("Install the Pulumi program and dockyard", install_project()))
    cloud = registry.kind.cloud and (job.cloud_login or job.registry is not None)
    commands: tuple[Command, ...] = ((job.guard,) if job.guard else ()) + job.commands
    if job.signing == Signing.KEYLESS:
        commands = tuple(_key_pair(command) for command in commands)
    if job.registry is not None:
        commands = (registry_login(registry), *commands)
    shells = [_sh(command.name, block(command, _fact, PUBLISH)) for command in commands]
    if cloud:
        login = _sh("Log in to the cloud (OIDC)", cloud_login(registry, OIDC_TOKEN))
        credential = credential_id(str(job.environment), "oidc-token")
        steps.append(f"withCredentials([string(credentialsId: {groovy(credential)}, variable: '{OIDC_TOKEN}')]) {{")
        steps += _indent([login], 1)
        steps.append("}")
    steps += shells
    if job.publishes_image:
        steps += ["script {", f"    env.IMAGE_REF = readFile({groovy(IMAGE_REF_PATH)}).trim()", "}"]
    for name, path in job.keeps.items():
        if job.stage.value == "scan":
            steps.append(f"stash name: {groovy(name)}, includes: {groovy(path)}")
        else:
            steps.append(f"archiveArtifacts artifacts: {groovy(path)}, fingerprint: true")
    return steps


#: A build the pipeline's own timer started (``triggers``): it sweeps, and runs nothing else.
TIMER = "triggeredBy 'TimerTrigger'"


def _stage(job: Job, pipeline: Pipeline, runner_image: str, condition: list[str] | None = None) -> list[str]:
    """A stage of ``job``; ``condition``: its ``when`` conditions (default: the default branch, not the timer)."""
    registry = pipeline.registries[job.stack] if job.stack else pipeline.registry
    when = ["when {", "    beforeAgent true"]
    if job.approval is not None:
        when.append("    beforeInput true")
    if condition is None:
        condition = [f"branch {groovy(pipeline.default_branch)}"]
        condition += [f"not {{ {TIMER} }}"] if pipeline.mr_environments else []
    when += [*(f"    {line}" for line in condition), "}"]
    lines = [f"stage({groovy(job.id)}) {{", *_indent(when, 1)]
    if job.approval is not None:
        submitters = ",".join(job.approval.reviewers)
        lines += _indent(
            [
                "input {",
                f"    message {groovy(job.name + '?')}",
                f"    ok {groovy('Deploy')}",
                f"    submitter {groovy(submitters)}",
                "}",
            ],
            1,
        )
    options = [f"timeout(time: {job.timeout_minutes}, unit: 'MINUTES')"]
    if job.serialized and job.stack:
        options.append(f"lock({groovy('stack-' + job.stack)})")
    lines += _indent(_agent(runner_image), 1)
    lines += _indent(_environment(_bindings(job)), 1)
    lines += _indent(["options {", *(f"    {option}" for option in options), "}"], 1)
    lines += _indent(["steps {", *_indent(_steps(job, registry), 1), "}"], 1)
    lines += _indent(_post(job), 1)
    lines.append("}")
    return lines


def _post(job: Job) -> list[str]:
    """The stage's one ``post`` block: its test reports always (a failing test is recorded on the build's page), its
    webhooks told on failure (on the stage's agent, with its credentials bound; a failure there changes nothing)."""
    conditions = []
    if job.test_reports or job.compose is not None:
        conditions.append("always {")
        if job.test_reports:
            conditions += [
                f"    junit allowEmptyResults: true, testResults: {groovy(job.test_reports + '/junit.xml')}",
                f"    archiveArtifacts artifacts: {groovy(job.test_reports + '/**')}, allowEmptyArchive: true",
            ]
        if job.compose is not None:
            # Whatever happened: no service container outlives the stage.
            conditions.append(f"    {_compose_down(job.compose)}")
        conditions.append("}")
    if job.on_failure is not None:
        conditions += ["failure {", f"    {_sh(job.on_failure.name, block(job.on_failure, _fact))}", "}"]
    return ["post {", *_indent(conditions, 1), "}"] if conditions else []


def _change_stages(pipeline: Pipeline, runner_image: str, python_image: str) -> list[str]:
    change = ["when {", "    beforeAgent true", f"    changeRequest target: {groovy(pipeline.default_branch)}", "}"]
    check = pipeline.check
    lines = [f"stage({groovy(check.id)}) {{", *_indent(change, 1), *_indent(_agent(runner_image), 1)]
    lines += _indent([f"options {{ timeout(time: {check.timeout_minutes}, unit: 'MINUTES') }}"], 1)
    lines += _indent(["steps {", *(f"    {_sh(c.name, block(c, _fact))}" for c in check.commands), "}"], 1)
    lines += _indent(_post(check), 1)
    lines.append("}")
    lines += [f"stage({groovy('previews')}) {{", *_indent(change, 1), "    parallel {"]
    for stack in pipeline.previews:
        preview = preview_command(stack, pipeline.preview_registries([stack]))
        # Every secret the preview reads, from the stack's preview credentials (the passphrase, the backend, and
        # a registry password its program reads from a variable).
        bindings = {
            value.name: credential_id(preview_environment_name(stack), value.name)
            for value in preview.env.values()
            if isinstance(value, Secret)
        }
        stage = [
            f"stage({groovy(f'{PREVIEW_JOB} ({stack})')}) {{",
            *_indent(_agent(runner_image), 1),
            *_indent(_environment(bindings), 1),
            "    options { timeout(time: 20, unit: 'MINUTES') }",
            "    steps {",
            f"        {_sh('Install the Pulumi program and dockyard', install_project())}",
            f"        {_sh(preview.name, block(preview, _fact))}",
            f"        stash name: {groovy('preview-' + stack)}, includes: {groovy(PREVIEW_DIRECTORY + '/*')}",
            "    }",
            "}",
        ]
        lines += _indent(stage, 2)
    lines += ["    }", "}"]
    summary = [
        f"stage({groovy(SUMMARY_JOB)}) {{",
        *_indent(change, 1),
        *_indent(_agent(python_image), 1),
        "    options { timeout(time: 10, unit: 'MINUTES') }",
        "    steps {",
        *(f"        unstash {groovy('preview-' + stack)}" for stack in pipeline.previews),
        f"        {_sh('Install dockyard', PIP_INSTALL + chr(10))}",
        f"        {_sh('Summarize', block(summary_command(), _fact))}",
        f"        archiveArtifacts artifacts: {groovy(PREVIEW_SUMMARY)}",
        "    }",
        "}",
    ]
    return lines + summary


def _mr_environment_stages(pipeline: Pipeline, runner_image: str) -> list[str]:
    """A change request's environment, made or updated after the check, and the hourly sweep on the default branch.

    No stop stage: a multibranch pipeline runs nothing when a change request is merged or closed (its job is only
    removed), so the environment goes when its TTL has passed, at the next sweep.
    """
    envs = pipeline.mr_environments
    if envs is None:
        return []
    change = [f"changeRequest target: {groovy(pipeline.default_branch)}"]
    sweep = [f"branch {groovy(pipeline.default_branch)}", TIMER]
    return _stage(envs.create, pipeline, runner_image, change) + _stage(envs.sweep, pipeline, runner_image, sweep)


def document(pipeline: Pipeline, runner_image: str, python_image: str) -> str:
    """The ``Jenkinsfile`` text (without its header)."""
    stages = _change_stages(pipeline, runner_image, python_image)
    for job in pipeline.delivery:
        stages += _stage(job, pipeline, runner_image)
    stages += _mr_environment_stages(pipeline, runner_image)
    # Only the default branch's job has the timer (every branch and change request runs this file).
    main = groovy(pipeline.default_branch)
    timer = ["    triggers {", f"        cron(env.BRANCH_NAME == {main} ? 'H * * * *' : '')", "    }"]
    lines = [
        "pipeline {",
        "    agent none",
        "    options {",
        "        disableConcurrentBuilds()",
        "        buildDiscarder(logRotator(numToKeepStr: '50'))",
        "    }",
        *(timer if pipeline.mr_environments else []),
        "    stages {",
        *_indent(stages, 2),
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def render(pipeline: Pipeline, runner_image: str, python_image: str) -> dict[str, str]:
    return {JENKINS_FILE: header(JENKINS_FILE, "//") + document(pipeline, runner_image, python_image)}
