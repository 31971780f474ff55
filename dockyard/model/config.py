"""Typed configuration of one Dockyard environment (one Pulumi stack), and the reading of its stack file.

``Pulumi.<stack>.yaml`` holds camelCase keys under the ``dockyard`` namespace. :func:`parse_environment` validates
them all at once and raises :class:`ConfigError` listing every problem as
``<stack>: dockyard:<key path>: <what was found>; <what is allowed>``; the program's
:func:`dockyard.program.stack_config.load` does so before any resource is registered.

Secrets never enter the pydantic models: the keys listed in :data:`SECRET_KEYS` are never parsed here (the program
reads them as secret Outputs, the CLI decrypts one only when asked: :mod:`dockyard.model.stack`); the keys in
:data:`ENCRYPTED_LEAF_KEYS` enter them as written, their secrets as ciphertext (:class:`SecureValue`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import pulumi
import yaml
from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    model_validator,
)

from dockyard.model import notifications
from dockyard.model.notifications import Webhook
from dockyard.model.problems import ConfigProblemsError, Problem, format_found, validation_problems

# Re-exported: the registry models moved to their own module; importers keep using dockyard.model.config.
from dockyard.model.registry import DEFAULT_SERVERS as DEFAULT_SERVERS
from dockyard.model.registry import RegistryConfig as RegistryConfig
from dockyard.model.registry import RegistryKind as RegistryKind

# Dockyard's strategies: the component's, plus how a release moves through them in this config; re-exported.
from dockyard.model.strategies import BlueGreenStrategy as BlueGreenStrategy
from dockyard.model.strategies import CanaryStrategy as CanaryStrategy
from dockyard.model.strategies import ReleaseError as ReleaseError
from dockyard.model.strategies import RollingStrategy as RollingStrategy
from dockyard.model.strategies import Strategy as Strategy

# The app's Kubernetes shape is the KubernetesApp component's own model; the config extends and re-exports it.
from dockyard_components.app_spec import AppSpec as AppSpec
from dockyard_components.app_spec import AutoscalingConfig as AutoscalingConfig
from dockyard_components.app_spec import DnsLabel as DnsLabel
from dockyard_components.app_spec import EnvName as EnvName
from dockyard_components.app_spec import ImageRef as ImageRef
from dockyard_components.app_spec import IngressConfig as IngressConfig
from dockyard_components.app_spec import Model as Model
from dockyard_components.app_spec import ResourceAmounts as ResourceAmounts
from dockyard_components.app_spec import ResourcesConfig as ResourcesConfig
from dockyard_components.app_spec import matching
from dockyard_components.build_secrets import SECRET_ID_PATTERN
from dockyard_components.image_ref import ImageReferenceError, parse_image_reference
from dockyard_components.scanner import DEFAULT_DB_REPOSITORY, SEVERITIES, Severity
from dockyard_components.tiers import Tier as Tier

NAMESPACE = "dockyard"

#: The kubeconfig context of the local control plane (scripts/local-cluster.sh): a throw-away cluster on this
#: machine, which is why a prod-tier stack on it needs no approval gate.
LOCAL_CLUSTER_CONTEXT = "dockyard-local"
#: The node pool of the local cluster's one real node (containerd + kubelet); its other nodes are kwok's, which make
#: every pod Ready without running a container.
LOCAL_REAL_NODE_POOL = "real"

#: Keys that must be stored encrypted (``pulumi config set --secret``) and are never parsed into models.
SECRET_KEYS: dict[str, str] = {
    "registryPassword": "password or token the pipeline uses to push and the cluster uses to pull",
    "kubeconfig": "kubeconfig of the target cluster",
    "appSecrets": "object of environment variables for the app, stored in a Kubernetes Secret",
    "ciPulumiPassphrase": "passphrase CI uses to decrypt this stack's secrets",
    "cosignPrivateKey": "cosign private key (encrypted PEM) that signs this stack's builds",
    "cosignPassword": "password of dockyard:cosignPrivateKey",
    "buildSecrets": "object of build secret ids (image.build.secrets) to values, mounted for RUN --mount=type=secret",
}

#: Keys that hold encrypted values among plaintext ones: the models take them as the stack file writes them (an
#: encrypted value is ``{secure: v1:...}``, its ciphertext), and only the CLI decrypts them, when it needs them.
ENCRYPTED_LEAF_KEYS: frozenset[str] = frozenset({"notifications"})


class ConfigError(ConfigProblemsError, pulumi.RunError):
    """Invalid stack configuration. ``problems`` holds one line per problem, already prefixed with the stack.

    A ``RunError`` so the engine prints the message alone, without a traceback.
    """

    title = "invalid Dockyard configuration"


def _cache_repository(value: str) -> str:
    try:
        reference = parse_image_reference(value)
    except ImageReferenceError as error:
        raise ValueError(str(error)) from None
    if not reference.registry or reference.tag or reference.digest:
        raise ValueError(f"{value!r}: allowed: registry/repository without a tag or digest, e.g. ghcr.io/acme/cache")
    return value


SecretId = Annotated[
    str, AfterValidator(matching(SECRET_ID_PATTERN, "a build secret id: letters, digits, '_', '.', '-' (at most 128)"))
]

_GITHUB_REPO = re.compile(r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$")

#: The OCI platforms the app's Dockerfile cross-compiles to (GOOS/GOARCH from TARGETOS/TARGETARCH; no variant, so no
#: linux/arm/v7, whose GOARM the Dockerfile does not set) and distroless ships.
PLATFORMS = ("linux/amd64", "linux/arm64", "linux/ppc64le", "linux/s390x", "linux/riscv64")
Platform = Annotated[
    str,
    AfterValidator(
        matching(re.compile(f"^(?:{'|'.join(map(re.escape, PLATFORMS))})$"), f"one of {', '.join(PLATFORMS)}")
    ),
]


# --- sections -------------------------------------------------------------------------------------------------


_COMPOSE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")


def _compose_path(value: str) -> str:
    parts = PurePosixPath(value).parts
    if PurePosixPath(value).is_absolute() or ".." in parts or not value.endswith((".yaml", ".yml")):
        raise ValueError(
            "allowed: a .yaml or .yml path relative to the build context, inside it (no '..', not absolute)"
        )
    return value


class IntegrationConfig(Model):
    """Integration tests against service containers, run after the test stage and before the push (podman)."""

    compose: Annotated[str, AfterValidator(_compose_path)] = Field(
        default="compose.integration.yaml", description="Compose file, relative to the build context"
    )
    service: Annotated[
        str, AfterValidator(matching(_COMPOSE_NAME, "a Compose service name: letters, digits, '_', '.', '-'"))
    ] = Field(default="tests", description="service that runs the tests; the services it depends_on start first")
    target: Annotated[
        str, AfterValidator(matching(_COMPOSE_NAME, "a Dockerfile stage name: letters, digits, '_', '.', '-'"))
    ] = Field(default="integration", description="Dockerfile stage that is the tests' image (never pushed)")
    env: dict[EnvName, str] = Field(
        default_factory=dict,
        description="variables for the Compose file's ${VAR} (e.g. DOCKYARD_CACHE_IMAGE: a local cache image)",
    )


class BuildConfig(Model):
    """How a building stack builds the image (build once, then promote the digest)."""

    builder: Literal["docker", "podman"] = Field(
        default="docker", description="docker (pulumi-docker) or podman (daemonless, rootless CI)"
    )
    context: str = Field(default="app", description="build context, relative to the project")
    dockerfile: str = Field(default="Dockerfile", description="Dockerfile path inside the context")
    target: str = Field(default="runtime", description="final stage that is pushed")
    test_target: str | None = Field(default="test", description="stage that runs the tests before the push")
    test_reports_target: str | None = Field(
        default=None,
        description="podman: stage holding only the tests' go-test.json and coverage.out (JUnit report, CI artifacts)",
    )
    platforms: list[Platform] = Field(
        default_factory=lambda: ["linux/amd64"],
        min_length=1,
        description="target platforms; two or more: one image index (podman), the tests run on the build platform once",
    )
    platform: Platform | None = Field(default=None, description="shorthand for platforms: [<platform>]")
    build_args: dict[EnvName, str] = Field(default_factory=dict, description="extra --build-arg values")
    cache_repo: Annotated[str, AfterValidator(_cache_repository)] | None = Field(
        default=None,
        description="podman: registry/repository (no tag) that build layers are pulled from and pushed to",
    )
    secrets: list[SecretId] = Field(
        default_factory=list,
        description="podman: ids of build secrets (values in dockyard:buildSecrets) for RUN --mount=type=secret,id=<id>",
    )
    integration: IntegrationConfig | None = Field(
        default=None,
        description="podman: run the integration tests against the Compose file's services before the push; "
        "absent: no integration stage",
    )

    @model_validator(mode="after")
    def _podman_only(self) -> BuildConfig:
        # pulumi-docker's Image (v4) takes no build secrets (a build arg would land in the image's history) and
        # exports no stage.
        if self.secrets and self.builder != "podman":
            raise ValueError(
                f"secrets: set with builder {self.builder}; allowed: builder podman (pulumi-docker takes no secrets)"
            )
        if self.test_reports_target and self.builder != "podman":
            raise ValueError(
                f"testReportsTarget: set with builder {self.builder}; allowed: builder podman "
                "(pulumi-docker exports no stage)"
            )
        if self.integration is not None and self.builder != "podman":
            raise ValueError(
                f"integration: set with builder {self.builder}; allowed: builder podman "
                "(pulumi-docker runs no containers during a build)"
            )
        if self.test_reports_target and not self.test_target:
            raise ValueError("testReportsTarget: set without testTarget; allowed: both (the reports are the tests')")
        return self

    @model_validator(mode="after")
    def _one_platform_list(self) -> BuildConfig:
        # `platform` stays as the one-platform shorthand that stack files written before `platforms` use; everything
        # downstream reads the one list, target_platforms.
        if self.platform is not None and "platforms" in self.model_fields_set:
            raise ValueError("platform: set with platforms; allowed: one of them (platform is platforms: [<one>])")
        if len(set(self.platforms)) != len(self.platforms):
            raise ValueError(f"platforms: found {self.platforms} with a platform twice; allowed: each platform once")
        if len(self.target_platforms) > 1 and self.builder != "podman":
            raise ValueError(
                f"platforms: {len(self.platforms)} with builder {self.builder}; allowed: builder podman "
                "(pulumi-docker's Image builds one platform)"
            )
        return self

    @property
    def target_platforms(self) -> list[str]:
        """The platforms built: ``[platform]`` when the shorthand is set, else ``platforms``."""
        return [self.platform] if self.platform is not None else list(self.platforms)


class ImageConfig(Model):
    """Either ``build`` (this stack builds) or ``ref`` (this stack deploys a promoted reference)."""

    build: BuildConfig | None = None
    ref: ImageRef | None = Field(default=None, description="registry/repo@sha256:<digest> written by promotion")

    @model_validator(mode="after")
    def _at_most_one_source(self) -> ImageConfig:
        if self.build is not None and self.ref is not None:
            raise ValueError("allowed: one of 'build' (this stack builds) or 'ref' (deploy a digest), not both")
        return self


class KubernetesConfig(AppSpec):
    """``dockyard:kubernetes``: the app's spec, and where Dockyard puts it (a cluster, or rendered manifests)."""

    strategy: Strategy = RollingStrategy(type="rolling")

    mode: Literal["render", "helm", "cluster"] = Field(
        description="render: write manifests to renderDirectory (GitOps, local); helm: render, and `dockyard chart` "
        "makes them a Helm chart pushed to the registry; cluster: apply to a cluster"
    )
    render_directory: str | None = Field(default=None, description="defaults to rendered/<stack>")
    context: str | None = Field(default=None, description="kubeconfig context for mode=cluster")
    namespace: DnsLabel | None = Field(default=None, description="defaults to <app>-<stack>")

    def namespace_of(self, stack: str) -> str:
        """The stack's namespace: ``namespace``, else ``<app>-<stack>`` cut to a DNS label's 63 characters."""
        return self.namespace or f"{self.app_name}-{stack}"[:63].rstrip("-")

    @property
    def renders(self) -> bool:
        """Written to the render directory (render and helm), never applied by Dockyard."""
        return self.mode != "cluster"

    def rendered_to(self, stack: str) -> str:
        """The render directory, relative to the project."""
        return self.render_directory or f"rendered/{stack}"

    @property
    def local_cluster(self) -> bool:
        """Applied to the local control plane that scripts/local-cluster.sh runs."""
        return self.mode == "cluster" and self.context == LOCAL_CLUSTER_CONTEXT

    @property
    def runs_containers(self) -> bool:
        """Applied, and its pods really run: any cluster but the local one's kwok nodes."""
        return self.mode == "cluster" and (not self.local_cluster or self.node_pool == LOCAL_REAL_NODE_POOL)


class Reviewer(Model):
    """A required reviewer of a GitHub environment. GitHub's API takes numeric ids; the name is for people."""

    user: str | None = None
    team: str | None = None
    id: int = Field(ge=1)

    @model_validator(mode="after")
    def _one_kind(self) -> Reviewer:
        if (self.user is None) == (self.team is None):
            raise ValueError("allowed: exactly one of user or team, plus its numeric id")
        return self


class GitHubConfig(Model):
    """GitHub Actions secrets and variables, the stack's environment with its approvals, and the workflows."""

    enabled: bool = False
    repository: Annotated[str, AfterValidator(matching(_GITHUB_REPO, "owner/name"))] | None = None
    reviewers: list[Reviewer] = Field(default_factory=list)
    wait_timer_minutes: int = Field(default=0, ge=0, le=43200)

    @model_validator(mode="after")
    def _repository_when_enabled(self) -> GitHubConfig:
        if self.enabled and self.repository is None:
            raise ValueError("repository: missing; allowed: owner/name when github.enabled is true")
        return self


class FreezeWindow(Model):
    """A period in which nothing is promoted into the stack."""

    start: datetime
    end: datetime
    reason: str = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> FreezeWindow:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("allowed: ISO 8601 times with a zone, e.g. 2026-12-24T00:00:00Z")
        if self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} is not after start; allowed: end > start")
        return self


class PromotionConfig(Model):
    """Gates for ``dockyard promote`` into this stack."""

    upstream: str | None = Field(default=None, description="stack whose image this stack receives")
    soak_minutes: int = Field(default=0, ge=0, le=60 * 24 * 30)
    freeze_windows: list[FreezeWindow] = Field(default_factory=list)
    require_verification: bool | None = Field(
        default=None,
        description="take only digests whose latest dockyard verify on the upstream passed; default: true in the "
        "qa, staging and prod tiers",
    )


class ScanConfig(Model):
    """A vulnerability scan is required: of every build before it is signed, and of every digest promoted in."""

    db_repository: str = Field(
        default=DEFAULT_DB_REPOSITORY,
        description="OCI repository of trivy's vulnerability DB (--db-repository); the local stacks name the one "
        "scripts/local-vuln-db.sh publishes in the local registry",
    )
    severities: list[Severity] = Field(
        default_factory=lambda: list(SEVERITIES), min_length=1, description="severities that refuse a digest"
    )


def _regular_expression(value: str) -> str:
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"not a regular expression ({error}); allowed: e.g. ^https://github.com/acme/.+$") from None
    return value


class TrustedIdentity(Model):
    """A keyless signer (sigstore): the identity its Fulcio certificate names, exact or by regular expression, and
    the OIDC issuer that vouched for it (a CI workflow: the workflow file at a ref, and the CI's token issuer)."""

    issuer: str = Field(min_length=1, description="OIDC issuer, e.g. https://token.actions.githubusercontent.com")
    identity: str | None = Field(
        default=None,
        description="exact certificate identity, e.g. https://github.com/OWNER/REPO/.github/workflows/FILE@refs/heads/main",
    )
    identity_regexp: Annotated[str, AfterValidator(_regular_expression)] | None = Field(
        default=None, description="certificate identity as a regular expression (instead of identity)"
    )

    @model_validator(mode="after")
    def _one_subject(self) -> TrustedIdentity:
        if (self.identity is None) == (self.identity_regexp is None):
            raise ValueError("allowed: exactly one of identity or identityRegexp, beside issuer")
        return self


class SigningConfig(Model):
    """Supply-chain trust: who a digest this stack runs must be signed by (a key, keyless identities, or both), what
    it must carry beside the signature, and the key that signs this stack's own builds and verifications."""

    public_key_file: str | None = Field(
        default=None,
        description="cosign public key (PEM), relative to the project: a trusted signer of the digests this stack "
        "runs and of its upstream's verifications; the stack signs its builds and verifications with the matching "
        "dockyard:cosignPrivateKey",
    )
    identities: list[TrustedIdentity] = Field(
        default_factory=list, description="trusted keyless signers (sigstore; verified online against Fulcio and Rekor)"
    )
    require_sbom: bool = Field(default=True, description="digests also carry a signed SPDX SBOM attestation")
    scan: ScanConfig | None = Field(
        default=None,
        description="require a vulnerability scan: a building stack scans each build before signing it (and attests "
        "the scan); a promotion into this stack re-scans the digest against the current DB",
    )

    @model_validator(mode="after")
    def _someone_trusted(self) -> SigningConfig:
        if self.public_key_file is None and not self.identities:
            raise ValueError("allowed: publicKeyFile, identities, or both: a trust policy names whom it trusts")
        return self


#: The tiers a merge request's environment may be made from. Staging and prod take only releases verified upstream
#: and run with the credentials of the environments people use; a merge request's digest is unreviewed code.
MERGE_REQUEST_TIERS = (Tier.DEV, Tier.QA)


class MergeRequestConfig(Model):
    """This stack is a merge request's environment (``dockyard env create``): made from a template stack, destroyed
    when the merge request closes (``dockyard env destroy``) or once it expires (``dockyard env sweep``)."""

    id: int = Field(ge=1, description="the merge (pull) request's number")
    template: str = Field(min_length=1, description="the stack it was made from")
    expires: datetime = Field(description="when dockyard env sweep destroys it (ISO 8601 with a zone)")

    @model_validator(mode="after")
    def _zoned(self) -> MergeRequestConfig:
        if self.expires.tzinfo is None:
            raise ValueError("expires: a time without a zone; allowed: ISO 8601 with a zone, e.g. 2026-12-08T10:00:00Z")
        return self


class EnvironmentConfig(Model):
    """Everything non-secret that ``Pulumi.<stack>.yaml`` says under ``dockyard:``."""

    tier: Tier = Field(description="dev builds; qa, staging and prod only deploy promoted digests")
    registry: RegistryConfig = Field(description="where images are pushed and pulled")
    image: ImageConfig = Field(description="build here, or deploy a promoted reference")
    kubernetes: KubernetesConfig = Field(description="the Deployment, its Service and guard rails")
    github: GitHubConfig = Field(default=GitHubConfig(), description="GitHub environment, secrets and workflows")
    promotion: PromotionConfig = Field(default=PromotionConfig(), description="where releases come from, gates")
    signing: SigningConfig | None = Field(
        default=None, description="trust policy: signatures every update and promotion requires; signs builds"
    )
    notifications: list[Webhook] = Field(
        default_factory=list,
        description="webhooks told of builds that fail, deployments, promotions, switches, aborted canaries, "
        "rollbacks and failed verifications",
    )
    merge_request: MergeRequestConfig | None = Field(
        default=None, description="set by dockyard env create: the merge request this stack is the environment of"
    )

    @property
    def served_image(self) -> str | None:
        """The image this stack's traffic goes to, from its config (None on a building stack: the build decides)."""
        return self.kubernetes.strategy.served_image(self.image.ref)

    @property
    def signs_with_key(self) -> bool:
        """The stack holds a key pair (``signing.publicKeyFile``): it signs its builds and attests its verifications.
        A policy of keyless identities only trusts what CI signs; the stack itself signs nothing."""
        return self.signing is not None and self.signing.public_key_file is not None

    @property
    def running_images(self) -> dict[str, str]:
        """Every image a Deployment of this stack runs, by track, as its strategy says: a track's own image or
        ``image.ref``. A track with no release yet runs nothing; on a building stack the build's output (known only
        once it is pushed, and signed in the same update) is not among them."""
        return {
            track.name: image
            for track in self.kubernetes.tracks
            if (image := track.image_or(self.image.ref)) is not None
        }

    @property
    def hold_minutes(self) -> int:
        """How long CI holds a job that deploys into this stack before it starts: prod's wait timer, and at least the
        promotion soak, so a pipeline's promotion waits the soak out instead of being refused by the soak gate (the
        upstream was deployed just before, in the same run)."""
        wait_timer = self.github.wait_timer_minutes if self.tier == Tier.PROD else 0
        return max(wait_timer, self.promotion.soak_minutes)

    @property
    def requires_verified_releases(self) -> bool:
        """Promotions into this stack take only digests verified on the upstream: the tier's rule, unless config
        says otherwise (``promotion.requireVerification``)."""
        configured = self.promotion.require_verification
        return self.tier.promoted_only if configured is None else configured

    @model_validator(mode="after")
    def _tier_rules(self) -> EnvironmentConfig:
        problems: list[str] = []
        if self.tier.promoted_only:
            problems += _promoted_only_problems(self)
        if self.tier == Tier.PROD:
            problems += _prod_problems(self)
        problems += self.kubernetes.strategy.image_problems(self.image.build is not None, self.image.ref)
        builds = self.image.build is not None and not self.tier.promoted_only  # a promoted tier refuses it above
        if builds and self.signing is not None and self.signing.public_key_file is None:
            problems.append(
                "signing.publicKeyFile: missing on a building stack; allowed: the public key of the pair that signs "
                "its builds (keyless identities are for the stacks it promotes into)"
            )
        problems += _merge_request_problems(self)
        if problems:
            raise ValueError(" | ".join(problems))
        return self


def _merge_request_problems(env: EnvironmentConfig) -> list[str]:
    if env.merge_request is None:
        return []
    problems = []
    if env.tier not in MERGE_REQUEST_TIERS:
        allowed = " or ".join(MERGE_REQUEST_TIERS)
        problems.append(f"mergeRequest: set in tier {env.tier}; allowed in tier {allowed} only (unreviewed code)")
    if env.github.enabled:
        # CiPipeline would manage the repository's environments, secrets and workflows from an MR's stack.
        problems.append("github.enabled: true in a merge request's environment; allowed: false")
    return problems


def _promoted_only_problems(env: EnvironmentConfig) -> list[str]:
    problems = []
    if env.image.build is not None:
        problems.append(f"image.build: set in tier {env.tier}; allowed: only image.ref, {env.tier} never builds")
    refs = {"image.ref": env.image.ref, **env.kubernetes.strategy.images}
    for key, ref in refs.items():
        if ref is not None and not parse_image_reference(ref).is_digest_pinned:
            problems.append(
                f"{key}: {ref!r} is not digest-pinned; allowed in {env.tier}: registry/repo@sha256:<64 hex>"
            )
    return problems


def _prod_problems(env: EnvironmentConfig) -> list[str]:
    problems = []
    k8s = env.kubernetes
    if k8s.replicas < 2:
        problems.append(f"kubernetes.replicas: {k8s.replicas}; allowed in prod: 2 or more")
    if k8s.autoscaling is not None and k8s.autoscaling.min_replicas < 2:
        problems.append(
            f"kubernetes.autoscaling.minReplicas: {k8s.autoscaling.min_replicas}; allowed in prod: 2 or more"
        )
    if k8s.resources.limits is None:
        problems.append("kubernetes.resources.limits: missing; allowed in prod: cpu and memory limits")
    # A render-only prod (GitOps hand-off) is approved where the manifests are applied, and the local control plane
    # is a throw-away cluster on this machine; any other prod that Dockyard applies is gated by GitHub reviewers.
    if k8s.mode == "cluster" and not k8s.local_cluster and not env.github.enabled:
        problems.append(
            "github.enabled: false; allowed in prod with kubernetes.mode=cluster: true (approval gate), "
            f"or kubernetes.context={LOCAL_CLUSTER_CONTEXT} (the local cluster)"
        )
    if env.github.enabled and not env.github.reviewers:
        problems.append("github.reviewers: empty; allowed in prod: at least one required reviewer")
    return problems


# --- loading --------------------------------------------------------------------------------------------------


def parse_environment(stack: str, document: Mapping[str, Any]) -> EnvironmentConfig:
    """Validate the non-secret ``dockyard:`` keys (without the namespace prefix); raise :class:`ConfigError`."""
    if not isinstance(document, Mapping):
        raise ConfigError([Problem(stack, NAMESPACE, f"found {format_found(document)}", "allowed: a mapping of keys")])
    keys = dict(document)
    # Checked apart, so the model never quotes what may be a plaintext URL; the other keys are still validated.
    shape = notifications.shape_problem(stack, keys["notifications"]) if "notifications" in keys else None
    problems = [] if shape is None else [shape]
    if shape is not None:
        del keys["notifications"]
    try:
        env = EnvironmentConfig.model_validate(keys, by_alias=True)
    except ValidationError as error:
        raise ConfigError(validation_problems(stack, NAMESPACE, EnvironmentConfig, error) + problems) from None
    if problems:
        raise ConfigError(problems)
    return env


def read_stack_document(path: Path) -> dict[str, Any]:
    """A parsed ``Pulumi.<stack>.yaml``: the one place a stack file is read for its config."""
    document = yaml.safe_load(path.read_text()) or {}
    return dict(document)


def written_keys(document: Mapping[str, Any]) -> dict[str, Any]:
    """Every ``dockyard:`` key of a parsed stack file as written, without the namespace.

    Encrypted values stay as the file holds them: ``{secure: v1:...}``.
    """
    config = document.get("config") or {}
    prefix = f"{NAMESPACE}:"
    return {key.removeprefix(prefix): value for key, value in config.items() if key.startswith(prefix)}


def plaintext_keys(document: Mapping[str, Any]) -> dict[str, Any]:
    """The ``dockyard:`` keys of a parsed stack file, without the namespace (secure values skipped)."""
    return {key: value for key, value in written_keys(document).items() if key not in SECRET_KEYS}


def read_stack_file(path: Path) -> dict[str, Any]:
    """The ``dockyard:`` keys of a ``Pulumi.<stack>.yaml`` file, without the namespace (secure values skipped)."""
    return plaintext_keys(read_stack_document(path))


def stack_file(project_dir: Path, stack: str) -> Path:
    """Where the engine reads and ``pulumi config set`` writes a stack's config."""
    return project_dir / f"Pulumi.{stack}.yaml"


def stack_names(project_dir: Path) -> list[str]:
    """The project's stacks: one ``Pulumi.<stack>.yaml`` each."""
    return sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in project_dir.glob("Pulumi.*.yaml"))


def stack_document(project_dir: Path, stack: str) -> dict[str, Any]:
    """The parsed stack file of ``stack``; an unknown stack raises :class:`ConfigError` naming the known ones."""
    path = stack_file(project_dir, stack)
    if not path.is_file():
        known = stack_names(project_dir)
        raise ConfigError(
            [Problem(stack, None, f"no such stack (no {path.name})", f"known stacks: {', '.join(known)}")]
        )
    return read_stack_document(path)


def environment_from_file(project_dir: Path, stack: str) -> EnvironmentConfig:
    """Validate a stack's committed config file without the engine (used by the CLI and tests)."""
    return parse_environment(stack, plaintext_keys(stack_document(project_dir, stack)))
