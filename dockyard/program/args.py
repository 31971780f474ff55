"""Dockyard's stack config mapped onto the components' arguments: the one place that knows both.

The components (``dockyard_components``) take plain Pulumi Inputs and know nothing of ``Pulumi.<stack>.yaml``; this
module turns a validated :class:`~.stack_config.StackConfig` into their Args, which keeps ``__main__`` a table of
contents.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import cast

import pulumi

from dockyard.admission.namespace import NamespacePolicy
from dockyard.model.config import Tier
from dockyard.model.credentials import password_source
from dockyard.model.trust import TrustPolicy
from dockyard.pipeline import github as actions
from dockyard.pipeline import model
from dockyard.pipeline.derive import derive_pipeline, read_stack_environments
from dockyard.pipeline.render import REGENERATE_COMMAND
from dockyard.program.credential_check import RegistryCredentialCheck
from dockyard.program.stack_config import StackConfig, StackSecrets
from dockyard_components.app_spec import AppSpec
from dockyard_components.build_context import context_hash
from dockyard_components.github_ci import CiPipelineArgs, ReviewerArgs, ReviewerType
from dockyard_components.image import AppImageArgs, Builder, IntegrationArgs
from dockyard_components.kubernetes_app import KubernetesAppArgs
from dockyard_components.registry import ContainerRegistry, ContainerRegistryArgs
from dockyard_components.scanner import ScannedImage, ScannedImageArgs
from dockyard_components.signing import SignedImageArgs
from dockyard_components.tags import read_git_facts, release_identity

SOURCE_URL = "https://github.com/{repository}"


def registry_args(stack: StackConfig) -> ContainerRegistryArgs:
    registry = stack.env.registry
    args = ContainerRegistryArgs(kind=registry.kind, repository=registry.repository, username=registry.username)
    if registry.server:
        args["server"] = registry.server
    if stack.secrets.registry_password is not None:
        args["password"] = stack.secrets.registry_password
    return args


#: One credential check per registry component: the build and the pull Secret share it.
_credential_checks: weakref.WeakKeyDictionary[ContainerRegistry, RegistryCredentialCheck] = weakref.WeakKeyDictionary()


def credential_check(stack: StackConfig, registry: ContainerRegistry) -> RegistryCredentialCheck | None:
    """The registry's credential, verified against the registry whenever it changes (None without a password)."""
    if registry.password is None:
        return None
    if registry not in _credential_checks:
        config = stack.env.registry
        _credential_checks[registry] = RegistryCredentialCheck(
            "registry-credentials",
            {
                "server": registry.server,
                "repository": config.repository,
                "username": registry.username,
                "password": registry.password,
                "password_env": config.password_env,
                "password_key": password_source(config.password_env),
                "ca_file": config.ca_bundle,
            },
            opts=pulumi.ResourceOptions(parent=registry),
        )
    return _credential_checks[registry]


def _checked(
    stack: StackConfig, registry: ContainerRegistry, value: pulumi.Output[str] | None
) -> pulumi.Output[str] | None:
    """``value`` (a credential) once the registry has accepted it: what takes it waits for the check."""
    check = credential_check(stack, registry)
    return check.gate(value) if check is not None and value is not None else value


def image_args(stack: StackConfig, registry: ContainerRegistry) -> AppImageArgs:
    build = stack.env.image.build
    if build is None:
        raise ValueError(f"{stack.stack}: image_args needs dockyard:image.build")
    context = Path(build.context)
    repository = stack.env.github.repository
    source = SOURCE_URL.format(repository=repository) if repository else f"file:{build.context}"
    tags, metadata = release_identity(read_git_facts(context), context_hash(context, build.dockerfile), source)
    args = AppImageArgs(
        builder=Builder(build.builder),
        image_name=registry.image_name,
        registry_server=registry.server,
        username=registry.username,
        context=build.context,
        dockerfile=build.dockerfile,
        target=build.target,
        platforms=build.target_platforms,
        build_args=build.build_args,
        tags=tags,
        metadata=metadata,
    )
    password = _checked(stack, registry, registry.password)
    if password is not None:
        args["password"] = password
        args["password_source"] = password_source(stack.env.registry.password_env)
    if build.test_target:
        args["test_target"] = build.test_target
    if build.test_reports_target:
        args["test_reports_target"] = build.test_reports_target
    if build.cache_repo:
        args["cache_repo"] = build.cache_repo
    if build.integration is not None:
        integration = build.integration
        args["integration"] = IntegrationArgs(
            compose=integration.compose, service=integration.service, target=integration.target, env=integration.env
        )
    if build.secrets and stack.secrets.build_secrets is not None:
        args["secrets"] = stack.secrets.build_secrets
    return args


def promoted_image(stack: StackConfig) -> pulumi.Output[str] | None:
    """The digest a non-building stack serves, as its strategy says (image.ref, or the active color's image); None
    before its first release."""
    served = stack.env.served_image
    return None if served is None else pulumi.Output.from_input(served)


def unreleased_tracks(stack: StackConfig, release: pulumi.Input[str] | None) -> list[str]:
    """The tracks that run no pods because they have no release yet."""
    deployed = {track.name for track in stack.env.kubernetes.deployed_tracks(release is not None)}
    return [track.name for track in stack.env.kubernetes.tracks if track.name not in deployed]


def app_args(
    stack: StackConfig,
    release: pulumi.Output[str] | None,
    registry: ContainerRegistry,
    trust_policy: TrustPolicy | None = None,
) -> KubernetesAppArgs:
    """The app's Deployments run ``release`` where their track names no image of its own; None: no release yet.
    A ``trust_policy`` goes on the namespace, for the admission webhook."""
    # The component validates its spec again (the same AppSpec model), so the dump needs no checking here.
    spec = stack.env.kubernetes.model_dump(include=set(AppSpec.model_fields), exclude_none=True)
    args = cast(KubernetesAppArgs, {**spec, "namespace": stack.namespace, "stack": stack.stack, "tier": stack.env.tier})
    if release is not None:
        args["image"] = release
    for track in unreleased_tracks(stack, release):
        pulumi.log.info(f"{stack.stack}: the {track} track has no release yet, so it runs no pods")
    if trust_policy is not None:
        args["trust_policy"] = NamespacePolicy.of(trust_policy, stack.env.registry.ca_bundle).annotation()
    if stack.secrets.app_secrets is not None:
        args["app_secrets"] = stack.secrets.app_secrets
    # Cloud registries are pulled through the cluster's workload identity: a Secret would hold a token that
    # expires within hours (dockyard/model/registry.py), so only config asks for one.
    pull_credentials = registry.docker_config_json if stack.env.registry.wants_pull_secret else None
    checked = _checked(stack, registry, pull_credentials)
    if checked is not None:
        args["docker_config_json"] = checked
    return args


def scan_args(stack: StackConfig, registry: ContainerRegistry, image: pulumi.Output[str]) -> ScannedImageArgs:
    """Scan what the build pushed with the settings of ``dockyard:signing.scan`` (the DB source, the severities)."""
    scan = stack.env.signing.scan if stack.env.signing else None
    if scan is None:
        raise ValueError(f"{stack.stack}: scan_args needs dockyard:signing.scan")
    args = ScannedImageArgs(
        image_ref=image,
        registry_server=registry.server,
        username=registry.username,
        db_repository=scan.db_repository,
        severities=list(scan.severities),
    )
    if registry.password is not None:
        args["password"] = registry.password
    if stack.env.registry.ca_bundle:
        args["ca_file"] = stack.env.registry.ca_bundle
    build = stack.env.image.build
    if build is not None and len(build.target_platforms) > 1:
        # An image index: trivy alone scans only the host's platform.
        args["platforms"] = build.target_platforms
    return args


def signing_args(
    stack: StackConfig,
    registry: ContainerRegistry,
    image: pulumi.Output[str],
    scanned: ScannedImage | None = None,
) -> SignedImageArgs:
    """Sign what the build pushed, with the stack's key pair; the public key verifies it before the update ends.
    With ``scanned``: sign only once the scan passed, and attest the scan too."""
    signing = stack.env.signing
    secrets = stack.secrets
    if (
        signing is None
        or signing.public_key_file is None
        or secrets.cosign_private_key is None
        or secrets.cosign_password is None
    ):
        raise ValueError(f"{stack.stack}: signing_args needs dockyard:signing.publicKeyFile and the cosign key secrets")
    args = SignedImageArgs(
        image_ref=scanned.image_ref if scanned else image,
        registry_server=registry.server,
        username=registry.username,
        private_key=secrets.cosign_private_key,
        key_password=secrets.cosign_password,
        public_key=(Path.cwd() / signing.public_key_file).read_text(),
    )
    if scanned is not None:
        args["vulnerability_report"] = scanned.vulnerability_report
    if registry.password is not None:
        args["password"] = registry.password
    if stack.env.registry.ca_bundle:
        args["ca_file"] = stack.env.registry.ca_bundle
    return args


# --- the GitHub side (CiPipeline) ------------------------------------------------------------------------------


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
        "reviewers": [
            ReviewerArgs(id=reviewer.id, type=ReviewerType.TEAM if reviewer.team is not None else ReviewerType.USER)
            for reviewer in config.env.github.reviewers
        ],
        "hold_minutes": config.env.hold_minutes,
        "secrets": _secret_values(config.stack, config.secrets),
        "variables": environment_variables(config),
        "manages_repository": manages_repository(config),
        "workflow_files": actions.render(derive_pipeline(stacks, project_dir=project_dir)),
        "required_checks": actions.required_checks(stacks),
        "regenerate_command": REGENERATE_COMMAND,
    }
    if pulumi_backend_url is not None:
        args["pulumi_backend_url"] = pulumi_backend_url
    return args


def _check_provider_owner(stack: str, repository: str) -> None:
    owner = pulumi.Config("github").get("owner")
    if owner is not None and owner != repository.split("/", 1)[0]:
        raise ValueError(
            f"{stack}: github:owner is {owner!r} but dockyard:github.repository is {repository!r}; "
            "allowed: the same owner in both"
        )


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
