"""GitHub Actions workflows of the delivery pipeline, as pure functions of the stack configs.

``ci.yml`` tests, scans, pushes, signs and attests the image of the one stack that builds; ``preview.yml`` previews
every GitHub-enabled stack on a pull request and keeps one summary comment; ``deploy.yml`` runs ``pulumi up`` per
stack, each job in the GitHub environment named after its stack (prod's reviewers gate its job).

The documents are plain dicts; :func:`render_workflow_files` serializes them with a generated-file header.
``python -m scripts.generate_workflows`` writes them to ``.github/workflows/`` and ``--check`` reports drift.

Rules every document follows (and ``tests/unit/test_workflows.py`` checks):

- every ``uses:`` is a commit SHA from :mod:`components.pins`;
- top-level ``permissions: {}``; each job asks only for what it uses;
- no ``${{ secrets.* }}`` / ``${{ github.event.* }}`` inside ``run:``: values reach scripts through ``env:``;
- ``actions/checkout`` never persists the token; every job has a timeout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from components.config import (
    NAMESPACE,
    SECRET_KEYS,
    EnvironmentConfig,
    RegistryKind,
    Tier,
    parse_environment,
)
from components.pins import TRIVY_VERSION, uses, version_of

Document = dict[str, Any]
Step = dict[str, Any]

WORKFLOW_DIRECTORY = ".github/workflows"
REGENERATE_COMMAND = "python -m scripts.generate_workflows"
DEFAULT_BRANCH = "main"
RELEASE_TAGS = "v*"
RUNNER = "ubuntu-24.04"
PYTHON_VERSION = "3.11"
#: The CLI matching the ``pulumi`` SDK pinned in pyproject.toml (they are released together).
PULUMI_CLI_VERSION = "3.260.0"
POLICY_PACK = "policies"
#: Hidden marker of the one preview comment per pull request (the sticky-comment action's header).
PREVIEW_COMMENT_HEADER = "dockyard-preview"

# Names shared with components.github_ci, which creates the secrets and variables these workflows read.
SECRET_REGISTRY_PASSWORD = "REGISTRY_PASSWORD"
SECRET_KUBECONFIG = "KUBECONFIG"
SECRET_PASSPHRASE = "PULUMI_CONFIG_PASSPHRASE"
#: Token with admin rights on the repository for the pulumi-github provider: it cannot be created by the stack
#: that needs it, so an administrator stores it once in each stack environment (bootstrap).
SECRET_GITHUB_ADMIN_TOKEN = "DOCKYARD_GITHUB_TOKEN"
VARIABLE_REGISTRY_HOST = "REGISTRY_HOST"
VARIABLE_IMAGE_NAME = "IMAGE_NAME"
VARIABLE_REGISTRY_USERNAME = "REGISTRY_USERNAME"
VARIABLE_STACK = "PULUMI_STACK"
VARIABLE_NAMESPACE = "K8S_NAMESPACE"
#: Repository variable: where the Pulumi state lives (``pulumi login`` URL).
VARIABLE_BACKEND_URL = "PULUMI_BACKEND_URL"

CI_TEST_JOB = "image-test"
CI_PUBLISH_JOB = "image-publish"
PREVIEW_JOB = "preview"
SUMMARY_JOB = "pr-summary"
COMMENT_JOB = "pr-comment"


class WorkflowConfigError(ValueError):
    """The stack configs do not describe one pipeline (e.g. two stacks build, or stacks use two repositories)."""


def _expr(expression: str) -> str:
    return "${{ " + expression + " }}"


def preview_environment(stack: str) -> str:
    """The GitHub environment a pull request's preview of ``stack`` runs in (it holds only the passphrase)."""
    return f"{stack}-preview"


# --- selecting stacks -------------------------------------------------------------------------------------------


def github_stacks(stacks: Mapping[str, EnvironmentConfig]) -> dict[str, EnvironmentConfig]:
    """The stacks CI runs for (``github.enabled``), in name order; they must share one repository."""
    enabled = {name: stacks[name] for name in sorted(stacks) if stacks[name].github.enabled}
    repositories = {env.github.repository for env in enabled.values()}
    if len(repositories) > 1:
        raise WorkflowConfigError(
            f"github.repository differs between stacks ({', '.join(sorted(map(str, repositories)))}); "
            "allowed: one repository for every GitHub-enabled stack"
        )
    return enabled


def building_stack(stacks: Mapping[str, EnvironmentConfig]) -> tuple[str, EnvironmentConfig] | None:
    """The one GitHub-enabled stack with ``image.build``, whose image ``ci.yml`` builds; None if no stack builds."""
    builders = [(name, env) for name, env in github_stacks(stacks).items() if env.image.build is not None]
    if len(builders) > 1:
        raise WorkflowConfigError(
            f"image.build is set in {', '.join(name for name, _ in builders)}; allowed: one building stack, "
            "the others receive its digest by promotion"
        )
    return builders[0] if builders else None


def required_checks(stacks: Mapping[str, EnvironmentConfig]) -> list[str]:
    """Status checks branch protection requires on ``main``: the image test and the non-prod previews.

    A prod-tier preview waits for the environment's reviewers before it may decrypt prod's secrets, so requiring
    it would hold every pull request on a release manager; prod is gated at deploy time instead.
    """
    checks = [CI_TEST_JOB] if building_stack(stacks) is not None else []
    checks += [f"{PREVIEW_JOB} ({name})" for name, env in github_stacks(stacks).items() if env.tier != Tier.PROD]
    return checks


# --- shared steps -----------------------------------------------------------------------------------------------


def _checkout() -> Step:
    return {
        "name": "Check out",
        "uses": uses("actions/checkout"),
        # The token stays out of .git/config, where any later step (or uploaded artifact) could read it.
        "with": {"persist-credentials": False},
    }


def _python_and_pulumi() -> list[Step]:
    return [
        {"name": "Set up Python", "uses": uses("actions/setup-python"), "with": {"python-version": PYTHON_VERSION}},
        # Without a command the action only installs the CLI; the commands below run it directly.
        {"name": "Install Pulumi CLI", "uses": uses("pulumi/actions"), "with": {"pulumi-version": PULUMI_CLI_VERSION}},
        {
            "name": "Install the Pulumi program",
            "run": "python -m venv .venv\n.venv/bin/python -m pip install --no-cache-dir .\n",
        },
    ]


# --- ci.yml -----------------------------------------------------------------------------------------------------


def _image_steps(env: EnvironmentConfig, *, publish: bool) -> list[Step]:
    build = env.image.build
    assert build is not None
    image = _expr(f"vars.{VARIABLE_IMAGE_NAME}") if publish else env.registry.image_name
    context = build.context
    dockerfile = f"{context}/{build.dockerfile}"
    cache = f"{image}:buildcache"
    common: dict[str, Any] = {
        "context": context,
        "file": dockerfile,
        "platforms": build.platform,
    }
    if build.build_args:
        common["build-args"] = "".join(f"{key}={value}\n" for key, value in sorted(build.build_args.items()))
    cache_to = {"cache-to": f"type=registry,ref={cache},mode=max"} if publish else {}
    ghcr = env.registry.kind == RegistryKind.GHCR
    if ghcr:
        # GHCR accepts the job's own short-lived token; packages: write (publish) or read (PR) scopes it.
        login = {
            "registry": env.registry.host,
            "username": _expr("github.actor"),
            "password": _expr("secrets.GITHUB_TOKEN"),
        }
    else:
        login = {
            "registry": _expr(f"vars.{VARIABLE_REGISTRY_HOST}"),
            "username": _expr(f"vars.{VARIABLE_REGISTRY_USERNAME}"),
            "password": _expr(f"secrets.{SECRET_REGISTRY_PASSWORD}"),
        }
    steps: list[Step] = [_checkout()]
    if publish:
        steps.append(
            {
                "name": "Compute image tags",
                "id": "meta",
                "uses": uses("docker/metadata-action"),
                "with": {
                    "images": image,
                    "tags": "type=sha,format=long\n"
                    "type=semver,pattern={{version}}\n"
                    "type=semver,pattern={{major}}.{{minor}}\n"
                    "type=ref,event=branch\n",
                },
            }
        )
    steps.append({"name": "Set up Buildx", "uses": uses("docker/setup-buildx-action")})
    if publish or ghcr:
        steps.append({"name": "Log in to the registry", "uses": uses("docker/login-action"), "with": login})
    if build.test_target:
        steps.append(
            {
                "name": f"Run the tests (target {build.test_target})",
                "uses": uses("docker/build-push-action"),
                "with": {
                    **common,
                    "target": build.test_target,
                    "cache-from": f"type=registry,ref={cache}-test\ntype=registry,ref={cache}\n",
                    **({"cache-to": f"type=registry,ref={cache}-test,mode=max"} if publish else {}),
                    "push": False,
                },
            }
        )
    scan_ref = "dockyard-ci:scan"
    steps += [
        {
            "name": f"Build the image (target {build.target})",
            "uses": uses("docker/build-push-action"),
            "with": {
                **common,
                "target": build.target,
                "cache-from": f"type=registry,ref={cache}",
                **cache_to,
                "load": True,
                "push": False,
                "tags": scan_ref,
            },
        },
        {
            "name": "Scan the image",
            "uses": uses("aquasecurity/trivy-action"),
            "with": {
                "image-ref": scan_ref,
                "version": TRIVY_VERSION,
                "severity": "CRITICAL,HIGH",
                "ignore-unfixed": True,
                "exit-code": "1",
                # A cache restored into a release job could be poisoned by any branch's run.
                "cache": "false",
            },
        },
    ]
    if not publish:
        return steps
    digest = _expr("steps.push.outputs.digest")
    steps += [
        {
            "name": "Push the image",
            "id": "push",
            "uses": uses("docker/build-push-action"),
            "with": {
                **common,
                "target": build.target,
                "cache-from": f"type=registry,ref={cache}",
                **cache_to,
                "push": True,
                "tags": _expr("steps.meta.outputs.tags"),
                "labels": _expr("steps.meta.outputs.labels"),
                # BuildKit attaches an SPDX SBOM and full SLSA provenance to the pushed index.
                "sbom": True,
                "provenance": "mode=max",
            },
        },
        {"name": "Install cosign", "uses": uses("sigstore/cosign-installer")},
        {
            "name": "Sign the image (keyless)",
            "env": {"IMAGE": image, "DIGEST": digest},
            "run": 'cosign sign --yes "${IMAGE}@${DIGEST}"\n',
        },
        {
            "name": "Attest build provenance",
            "uses": uses("actions/attest-build-provenance"),
            "with": {"subject-name": image, "subject-digest": digest, "push-to-registry": True},
        },
    ]
    return steps


def ci_workflow(stack: str, env: EnvironmentConfig) -> Document:
    """``ci.yml`` for the building stack: test and scan on pull requests; also push, sign and attest on main/tags."""
    if env.image.build is None:
        raise WorkflowConfigError(f"{stack}: image.build is not set; allowed: the stack that builds the image")
    ghcr = env.registry.kind == RegistryKind.GHCR
    test_permissions = {"contents": "read", **({"packages": "read"} if ghcr else {})}
    publish_job: dict[str, Any] = {
        "name": CI_PUBLISH_JOB,
        "if": "github.event_name == 'push'",
        "runs-on": RUNNER,
        "timeout-minutes": 45,
        # Its variables (and, off GHCR, the registry password) are the building stack's.
        "environment": stack,
        "permissions": {
            "contents": "read",
            **({"packages": "write"} if ghcr else {}),
            "id-token": "write",
            "attestations": "write",
        },
        "steps": _image_steps(env, publish=True),
    }
    return {
        "name": "ci",
        "on": {
            "push": {"branches": [DEFAULT_BRANCH], "tags": [RELEASE_TAGS]},
            "pull_request": {"branches": [DEFAULT_BRANCH]},
        },
        "permissions": {},
        "concurrency": {
            "group": "ci-" + _expr("github.ref"),
            "cancel-in-progress": _expr("github.event_name == 'pull_request'"),
        },
        "jobs": {
            CI_TEST_JOB: {
                "name": CI_TEST_JOB,
                "if": "github.event_name == 'pull_request'",
                "runs-on": RUNNER,
                "timeout-minutes": 30,
                "permissions": test_permissions,
                "steps": _image_steps(env, publish=False),
            },
            CI_PUBLISH_JOB: publish_job,
        },
    }


# --- preview.yml ------------------------------------------------------------------------------------------------


def preview_workflow(stacks: Mapping[str, EnvironmentConfig]) -> Document:
    """``preview.yml``: ``pulumi preview`` of every GitHub-enabled stack, a Markdown summary, one sticky comment."""
    names = list(github_stacks(stacks))
    if not names:
        raise WorkflowConfigError("no stack has github.enabled: true; allowed: at least one")
    same_repository = "github.event.pull_request.head.repo.full_name == github.repository"
    preview_steps: list[Step] = [
        _checkout(),
        *_python_and_pulumi(),
        {
            "name": "Preview",
            "env": {
                "STACK": _expr("matrix.stack"),
                SECRET_PASSPHRASE: _expr(f"secrets.{SECRET_PASSPHRASE}"),
                VARIABLE_BACKEND_URL: _expr(f"vars.{VARIABLE_BACKEND_URL}"),
            },
            "run": (f'pulumi preview --stack "$STACK" --policy-pack {POLICY_PACK} --json > "preview-$STACK.json"\n'),
        },
        {
            "name": "Keep the preview for the summary",
            "if": _expr("!cancelled()"),
            "uses": uses("actions/upload-artifact"),
            "with": {
                "name": "preview-" + _expr("matrix.stack"),
                "path": "preview-" + _expr("matrix.stack") + ".json",
                "if-no-files-found": "error",
                "retention-days": 7,
            },
        },
    ]
    summary_steps: list[Step] = [
        _checkout(),
        {"name": "Set up Python", "uses": uses("actions/setup-python"), "with": {"python-version": PYTHON_VERSION}},
        {"name": "Install dockyard", "run": "python -m pip install --no-cache-dir .\n"},
        {
            "name": "Collect the previews",
            "uses": uses("actions/download-artifact"),
            "with": {"pattern": "preview-*", "merge-multiple": True, "path": "previews"},
        },
        {"name": "Summarize", "run": "dockyard pr-summary previews/*.json > pr-summary.md\n"},
        {
            "name": "Keep the summary for the comment",
            "uses": uses("actions/upload-artifact"),
            "with": {"name": "pr-summary", "path": "pr-summary.md", "if-no-files-found": "error", "retention-days": 7},
        },
    ]
    # The job that may write to the pull request runs no code from it: it only posts the summary file.
    comment_steps: list[Step] = [
        {"name": "Fetch the summary", "uses": uses("actions/download-artifact"), "with": {"name": "pr-summary"}},
        {
            "name": "Post or update the summary comment",
            "uses": uses("marocchino/sticky-pull-request-comment"),
            "with": {"header": PREVIEW_COMMENT_HEADER, "path": "pr-summary.md"},
        },
    ]
    return {
        "name": "preview",
        "on": {"pull_request": {"branches": [DEFAULT_BRANCH]}},
        "permissions": {},
        "concurrency": {
            "group": "preview-" + _expr("github.event.pull_request.number"),
            "cancel-in-progress": True,
        },
        "jobs": {
            PREVIEW_JOB: {
                "name": f"{PREVIEW_JOB} (" + _expr("matrix.stack") + ")",
                # Pull requests from forks get no secrets, so their previews could only fail.
                "if": same_repository,
                "runs-on": RUNNER,
                "timeout-minutes": 20,
                "permissions": {"contents": "read"},
                "environment": preview_environment(_expr("matrix.stack")),
                "strategy": {"fail-fast": False, "matrix": {"stack": names}},
                "steps": preview_steps,
            },
            SUMMARY_JOB: {
                "name": SUMMARY_JOB,
                "needs": PREVIEW_JOB,
                "if": _expr(f"!cancelled() && {same_repository}"),
                "runs-on": RUNNER,
                "timeout-minutes": 10,
                "permissions": {"contents": "read"},
                "steps": summary_steps,
            },
            COMMENT_JOB: {
                "name": COMMENT_JOB,
                "needs": SUMMARY_JOB,
                "if": same_repository,
                "runs-on": RUNNER,
                "timeout-minutes": 5,
                "permissions": {"pull-requests": "write"},
                "steps": comment_steps,
            },
        },
    }


# --- deploy.yml -------------------------------------------------------------------------------------------------


def deploy_job_id(stack: str) -> str:
    """The job id that deploys ``stack``."""
    return f"deploy-{stack}"


def _deploy_condition(env: EnvironmentConfig) -> str:
    if env.tier == Tier.PROD:
        return f"startsWith(github.ref, 'refs/tags/{RELEASE_TAGS.rstrip('*')}')"
    return f"github.ref == 'refs/heads/{DEFAULT_BRANCH}'"


def _deploy_job(stack: str, env: EnvironmentConfig, needs: str | None) -> dict[str, Any]:
    up_env: dict[str, str] = {
        "STACK": stack,
        SECRET_PASSPHRASE: _expr(f"secrets.{SECRET_PASSPHRASE}"),
        VARIABLE_BACKEND_URL: _expr(f"vars.{VARIABLE_BACKEND_URL}"),
        # pulumi-github reads GITHUB_TOKEN: the stack manages its own environment, secrets and variables.
        "GITHUB_TOKEN": _expr(f"secrets.{SECRET_GITHUB_ADMIN_TOKEN}"),
    }
    if env.registry.password_env:
        # The stack reads its registry password from this variable instead of dockyard:registryPassword.
        up_env[env.registry.password_env] = _expr(f"secrets.{SECRET_REGISTRY_PASSWORD}")
    job: dict[str, Any] = {
        "name": f"deploy {stack}",
        "if": _deploy_condition(env),
        "runs-on": RUNNER,
        "timeout-minutes": 60,
        "environment": stack,
        "concurrency": {"group": f"deploy-{stack}", "cancel-in-progress": False},
        "permissions": {"contents": "read"},
        "steps": [
            _checkout(),
            *_python_and_pulumi(),
            {
                "name": "Write the kubeconfig",
                "env": {"KUBECONFIG_CONTENT": _expr(f"secrets.{SECRET_KUBECONFIG}")},
                "run": (
                    'if [ -n "$KUBECONFIG_CONTENT" ]; then\n'
                    "  umask 077\n"
                    '  printf \'%s\' "$KUBECONFIG_CONTENT" > "$RUNNER_TEMP/kubeconfig"\n'
                    '  echo "KUBECONFIG=$RUNNER_TEMP/kubeconfig" >> "$GITHUB_ENV"\n'
                    "fi\n"
                ),
            },
            {
                "name": "Deploy",
                "env": up_env,
                "run": f'pulumi up --yes --stack "$STACK" --policy-pack {POLICY_PACK}\n',
            },
        ],
    }
    if needs is not None:
        job = {"needs": needs, **job}
    return job


def deploy_workflow(stacks: Mapping[str, EnvironmentConfig]) -> Document:
    """``deploy.yml``: a push to main deploys the dev and staging tiers in promotion order; a ``v*`` tag deploys prod.

    A stack waits for its ``promotion.upstream`` when both deploy on the same trigger (staging after dev); prod's
    upstream deploys from main, so prod's job stands alone and its environment's reviewers gate it.
    """
    enabled = github_stacks(stacks)
    if not enabled:
        raise WorkflowConfigError("no stack has github.enabled: true; allowed: at least one")
    jobs: dict[str, Any] = {}
    for name in _promotion_order(enabled):
        env = enabled[name]
        upstream = env.promotion.upstream
        same_trigger = (
            upstream in enabled and _deploy_condition(enabled[upstream]) == _deploy_condition(env)
            if upstream is not None
            else False
        )
        jobs[deploy_job_id(name)] = _deploy_job(
            name, env, deploy_job_id(upstream) if same_trigger and upstream is not None else None
        )
    return {
        "name": "deploy",
        "on": {"push": {"branches": [DEFAULT_BRANCH], "tags": [RELEASE_TAGS]}},
        "permissions": {},
        "jobs": jobs,
    }


def _promotion_order(stacks: Mapping[str, EnvironmentConfig]) -> list[str]:
    """Stack names with every upstream before its downstream (ties by tier, then name); rejects cycles."""
    tier_rank = {Tier.DEV: 0, Tier.STAGING: 1, Tier.PROD: 2}
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name in visiting:
            raise WorkflowConfigError(f"{name}: promotion.upstream forms a cycle; allowed: a chain dev → … → prod")
        visiting.add(name)
        upstream = stacks[name].promotion.upstream
        if upstream is not None and upstream in stacks:
            visit(upstream)
        visiting.discard(name)
        ordered.append(name)

    for name in sorted(stacks, key=lambda n: (tier_rank[stacks[n].tier], n)):
        visit(name)
    return ordered


# --- serialization ----------------------------------------------------------------------------------------------


class _WorkflowDumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line scripts as ``|`` blocks, indents lists, and never emits anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_WorkflowDumper.add_representer(str, _represent_str)

_USES_LINE = re.compile(r"^(?P<line>\s*(?:- )?uses: (?P<ref>[^\s#]+))$", re.MULTILINE)
_PERMISSION_LINE = re.compile(r"^(?P<line>\s+(?P<scope>[a-z-]+): (?P<level>read|write))$", re.MULTILINE)

#: Why a job may hold each permission beyond ``contents: read``; written next to the grant in the YAML.
PERMISSION_REASONS: dict[tuple[str, str], str] = {
    ("packages", "read"): "pull the registry build cache",
    ("packages", "write"): "push the image, its cache, signature and attestations to GHCR",
    ("id-token", "write"): "OIDC token for keyless cosign signing and the provenance attestation",
    ("attestations", "write"): "store the build provenance attestation",
    ("pull-requests", "write"): "create or update the one preview summary comment",
}


def header(filename: str) -> str:
    """The comment block that opens every generated file."""
    return (
        f"# {filename}: generated by scripts/generate_workflows.py from the Pulumi.<stack>.yaml files.\n"
        f"# Do not edit by hand: change components/workflows.py or the stack config, then run\n"
        f"#   {REGENERATE_COMMAND}\n"
    )


def dump(document: Document, filename: str) -> str:
    """Serialize ``document`` with the generated-file header and a ``# <version>`` comment on every pinned ``uses:``."""
    body = yaml.dump(document, Dumper=_WorkflowDumper, sort_keys=False, width=4096, allow_unicode=True)

    def annotate(match: re.Match[str]) -> str:
        version = version_of(match["ref"])
        return f"{match['line']} # {version}" if version else match["line"]

    def explain(match: re.Match[str]) -> str:
        reason = PERMISSION_REASONS.get((match["scope"], match["level"]))
        return f"{match['line']} # {reason}" if reason else match["line"]

    return header(filename) + _PERMISSION_LINE.sub(explain, _USES_LINE.sub(annotate, body))


def workflow_documents(stacks: Mapping[str, EnvironmentConfig]) -> dict[str, Document]:
    """Every workflow document by file name (``ci.yml`` only when a GitHub-enabled stack builds)."""
    documents: dict[str, Document] = {}
    builder = building_stack(stacks)
    if builder is not None:
        documents["ci.yml"] = ci_workflow(*builder)
    documents["preview.yml"] = preview_workflow(stacks)
    documents["deploy.yml"] = deploy_workflow(stacks)
    return documents


def render_workflow_files(stacks: Mapping[str, EnvironmentConfig]) -> dict[str, str]:
    """File contents by repository path (``.github/workflows/<name>``)."""
    return {
        f"{WORKFLOW_DIRECTORY}/{filename}": dump(document, filename)
        for filename, document in workflow_documents(stacks).items()
    }


# --- reading the committed stack files --------------------------------------------------------------------------


def read_stack_environments(project_dir: Path) -> dict[str, EnvironmentConfig]:
    """Parse the non-secret ``dockyard:`` keys of every ``Pulumi.<stack>.yaml`` in ``project_dir``.

    Secret keys are skipped (their ciphertext is never decrypted here); a stack whose keys do not validate raises
    :class:`components.config.ConfigError`.
    """
    environments: dict[str, EnvironmentConfig] = {}
    for path in sorted(project_dir.glob("Pulumi.*.yaml")):
        stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        config = raw.get("config") or {}
        prefix = f"{NAMESPACE}:"
        document = {
            key.removeprefix(prefix): value
            for key, value in config.items()
            if key.startswith(prefix) and key.removeprefix(prefix) not in SECRET_KEYS
        }
        environments[stack] = parse_environment(stack, document)
    return environments
