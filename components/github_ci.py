"""The GitHub side of the delivery pipeline: environments, Actions secrets and variables, branch protection.

One :class:`CiPipeline` per GitHub-enabled stack. ``__main__`` decides whether to create it::

    config = load()
    if github_ci.wants_ci_pipeline(config):
        CiPipeline("ci", github_ci.pipeline_args(config, project_dir=Path(__file__).parent))

Repository-wide resources (branch protection on ``main``, the committed workflow files, the backend-URL repository
variable) exist once per repository, so only the stack for which :func:`manages_repository` is true creates them:
the prod-tier stack. Changing branch protection or the workflows then goes through prod's release gate (a ``v*``
tag and the prod environment's reviewers), never through a push to ``main`` that deploys dev.

Secrets reach GitHub only as the secret ``Output`` values of :class:`~components.config.StackSecrets`; nothing here
reads them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NotRequired, TypedDict

import pulumi
import pulumi_github as github

from components.config import Reviewer, StackConfig, StackSecrets, Tier
from components.pipeline import github as actions
from components.pipeline import model
from components.pipeline.derive import derive_pipeline, read_stack_environments
from components.pipeline.render import REGENERATE_COMMAND

TYPE_TOKEN = "dockyard:index:CiPipeline"


class CiPipelineArgs(TypedDict):
    """Inputs of :class:`CiPipeline`. Fields that decide which resources exist are plain values, not Outputs."""

    repository: str
    """``owner/name`` of the GitHub repository (``dockyard:github.repository``)."""
    stack: str
    """Stack name: the GitHub environment's name and the ``pulumi --stack`` the workflows pass."""
    tier: Tier
    """Prod tier gets reviewers, a wait timer and a main/``v*``-only deployment branch policy."""
    reviewers: Sequence[Reviewer]
    """Required reviewers of a prod-tier environment (numeric GitHub user or team ids)."""
    hold_minutes: int
    """Minutes a deployment is held before it starts (the environment's wait timer, which runs beside the review):
    at least the stack's promotion soak, and prod's wait timer."""
    secrets: StackSecrets
    """The stack's secret Outputs; ``None`` ones are skipped with a warning."""
    variables: Mapping[str, pulumi.Input[str]]
    """Non-secret Actions variables of the stack's environment, by name."""
    manages_repository: bool
    """Whether this stack creates the repository-wide resources (exactly one stack per repository may)."""
    workflow_files: Mapping[str, str]
    """Generated workflow files by repository path; committed only when ``manages_repository``."""
    required_checks: Sequence[str]
    """Status checks branch protection requires on the default branch."""
    pulumi_backend_url: NotRequired[pulumi.Input[str] | None]
    """``pulumi login`` URL the workflows use; a repository variable when given and ``manages_repository``."""
    default_branch: NotRequired[str]
    """Branch that is protected and receives the workflow files; ``main`` unless given."""


class CiPipeline(pulumi.ComponentResource):
    """GitHub environments, their Actions secrets and variables, and (for one stack) repository protection."""

    environment_name: pulumi.Output[str]
    """The stack's deployment environment (named after the stack)."""
    preview_environment_name: pulumi.Output[str]
    """The environment pull-request previews of this stack run in; it holds only the passphrase."""
    secret_names: pulumi.Output[list[str]]
    """Names of the Actions secrets created in the deployment environment (never their values)."""
    variable_names: pulumi.Output[list[str]]
    """Names of the Actions variables created in the deployment environment."""
    workflow_paths: pulumi.Output[list[str]]
    """Repository paths of the committed workflow files; empty unless this stack manages the repository."""

    def __init__(self, name: str, args: CiPipelineArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        repository = _repository_name(args["repository"])
        stack = args["stack"]
        prod = args["tier"] == Tier.PROD
        branch = args.get("default_branch", model.DEFAULT_BRANCH)
        child = pulumi.ResourceOptions(parent=self)

        # Deployment jobs of this stack run here; in prod its reviewers, timer and branch policy gate them.
        environment = github.RepositoryEnvironment(
            f"{name}-environment", _environment_args(args, repository, stack, deploys=True), opts=child
        )
        environment_name = environment.environment

        if prod:
            # Only the default branch may deploy to a prod environment ...
            github.RepositoryEnvironmentDeploymentPolicy(
                f"{name}-branch-policy",
                repository=repository,
                environment=environment_name,
                branch_pattern=branch,
                opts=child,
            )
            # ... and release tags, which deploy.yml's prod job runs on.
            github.RepositoryEnvironmentDeploymentPolicy(
                f"{name}-tag-policy",
                repository=repository,
                environment=environment_name,
                tag_pattern=model.RELEASE_TAGS,
                opts=child,
            )

        # Pull-request previews decrypt the stack with its passphrase; in prod a reviewer must allow that first.
        preview_environment = github.RepositoryEnvironment(
            f"{name}-preview-environment",
            _environment_args(args, repository, model.preview_environment(stack), deploys=False),
            opts=child,
        )

        secret_values = _secret_values(stack, args["secrets"])
        secret_names: list[str] = []
        for secret_name, value in secret_values.items():
            # Encrypted by GitHub with the repository's public key; the Output stays secret in Pulumi's state.
            github.ActionsEnvironmentSecret(
                f"{name}-secret-{_slug(secret_name)}",
                repository=repository,
                environment=environment_name,
                secret_name=secret_name,
                value=value,
                opts=child,
            )
            secret_names.append(secret_name)
        passphrase = secret_values.get(model.SECRET_PASSPHRASE)
        if passphrase is not None:
            # The preview job needs nothing but the passphrase (previews need no registry or cluster credentials).
            github.ActionsEnvironmentSecret(
                f"{name}-preview-secret-{_slug(model.SECRET_PASSPHRASE)}",
                repository=repository,
                environment=preview_environment.environment,
                secret_name=model.SECRET_PASSPHRASE,
                value=passphrase,
                opts=child,
            )

        for variable_name, variable_value in sorted(args["variables"].items()):
            # Non-secret settings the workflows read as ${{ vars.NAME }} in this stack's jobs.
            github.ActionsEnvironmentVariable(
                f"{name}-variable-{_slug(variable_name)}",
                repository=repository,
                environment=environment_name,
                variable_name=variable_name,
                value=variable_value,
                opts=child,
            )

        workflow_paths: list[str] = []
        if args["manages_repository"]:
            backend_url = args.get("pulumi_backend_url")
            if backend_url is not None:
                # Every workflow job logs in to the same state backend.
                github.ActionsVariable(
                    f"{name}-backend-url",
                    repository=repository,
                    variable_name=model.VARIABLE_BACKEND_URL,
                    value=backend_url,
                    opts=child,
                )
            # Nothing reaches main without a reviewed pull request whose image test and previews passed.
            github.BranchProtection(
                f"{name}-branch-protection",
                repository_id=repository,
                pattern=branch,
                enforce_admins=False,
                allows_deletions=False,
                allows_force_pushes=False,
                required_status_checks=[{"strict": True, "contexts": list(args["required_checks"])}],
                required_pull_request_reviews=[{"required_approving_review_count": 1, "dismiss_stale_reviews": True}],
                opts=child,
            )
            for path, content in sorted(args["workflow_files"].items()):
                # The generated workflow as committed by scripts/generate_workflows.py; adopts the existing file.
                github.RepositoryFile(
                    f"{name}-workflow-{_slug(Path(path).stem)}",
                    repository=repository,
                    branch=branch,
                    file=path,
                    content=content,
                    commit_message=f"ci: sync generated {path} ({REGENERATE_COMMAND})",
                    overwrite_on_create=True,
                    opts=child,
                )
                workflow_paths.append(path)

        self.environment_name = environment_name
        self.preview_environment_name = preview_environment.environment
        self.secret_names = pulumi.Output.from_input(secret_names)
        self.variable_names = pulumi.Output.from_input(sorted(args["variables"]))
        self.workflow_paths = pulumi.Output.from_input(workflow_paths)
        self.register_outputs(
            {
                "environment_name": self.environment_name,
                "preview_environment_name": self.preview_environment_name,
                "secret_names": self.secret_names,
                "variable_names": self.variable_names,
                "workflow_paths": self.workflow_paths,
            }
        )


# --- helpers ----------------------------------------------------------------------------------------------------


#: Set to 1 on machines that have no pulumi-github provider plugin (it cannot be built offline): the GitHub
#: resources are then left out of the update, loudly, and are proven by the unit tests' mocks instead.
SKIP_GITHUB_ENV = "DOCKYARD_SKIP_GITHUB"


def wants_ci_pipeline(config: StackConfig) -> bool:
    """Whether ``__main__`` creates a :class:`CiPipeline` for this stack: only when ``github.enabled`` is true."""
    if config.env.github.enabled and os.environ.get(SKIP_GITHUB_ENV) == "1":
        pulumi.log.warn(f"{config.stack}: {SKIP_GITHUB_ENV}=1, so the GitHub resources are not part of this run")
        return False
    return config.env.github.enabled


def manages_repository(config: StackConfig) -> bool:
    """Whether this stack owns the repository-wide resources: the prod-tier GitHub-enabled stack."""
    return config.env.github.enabled and config.env.tier == Tier.PROD


def environment_variables(config: StackConfig) -> dict[str, str]:
    """The non-secret Actions variables of a stack's environment."""
    registry = config.env.registry
    return {
        model.VARIABLE_REGISTRY_HOST: registry.host,
        model.VARIABLE_IMAGE_NAME: registry.image_name,
        model.VARIABLE_REGISTRY_USERNAME: registry.username,
        model.VARIABLE_STACK: config.stack,
        model.VARIABLE_NAMESPACE: config.namespace,
    }


def pipeline_args(
    config: StackConfig,
    *,
    project_dir: Path,
    pulumi_backend_url: pulumi.Input[str] | None = None,
) -> CiPipelineArgs:
    """:class:`CiPipelineArgs` for ``config``; the workflows are generated from every ``Pulumi.*.yaml`` in
    ``project_dir`` (the same documents ``scripts/generate_workflows.py`` commits)."""
    if not wants_ci_pipeline(config):
        raise ValueError(f"{config.stack}: github.enabled is false; allowed: a CiPipeline only for enabled stacks")
    repository = config.env.github.repository
    assert repository is not None  # GitHubConfig requires it when enabled
    _check_provider_owner(config.stack, repository)
    stacks = read_stack_environments(project_dir)
    stacks[config.stack] = config.env
    args: CiPipelineArgs = {
        "repository": repository,
        "stack": config.stack,
        "tier": config.env.tier,
        "reviewers": list(config.env.github.reviewers),
        "hold_minutes": config.env.hold_minutes,
        "secrets": config.secrets,
        "variables": environment_variables(config),
        "manages_repository": manages_repository(config),
        "workflow_files": actions.render(derive_pipeline(stacks)),
        "required_checks": actions.required_checks(stacks),
        "pulumi_backend_url": pulumi_backend_url,
    }
    return args


def _check_provider_owner(stack: str, repository: str) -> None:
    owner = pulumi.Config("github").get("owner")
    if owner is not None and owner != repository.split("/", 1)[0]:
        raise ValueError(
            f"{stack}: github:owner is {owner!r} but dockyard:github.repository is {repository!r}; "
            "allowed: the same owner in both"
        )


def _repository_name(repository: str) -> str:
    """pulumi-github takes the bare name; the owner comes from the provider (``github:owner``)."""
    return repository.split("/", 1)[1] if "/" in repository else repository


def _slug(value: str) -> str:
    return value.lower().replace("_", "-").replace(".", "-")


def _secret_values(stack: str, secrets: StackSecrets) -> dict[str, pulumi.Output[str]]:
    sources = {
        model.SECRET_REGISTRY_PASSWORD: ("registryPassword", secrets.registry_password),
        model.SECRET_KUBECONFIG: ("kubeconfig", secrets.kubeconfig),
        model.SECRET_PASSPHRASE: ("ciPulumiPassphrase", secrets.ci_pulumi_passphrase),
    }
    values: dict[str, pulumi.Output[str]] = {}
    for secret_name, (key, value) in sources.items():
        if value is None:
            pulumi.log.warn(
                f"{stack}: dockyard:{key} is not set, so the Actions secret {secret_name} is not created; "
                "the workflows that read it will fail until it is"
            )
            continue
        values[secret_name] = value
    return values


def _environment_args(
    args: CiPipelineArgs, repository: str, environment: str, *, deploys: bool
) -> github.RepositoryEnvironmentArgs:
    """Below prod, only the deployments' hold (the promotion soak as a wait timer). In prod: reviewers (never the
    author), and for deployments the hold and the custom branch policy whose main/``v*`` rules are separate
    resources."""
    hold = args["hold_minutes"] if deploys and args["hold_minutes"] else None
    if args["tier"] != Tier.PROD:
        return github.RepositoryEnvironmentArgs(repository=repository, environment=environment, wait_timer=hold)
    reviewers = args["reviewers"]
    return github.RepositoryEnvironmentArgs(
        repository=repository,
        environment=environment,
        reviewers=[
            github.RepositoryEnvironmentReviewerArgs(
                users=[r.id for r in reviewers if r.user is not None],
                teams=[r.id for r in reviewers if r.team is not None],
            )
        ],
        prevent_self_review=True,
        can_admins_bypass=False,
        wait_timer=hold,
        deployment_branch_policy=(
            github.RepositoryEnvironmentDeploymentBranchPolicyArgs(
                protected_branches=False, custom_branch_policies=True
            )
            if deploys
            else None
        ),
    )
