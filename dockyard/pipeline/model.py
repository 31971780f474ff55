"""The delivery pipeline, CI-neutral: which jobs run on which trigger, in which order, touching which stack, with
which secrets, approvals and tools, and the shell each one runs. :mod:`dockyard.pipeline.derive` builds it from the
stack configs; each renderer (``github``, ``gitlab``, ``circleci``, ``jenkins``) turns it into one CI system's files.

The chain every renderer keeps (see :mod:`dockyard.pipeline.derive` for why it is shaped so):

[``integration`` (the app's integration tests against its compose file's services, each CI system's own service
containers; only with ``image.build.integration``) →] ``build`` (the building stack's ``pulumi up --target`` its
AppImage: the test stage, the one build, the push) →
``scan`` (Trivy; HIGH or CRITICAL stops every later job) → ``supply-chain`` (SBOM, signature, attestations) →
``deploy-<stack>`` (``pulumi up --exclude`` the image, ``dockyard verify``) → ``promote-<stack>`` down
``promotion.upstream`` (``dockyard promote --verify``, then the canary walked or the idle color switched to), the
prod-tier stack behind an approval.

Only :class:`ImageOutput` travels between jobs: the digest-pinned reference the build pushed. Scripts read every
value from their environment (``"$NAME"``), so no renderer ever splices a value, let alone a secret, into shell text.
A script's ``::error::`` prefix is GitHub's annotation; the other renderers print it as ``error:``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from dockyard.model.config import BuildConfig
from dockyard.model.problems import ConfigProblemsError
from dockyard.model.registry import AwsLogin, AzureLogin, GcpLogin, RegistryKind
from dockyard.pipeline.pins import UV_REQUIREMENT
from dockyard_components.github_ci import DEFAULT_BRANCH as DEFAULT_BRANCH
from dockyard_components.github_ci import RELEASE_TAGS as RELEASE_TAGS
from dockyard_components.github_ci import SECRET_PASSPHRASE as SECRET_PASSPHRASE
from dockyard_components.github_ci import VARIABLE_BACKEND_URL as VARIABLE_BACKEND_URL
from dockyard_components.github_ci import preview_environment_name as preview_environment_name
from dockyard_components.scanner import DEFAULT_DB_REPOSITORY, SEVERITIES

PYTHON_VERSION = "3.11"
#: The CLI matching the ``pulumi`` SDK pinned in pyproject.toml (they are released together).
PULUMI_CLI_VERSION = "3.260.0"
#: The local supply-chain tools' versions (scripts/supply-chain/versions.env): CI signs as the local stacks verify.
COSIGN_VERSION = "v2.6.5"
SYFT_VERSION = "v1.57.1"
HELM_VERSION = "v4.3.2"
POLICY_PACK = "policies"
#: Where each preview job writes ``<stack>.json`` and ``<stack>.events.jsonl``: ``dockyard pr-summary`` names a
#: section after the file and reads the policy violations from the event log beside it.
PREVIEW_DIRECTORY = "previews"
PREVIEW_SUMMARY = "pr-summary.md"
#: The component a building stack's image is: the build job targets it and its children, the deploy excludes them.
APP_IMAGE_TYPE = "dockyard:index:AppImage"
#: What every job installs: the components distribution is served by no package index, so it is named beside the
#: project and pip takes the project's requirement ``dockyard-components==<version>`` from that directory.
PIP_INSTALL = "python -m pip install --no-cache-dir ./components ."
#: The program and ``dockyard`` in ``.venv``, as the jobs that run ``pulumi`` need them (Pulumi.yaml names it): uv
#: (pinned, installed into the venv by pip) installs the rest, five times faster than pip (dockyard.pipeline.pins).
INSTALL_PROJECT = (
    "python -m venv .venv\n"
    f".venv/bin/python -m pip install --no-cache-dir {UV_REQUIREMENT}\n"
    ".venv/bin/uv pip install --python .venv/bin/python ./components .\n"
)
#: The component of every stack's registry: the build targets it with the image, since the image's credential
#: check (a child of it) must exist before the image is built with that credential.
REGISTRY_TYPE = "dockyard:index:ContainerRegistry"
#: The stack output (``__main__``) that names the digest a stack serves.
IMAGE_REF_OUTPUT = "image_ref"
#: The one value handed between delivery jobs: the digest-pinned reference the build job pushed.
IMAGE_REF = "image-ref"
#: The environment variable every job reads that reference from.
IMAGE_REF_ENV = "IMAGE_REF"
VULNERABILITY_REPORT = "vulnerabilities.json"
SBOM_FILE = "sbom.spdx.json"
#: The local image the pull request's check builds and scans (never pushed).
CHECK_IMAGE = "dockyard-ci:scan"
#: Where the build job's test run leaves ``junit.xml`` and ``coverage.out`` (``DOCKYARD_TEST_REPORTS`` for the
#: podman builder), which every CI system publishes, also when a test failed.
TEST_REPORTS_DIRECTORY = "test-reports"
JUNIT_REPORT = f"{TEST_REPORTS_DIRECTORY}/junit.xml"
TEST_REPORTS_ARTIFACT = "test-reports"
#: The integration job's report folder and artifact: a name of its own, since GitHub refuses two artifacts of one name.
INTEGRATION_REPORTS_DIRECTORY = "integration-reports"
#: The build tag of the app's integration tests (``go test -tags integration``).
INTEGRATION_TAG = "integration"
#: Makes ``junit.xml`` from the exported events where no project is installed (the change's check): stdlib only.
JUNIT_CONVERTER = "components/dockyard_components/test_reports.py"

# Names of the CI secrets and variables each stack's environment holds (dockyard_components.github_ci creates GitHub's).
SECRET_REGISTRY_PASSWORD = "REGISTRY_PASSWORD"
SECRET_KUBECONFIG = "KUBECONFIG"
#: Token with admin rights on the repository for the pulumi-github provider: it cannot be created by the stack
#: that needs it, so an administrator stores it once in each stack environment (bootstrap).
SECRET_GITHUB_ADMIN_TOKEN = "DOCKYARD_GITHUB_TOKEN"
VARIABLE_REGISTRY_HOST = "REGISTRY_HOST"
VARIABLE_IMAGE_NAME = "IMAGE_NAME"
VARIABLE_REGISTRY_USERNAME = "REGISTRY_USERNAME"
VARIABLE_STACK = "PULUMI_STACK"
VARIABLE_NAMESPACE = "K8S_NAMESPACE"

CI_TEST_JOB = "image-test"
#: The app's integration tests against its compose file's services, before the build pushes anything.
INTEGRATION_JOB = "integration"
BUILD_JOB = "build"
SCAN_JOB = "scan"
SUPPLY_CHAIN_JOB = "supply-chain"
PREVIEW_JOB = "preview"
SUMMARY_JOB = "pr-summary"
COMMENT_JOB = "pr-comment"
#: A merge request's own environment (``dockyard env``): made or updated on each change, destroyed when the merge
#: request closes, and the expired ones swept on a schedule.
MR_ENV_JOB = "mr-env"
MR_ENV_STOP_JOB = "mr-env-stop"
MR_ENV_SWEEP_JOB = "mr-env-sweep"
#: Where the merge request's image push leaves its digest for ``dockyard env create``.
MR_DIGEST_FILE = "mr-image.digest"


class PipelineConfigError(ConfigProblemsError, ValueError):
    """The stack configs do not describe one pipeline (e.g. two stacks build, or stacks use two repositories)."""


class Stage(StrEnum):
    """The chain's stages, in order; every CI system runs them in this order."""

    TEST = "test"
    INTEGRATION = "integration"
    BUILD = "build"
    SCAN = "scan"
    SUPPLY_CHAIN = "supply-chain"
    DEPLOY = "deploy"
    PROMOTE = "promote"
    #: A merge request's own environment (beside the chain, never part of it).
    REVIEW = "review"


class Trigger(StrEnum):
    """What starts a job: a change proposed against the default branch, or a push to it; the change merged or closed;
    the CI system's schedule."""

    CHANGE = "change"
    MAIN = "main"
    CHANGE_CLOSED = "change-closed"
    SCHEDULE = "schedule"


@dataclass(frozen=True)
class Secret:
    """A CI secret of the job's environment (GitHub environment secret, GitLab protected variable scoped to the
    environment, CircleCI context variable, Jenkins credential)."""

    name: str


@dataclass(frozen=True)
class Variable:
    """A non-secret CI setting of the repository or the job's environment."""

    name: str


@dataclass(frozen=True)
class ImageOutput:
    """The build job's digest-pinned image reference: the only value that travels between jobs."""


class CiFact(StrEnum):
    """A value only the CI system knows (how its keyless signatures are identified), resolved by each renderer."""

    SIGNING_IDENTITY = "signing-identity"
    SIGNING_ISSUER = "signing-issuer"
    #: The address of this pipeline run: a promotion's commit names it.
    PIPELINE_URL = "pipeline-url"
    #: Where a promotion pushes its commit: the checkout's ``origin`` where the CI system's checkout may push (GitLab
    #: with the job token allowed to push, CircleCI's and Jenkins' checkout keys), else an address with a token.
    PUSH_REMOTE = "push-remote"
    #: The number of the merge (pull) request the run is for; empty on a branch without one (CircleCI).
    MERGE_REQUEST = "merge-request"


@dataclass(frozen=True)
class ServiceAddress:
    """``host:port`` where a job reaches one of its :class:`ServiceContainer`: the service's name where the CI system
    puts the job beside it on a network (GitLab's alias, CircleCI's container name), ``localhost`` where the job runs
    on the runner's host and the service's ports are published there (GitHub Actions)."""

    service: str
    port: int


EnvValue = str | Secret | Variable | ImageOutput | CiFact | ServiceAddress


@dataclass(frozen=True)
class HealthCheck:
    """A compose service's ``healthcheck``: the shell command and its timing (compose durations, e.g. ``5s``)."""

    command: str
    interval: str | None = None
    timeout: str | None = None
    retries: int | None = None
    start_period: str | None = None


@dataclass(frozen=True)
class ServiceContainer:
    """A container a job's tests need beside them: a compose service other than the tests' own, run as the CI
    system's service container (GitLab ``services``, GitHub job ``services``, CircleCI secondary container)."""

    name: str
    #: The image as the compose file resolves it without the variable (``${VAR:-default}``: the default), pinned by
    #: digest (as written, or the pin of that tag in :mod:`dockyard.pipeline.pins`).
    image: str
    #: ``${VAR:-default}``: the CI variable that may replace the image where the CI system can read one there.
    image_variable: str | None = None
    #: Container ports the tests reach (from ``ports``, ``expose`` and the tests' ``<service>:<port>`` addresses).
    ports: tuple[int, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    health: HealthCheck | None = None


@dataclass(frozen=True)
class ComposeEnvironment:
    """The compose file a job's services come from, for a CI system that runs the file itself (Jenkins)."""

    #: The file, relative to the repository root.
    file: str
    #: The service that runs the tests; every other one is a :class:`ServiceContainer`.
    tests: str


@dataclass(frozen=True)
class Command:
    """One shell step: bash, reading every value from ``env``."""

    name: str
    script: str
    env: Mapping[str, EnvValue] = field(default_factory=dict)
    #: Shell variable whose value, once the script succeeds, becomes the job's :class:`ImageOutput`.
    publishes: str | None = None


class Tool(StrEnum):
    """What a job needs installed before its commands run."""

    PULUMI = "pulumi"
    """Python, the Pulumi CLI, the program and ``dockyard`` in ``.venv``."""
    KUBECONFIG = "kubeconfig"
    """The stack's kubeconfig secret as a file named by ``$KUBECONFIG``."""
    COSIGN = "cosign"
    SYFT = "syft"
    TRIVY = "trivy"
    HELM = "helm"
    """A helm-mode stack's jobs publish its chart (``dockyard chart``) after the update."""
    GO = "go"
    """The Go toolchain the app's ``go.mod`` names (the integration tests run on the runner, beside their services)."""


class Access(StrEnum):
    """How a job's own tools (scanner, signer) use the registry; ``pulumi`` jobs log in through the program."""

    READ = "read"
    WRITE = "write"


class Signing(StrEnum):
    """Who signs: the CI job, keyless with the CI system's OIDC identity; or the stack's program, with its key."""

    KEYLESS = "keyless"
    IN_PROGRAM = "in-program"


@dataclass(frozen=True)
class RegistryLogin:
    """How CI reaches the registry: a password secret, the job token (GHCR on GitHub), or a cloud's OIDC login."""

    kind: RegistryKind
    host: str
    username: str
    #: The variable the stack's program reads its registry password from (``registry.passwordEnv``).
    password_env: str | None = None
    cloud: AwsLogin | AzureLogin | GcpLogin | None = None
    #: ECR: the region of the server; ACR: the registry name.
    region: str | None = None
    acr_name: str | None = None

    @property
    def token_command(self) -> str | None:
        """Cloud kinds: the shell that prints a fresh registry token once the cloud's CLI is logged in (OIDC)."""
        if self.kind == RegistryKind.ECR:
            return f"aws ecr get-login-password --region {self.region}"
        if self.kind == RegistryKind.ACR:
            return f"az acr login --name {self.acr_name} --expose-token --output tsv --query accessToken"
        if self.kind in (RegistryKind.GAR, RegistryKind.GCR):
            return "gcloud auth print-access-token"
        return None


@dataclass(frozen=True)
class Approval:
    """A person must approve before the job runs (GitHub environment reviewers, GitLab protected environment with
    a manual job, a CircleCI approval job, a Jenkins ``input``)."""

    reviewers: tuple[str, ...]


@dataclass(frozen=True)
class Job:
    """One job of the chain."""

    id: str
    name: str
    stage: Stage
    trigger: Trigger
    needs: tuple[str, ...]
    timeout_minutes: int
    commands: tuple[Command, ...]
    #: Minutes the job is held before it starts: GitLab's delayed start, a sleep where the CI system has no such thing
    #: (CircleCI, Jenkins). GitHub holds it with the environment's wait timer instead (``dockyard_components.github_ci``).
    hold_minutes: int = 0
    #: Runs first: fails unless a stack still has this run's digest (a newer run may have built since).
    guard: Command | None = None
    #: The stack whose secrets the job needs (and whose protection gates it); None: no stack secrets.
    environment: str | None = None
    #: The stack the job changes (``pulumi up``), if any.
    stack: str | None = None
    approval: Approval | None = None
    tools: tuple[Tool, ...] = ()
    registry: Access | None = None
    #: Needs the CI system's OIDC identity token (keyless signing).
    oidc: bool = False
    #: The stack's program reaches a cloud registry: its cloud CLI is logged in through OIDC first.
    cloud_login: bool = False
    #: Signing mode of a supply-chain job.
    signing: Signing | None = None
    #: Files this job keeps for later jobs, by artifact name.
    keeps: Mapping[str, str] = field(default_factory=dict)
    #: Artifacts (by name) this job takes from the jobs it needs.
    fetches: tuple[str, ...] = ()
    #: One update of ``stack`` at a time across runs; a queued one waits instead of cancelling a running one.
    serialized: bool = False
    #: The job commits its stack's file to the default branch (a promotion): it pushes with the CI system's token.
    pushes: bool = False
    #: Runs only when the job has failed, after it (its stack's webhooks are told); it cannot fail the job further.
    on_failure: Command | None = None
    #: Folder of the test run's reports (:data:`JUNIT_REPORT`, coverage) that the job publishes, also when it fails.
    test_reports: str | None = None
    #: Containers the job's commands reach (:class:`ServiceAddress`), started before them and gone after the job.
    services: tuple[ServiceContainer, ...] = ()
    #: Where ``services`` come from, for a CI system that runs the compose file itself.
    compose: ComposeEnvironment | None = None

    @property
    def publishes_image(self) -> bool:
        return any(command.publishes for command in self.commands)

    @property
    def secrets(self) -> list[str]:
        """Every CI secret the job's commands read."""
        commands = (
            *((self.guard,) if self.guard else ()),
            *self.commands,
            *((self.on_failure,) if self.on_failure else ()),
        )
        return sorted({value.name for c in commands for value in c.env.values() if isinstance(value, Secret)})


@dataclass(frozen=True)
class MergeRequestEnvironments:
    """A merge request's own environment, made from ``template`` (the building stack).

    The jobs' secrets come from the CI environment :func:`mr_environment_name` names: not the template's own (those
    are protected, for the default branch), but a scope merge request pipelines see, holding what ``template``'s
    update needs (its passphrase, backend, registry password with push access, a kubeconfig).
    """

    template: str
    #: How long an environment lives after its newest change (``dockyard env create --ttl``; GitLab's auto-stop).
    ttl_hours: int
    #: On a change, after the check: the merge request's image built, pushed and deployed to its environment.
    create: Job
    #: When the merge request is merged or closed, where the CI system says so.
    stop: Job
    #: On a schedule: every environment whose expiry has passed.
    sweep: Job


def mr_environment_name(template: str) -> str:
    """The CI environment (GitHub environment, GitLab environment scope, CircleCI context, Jenkins credential prefix)
    whose secrets the merge request environments of ``template`` run with."""
    return f"{template}-mr"


@dataclass(frozen=True)
class Pipeline:
    """Everything a renderer needs: the delivery chain, the change check and the previews."""

    repository: str | None
    default_branch: str
    #: The stack that builds, and what it builds (``image.build``): the change's check builds the same stages.
    builder: str
    build: BuildConfig
    registry: RegistryLogin
    #: Registry login per stack whose program CI runs (password source and OIDC login may differ per stack).
    registries: Mapping[str, RegistryLogin]
    #: The delivery chain on a push to the default branch, in order.
    delivery: tuple[Job, ...]
    #: The change's check: the test stage and the runtime image built and scanned, never pushed.
    check: Job
    #: Stacks previewed (with the policy pack) on a change.
    previews: tuple[str, ...]
    #: The building stack's scanner settings (DB source, refusing severities), for renderers that scan with an action.
    scan: tuple[str, tuple[str, ...]] = (DEFAULT_DB_REPOSITORY, SEVERITIES)
    #: Tools a preview runs beside the engine: cosign, where a previewed stack's program checks its trust policy.
    preview_tools: tuple[Tool, ...] = ()
    #: Merge request environments; None when the building stack's trust policy would refuse a merge request's digest.
    mr_environments: MergeRequestEnvironments | None = None

    def job(self, job_id: str) -> Job:
        return next(job for job in self.delivery if job.id == job_id)

    def preview_registries(self, stacks: Iterable[str] | None = None) -> list[RegistryLogin]:
        """The registry logins of the previewed stacks (or of ``stacks``)."""
        return [self.registries[stack] for stack in (self.previews if stacks is None else stacks)]


def deploy_job_id(stack: str) -> str:
    """The job that deploys the building stack (everything but its image) and verifies it."""
    return f"deploy-{stack}"


def promote_job_id(stack: str) -> str:
    """The job that promotes this run's digest into ``stack``."""
    return f"promote-{stack}"


def image_urn_pattern(stack: str) -> str:
    """``pulumi up --target/--exclude`` pattern: the stack's AppImage and every resource under it, in any project."""
    return f"urn:pulumi:{stack}::*::{APP_IMAGE_TYPE}**"


def registry_urn_pattern(stack: str) -> str:
    """``pulumi up --target`` pattern: the stack's ContainerRegistry and its children (the credential check)."""
    return f"urn:pulumi:{stack}::*::{REGISTRY_TYPE}**"
