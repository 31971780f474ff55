"""CiPipeline: the GitHub side of a delivery pipeline: a stack's environments with their approvals, Actions
secrets and variables, and (for one stack per repository) branch protection and the committed workflow files.

Repository-wide resources exist once per repository, so only a stack given ``manages_repository`` creates them;
Dockyard gives it to the prod-tier stack, so changing branch protection or the workflows goes through prod's
release gate (a ``v*`` tag and the prod environment's reviewers), never through a push to ``main``.

Secrets reach GitHub only as the secret ``Output`` values handed in; nothing here reads them.
"""

# No `from __future__ import annotations`: Pulumi's component provider reads the Args and output annotations
# as live types to infer the schema other languages use.

from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, NotRequired, TypedDict

import pulumi

if TYPE_CHECKING:
    import pulumi_github

from dockyard_components.tiers import Tier

TYPE_TOKEN = "dockyard:index:CiPipeline"


#: The branch that is protected and receives the workflow files, unless ``default_branch`` says otherwise.
DEFAULT_BRANCH = "main"
#: Release tags; a prod environment's deployment policy admits them beside the default branch.
RELEASE_TAGS = "v*"
#: The one secret a stack's preview environment holds: previews need no registry or cluster credentials.
SECRET_PASSPHRASE = "PULUMI_CONFIG_PASSPHRASE"
#: The repository secret with the ``pulumi login`` URL every workflow job uses: a secret, because a PostgreSQL
#: backend's URL may carry its password.
VARIABLE_BACKEND_URL = "PULUMI_BACKEND_URL"


def preview_environment_name(stack: str) -> str:
    """The environment a change's preview of ``stack`` runs in (it holds only the passphrase)."""
    return f"{stack}-preview"


class ReviewerType(StrEnum):
    """Whether a required reviewer is a person or a team."""

    USER = "user"
    TEAM = "team"


class ReviewerArgs(TypedDict):
    id: int
    """Numeric GitHub user or team id (GitHub's API takes ids, not names)."""
    type: ReviewerType
    """user or team."""


class CiPipelineArgs(TypedDict):
    """Inputs of :class:`CiPipeline`. Fields that decide which resources exist are plain values, not Outputs."""

    repository: str
    """``owner/name`` of the GitHub repository."""
    stack: NotRequired[str]
    """The GitHub environment's name (and the ``pulumi --stack`` its jobs deploy); the current stack unless given."""
    tier: NotRequired[Tier]
    """A prod tier gets reviewers, a main/``v*``-only deployment branch policy and a reviewed preview; dev unless
    given."""
    reviewers: NotRequired[Sequence[ReviewerArgs]]
    """Required reviewers of a prod-tier environment."""
    hold_minutes: NotRequired[int]
    """Minutes a deployment is held before it starts (the environment's wait timer, beside the review); 0 unless
    given."""
    secrets: NotRequired[Mapping[str, pulumi.Input[str]]]
    """Actions secrets of the environment by name, Pulumi secrets; ``PULUMI_CONFIG_PASSPHRASE`` also goes to the
    preview environment."""
    variables: NotRequired[Mapping[str, pulumi.Input[str]]]
    """Non-secret Actions variables of the environment, by name."""
    manages_repository: NotRequired[bool]
    """Whether this stack creates the repository-wide resources (exactly one stack per repository may)."""
    workflow_files: NotRequired[Mapping[str, str]]
    """Workflow files by repository path; committed only when ``manages_repository``."""
    required_checks: NotRequired[Sequence[str]]
    """Status checks branch protection requires on the default branch."""
    pulumi_backend_url: NotRequired[pulumi.Input[str]]
    """``pulumi login`` URL the workflows use; a repository secret when given and ``manages_repository``."""
    default_branch: NotRequired[str]
    """Branch that is protected and receives the workflow files; ``main`` unless given."""
    regenerate_command: NotRequired[str]
    """The command that regenerates the workflow files, named in the commit that syncs them."""


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
        try:
            # The `github` extra: programs that use no CiPipeline never install or load it.
            import pulumi_github as github
        except ImportError:
            raise ImportError(
                f"CiPipeline {name}: pulumi-github is missing; install dockyard-components[github]"
            ) from None
        repository = _repository_name(args["repository"])
        stack = args.get("stack") or pulumi.get_stack()
        prod = args.get("tier") == Tier.PROD
        branch = args.get("default_branch", DEFAULT_BRANCH)
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
                tag_pattern=RELEASE_TAGS,
                opts=child,
            )

        # Pull-request previews decrypt the stack with its passphrase; in prod a reviewer must allow that first.
        preview_environment = github.RepositoryEnvironment(
            f"{name}-preview-environment",
            _environment_args(args, repository, preview_environment_name(stack), deploys=False),
            opts=child,
        )

        secret_values = dict(args.get("secrets", {}))
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
        passphrase = secret_values.get(SECRET_PASSPHRASE)
        if passphrase is not None:
            # The preview job needs nothing but the passphrase (previews need no registry or cluster credentials).
            github.ActionsEnvironmentSecret(
                f"{name}-preview-secret-{_slug(SECRET_PASSPHRASE)}",
                repository=repository,
                environment=preview_environment.environment,
                secret_name=SECRET_PASSPHRASE,
                value=passphrase,
                opts=child,
            )

        for variable_name, variable_value in sorted(args.get("variables", {}).items()):
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
        if args.get("manages_repository", False):
            backend_url = args.get("pulumi_backend_url")
            if backend_url is not None:
                # Every workflow job logs in to the same state backend. A secret: a postgres:// URL may hold the
                # database password, which must stay out of logs and out of this stack's outputs.
                github.ActionsSecret(
                    f"{name}-backend-url",
                    repository=repository,
                    secret_name=VARIABLE_BACKEND_URL,
                    plaintext_value=pulumi.Output.secret(backend_url),
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
                required_status_checks=[{"strict": True, "contexts": list(args.get("required_checks", ()))}],
                required_pull_request_reviews=[{"required_approving_review_count": 1, "dismiss_stale_reviews": True}],
                opts=child,
            )
            for path, content in sorted(args.get("workflow_files", {}).items()):
                # The generated workflow as committed by scripts/generate_workflows.py; adopts the existing file.
                github.RepositoryFile(
                    f"{name}-workflow-{_slug(Path(path).stem)}",
                    repository=repository,
                    branch=branch,
                    file=path,
                    content=content,
                    commit_message=f"ci: sync generated {path}"
                    + (f" ({command})" if (command := args.get("regenerate_command")) else ""),
                    overwrite_on_create=True,
                    opts=child,
                )
                workflow_paths.append(path)

        self.environment_name = environment_name
        self.preview_environment_name = preview_environment.environment
        self.secret_names = pulumi.Output.from_input(secret_names)
        self.variable_names = pulumi.Output.from_input(sorted(args.get("variables", {})))
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


def _repository_name(repository: str) -> str:
    """pulumi-github takes the bare name; the owner comes from the provider (``github:owner``)."""
    return repository.split("/", 1)[1] if "/" in repository else repository


def _slug(value: str) -> str:
    return value.lower().replace("_", "-").replace(".", "-")


def _environment_args(
    args: CiPipelineArgs, repository: str, environment: str, *, deploys: bool
) -> "pulumi_github.RepositoryEnvironmentArgs":
    """Below prod, only the deployments' hold (the promotion soak as a wait timer). In prod: reviewers (never the
    author), and for deployments the hold and the custom branch policy whose main/``v*`` rules are separate
    resources."""
    import pulumi_github as github  # loaded by CiPipeline already

    hold = args.get("hold_minutes") if deploys and args.get("hold_minutes") else None
    if args.get("tier") != Tier.PROD:
        return github.RepositoryEnvironmentArgs(repository=repository, environment=environment, wait_timer=hold)
    reviewers = args.get("reviewers", ())
    return github.RepositoryEnvironmentArgs(
        repository=repository,
        environment=environment,
        reviewers=[
            github.RepositoryEnvironmentReviewerArgs(
                users=[r["id"] for r in reviewers if r["type"] == ReviewerType.USER],
                teams=[r["id"] for r in reviewers if r["type"] == ReviewerType.TEAM],
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
