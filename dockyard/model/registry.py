"""Config of the registry a stack pushes to and pulls from (``dockyard:registry``), and of CI's login to it.

Kinds: ``ghcr``, ``dockerHub`` and ``selfHosted`` log in with a username and a password or token; the cloud kinds
``ecr`` (Amazon), ``acr`` (Azure) and ``gar`` (Google Artifact Registry) log in with a short-lived token that CI gets
from the cloud's own OIDC federation (``aws``, ``azure``, ``gcp`` below: identifiers, none of them secret), so no
long-lived cloud key is ever stored in CI. ``gcr`` is a separate kind, not an alias of ``gar``: Container Registry's
hosts (``gcr.io``, ``us.gcr.io``, ...) and its ``<project>/<image>`` paths differ from Artifact Registry's
``<region>-docker.pkg.dev`` and ``<project>/<repository>/<image>``; Google now serves ``gcr.io`` from Artifact
Registry ("gcr.io repositories"), so the kind exists for images that keep those names.

In the cluster a cloud registry is reached through the cluster's workload identity (EKS node role or IRSA, AKS
kubelet identity with AcrPull, GKE's node service account or Workload Identity): no pull Secret unless
``pullSecret: true``. Such a Secret would hold a registry token that expires (ECR 12 h, ACR 3 h, Google 1 h) and
breaks pulls, so ask for one only where something refreshes it.

The Registry API's own vocabulary that the credential check and the CLI's client share (its hosts, its auth
challenge) lives here too, so the CLI never imports the check's dynamic resource.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

# The kinds and their defaults belong to the ContainerRegistry component; the config re-exports them.
from dockyard_components.registry import DEFAULT_SERVERS as DEFAULT_SERVERS
from dockyard_components.registry import TOKEN_USERNAMES as TOKEN_USERNAMES
from dockyard_components.registry import RegistryKind as RegistryKind


class _Model(BaseModel):
    # The same settings as dockyard.model.config's sections: camelCase keys, typos refused, immutable.
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATH_COMPONENT = r"[a-z0-9]+([._-][a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_PATH_COMPONENT}(/{_PATH_COMPONENT})*$")
_ECR_SERVER = re.compile(r"^(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z]{2}(-[a-z]+)+-[0-9])\.amazonaws\.com$")
_ACR_SERVER = re.compile(r"^(?P<name>[a-z0-9]{5,50})\.azurecr\.io$")
_GAR_SERVER = re.compile(r"^(?P<region>[a-z]+([0-9a-z-]*[0-9a-z])?)-docker\.pkg\.dev$")
_GCR_SERVERS = ("gcr.io", "us.gcr.io", "eu.gcr.io", "asia.gcr.io")
_GCP_PROJECT = r"[a-z][a-z0-9-]{4,28}[a-z0-9]"
_GAR_REPOSITORY = re.compile(rf"^{_GCP_PROJECT}/[a-z]([a-z0-9-]*[a-z0-9])?(/{_PATH_COMPONENT})+$")
_GCR_REPOSITORY = re.compile(rf"^{_GCP_PROJECT}(/{_PATH_COMPONENT})+$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ROLE_ARN = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
_WORKLOAD_PROVIDER = re.compile(
    r"^projects/[0-9]+/locations/global/workloadIdentityPools/[a-z0-9-]{4,32}/providers/[a-z0-9-]{4,32}$"
)
_SERVICE_ACCOUNT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$")


def _matching(pattern: re.Pattern[str], allowed: str) -> Any:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"allowed: {allowed}")
        return value

    return AfterValidator(check)


Uuid = Annotated[str, _matching(_UUID, "a GUID like 0a1b2c3d-0000-4000-8000-00000000abcd (lower-case)")]


class AwsLogin(_Model):
    """CI's OIDC login to AWS (``ecr``): the IAM role CI assumes with its identity token; the region is the ECR
    server's."""

    role_arn: Annotated[str, _matching(_ROLE_ARN, "arn:aws:iam::<12-digit account>:role/<name>")] = Field(
        description="IAM role whose trust policy admits the CI system's OIDC provider; it may push to the repository"
    )


class AzureLogin(_Model):
    """CI's OIDC login to Azure (``acr``): an app registration or managed identity with a federated credential."""

    client_id: Uuid = Field(description="client (application) ID holding the federated credential and AcrPush")
    tenant_id: Uuid = Field(description="directory (tenant) ID")
    subscription_id: Uuid = Field(description="subscription of the registry")


class GcpLogin(_Model):
    """CI's OIDC login to Google Cloud (``gar``, ``gcr``): Workload Identity Federation."""

    workload_identity_provider: Annotated[
        str,
        _matching(
            _WORKLOAD_PROVIDER,
            "projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>",
        ),
    ] = Field(description="full resource name of the workload identity provider")
    service_account: Annotated[str, _matching(_SERVICE_ACCOUNT, "<name>@<project>.iam.gserviceaccount.com")] = Field(
        description="service account CI impersonates; it may write to the repository"
    )


#: The login block each cloud kind takes, by its YAML key.
_LOGIN_KEYS = {RegistryKind.ECR: "aws", RegistryKind.ACR: "azure", RegistryKind.GAR: "gcp", RegistryKind.GCR: "gcp"}


def _server_problem(kind: RegistryKind, server: str | None) -> str | None:
    """Why ``server`` is not a ``kind`` registry host, or None."""
    if kind == RegistryKind.SELF_HOSTED and not server:
        return "server: missing; allowed: host[:port] of the self-hosted registry"
    allowed = {
        RegistryKind.ECR: (_ECR_SERVER, "<12-digit account>.dkr.ecr.<region>.amazonaws.com"),
        RegistryKind.ACR: (_ACR_SERVER, "<registry name, 5-50 lower-case letters or digits>.azurecr.io"),
        RegistryKind.GAR: (_GAR_SERVER, "<region>-docker.pkg.dev, e.g. europe-west4-docker.pkg.dev"),
    }.get(kind)
    if allowed is not None:
        pattern, text = allowed
        if server is None:
            return f"server: missing; allowed for {kind}: {text}"
        if not pattern.match(server):
            return f"server: found {server!r}; allowed for {kind}: {text}"
    if kind == RegistryKind.GCR and server is not None and server not in _GCR_SERVERS:
        return f"server: found {server!r}; allowed for gcr: {', '.join(_GCR_SERVERS)}"
    return None


def _repository_problem(kind: RegistryKind, repository: str) -> str | None:
    if kind == RegistryKind.GAR and not _GAR_REPOSITORY.match(repository):
        return f"repository: found {repository!r}; allowed for gar: <project>/<repository>/<image>, e.g. acme-prod/apps/shop"
    if kind == RegistryKind.GCR and not _GCR_REPOSITORY.match(repository):
        return f"repository: found {repository!r}; allowed for gcr: <project>/<image>, e.g. acme-prod/shop"
    return None


class RegistryConfig(_Model):
    """Where images are pushed and pulled from."""

    kind: RegistryKind
    server: str | None = Field(
        default=None,
        description="host[:port]; defaults to ghcr.io / docker.io / gcr.io by kind; ecr, acr, gar and selfHosted "
        "name theirs",
    )
    repository: Annotated[str, _matching(_REPOSITORY, "a lower-case repository path like acme/shop-api")] = Field(
        description="repository path inside the registry, e.g. acme/shop-api (gar: project/repository/image)"
    )
    username: str = Field(
        min_length=1, description="user that pushes and pulls; cloud kinds: the token's fixed user, by default"
    )
    password_env: Annotated[str, _matching(_ENV_NAME, "an environment variable name like LOG_LEVEL")] | None = Field(
        default=None,
        description="read the password from this environment variable instead of dockyard:registryPassword; "
        "cloud kinds: CI writes the short-lived token from its OIDC login here",
    )
    ca_file: str | None = Field(default=None, description="CA bundle that signs a self-hosted registry's TLS")
    pull_secret: bool | None = Field(
        default=None,
        description="create an image pull Secret from the registry credentials; default: yes for ghcr, dockerHub "
        "and selfHosted, no for cloud kinds (the cluster's workload identity pulls; a token in a Secret expires)",
    )
    aws: AwsLogin | None = Field(default=None, description="ecr: CI's OIDC login to AWS")
    azure: AzureLogin | None = Field(default=None, description="acr: CI's OIDC login to Azure")
    gcp: GcpLogin | None = Field(default=None, description="gar, gcr: CI's OIDC login to Google Cloud")

    @model_validator(mode="before")
    @classmethod
    def _token_username(cls, data: Any) -> Any:
        # A cloud registry's token always comes with the same user name, so nobody has to write it.
        if isinstance(data, dict) and data.get("username") is None:
            try:
                kind = RegistryKind(str(data.get("kind")))
            except ValueError:
                return data
            if kind in TOKEN_USERNAMES:
                return {**data, "username": TOKEN_USERNAMES[kind]}
        return data

    @model_validator(mode="after")
    def _matches_kind(self) -> RegistryConfig:
        problems = [
            problem
            for problem in (_server_problem(self.kind, self.server), _repository_problem(self.kind, self.repository))
            if problem is not None
        ]
        token_user = TOKEN_USERNAMES.get(self.kind)
        if token_user is not None and self.username != token_user:
            problems.append(
                f"username: found {self.username!r}; allowed for {self.kind}: {token_user} (the token's user) "
                "or leave it out"
            )
        wanted = _LOGIN_KEYS.get(self.kind)
        for key in ("aws", "azure", "gcp"):
            if key != wanted and getattr(self, key) is not None:
                allowed = f"only {wanted}" if wanted else "no cloud login"
                problems.append(f"{key}: set for kind {self.kind}; allowed: {allowed}")
        if self.kind.cloud and self.ca_file is not None:
            problems.append(f"caFile: set for kind {self.kind}; allowed: only for selfHosted (clouds use public CAs)")
        if problems:
            raise ValueError(" | ".join(problems))
        return self

    @property
    def host(self) -> str:
        return self.server or DEFAULT_SERVERS[self.kind]

    @property
    def image_name(self) -> str:
        return f"{self.host}/{self.repository}"

    @property
    def ca_bundle(self) -> str | None:
        """``caFile``, else ``DOCKYARD_REGISTRY_CA`` (exported for the local registry by scripts/local-env.sh)."""
        return self.ca_file or os.environ.get("DOCKYARD_REGISTRY_CA") or None

    @property
    def wants_pull_secret(self) -> bool:
        """Whether the cluster pulls with a Secret of these credentials (cloud kinds: only when config asks)."""
        return self.pull_secret if self.pull_secret is not None else not self.kind.cloud

    @property
    def login_key(self) -> str | None:
        """The YAML key of the cloud login block this kind needs in CI (``aws``, ``azure``, ``gcp``), or None."""
        return _LOGIN_KEYS.get(self.kind)

    @property
    def cloud_login(self) -> AwsLogin | AzureLogin | GcpLogin | None:
        key = self.login_key
        login: AwsLogin | AzureLogin | GcpLogin | None = getattr(self, key) if key else None
        return login

    @property
    def region(self) -> str | None:
        """The AWS region of an ECR server (its token is per region)."""
        match = _ECR_SERVER.match(self.host) if self.kind == RegistryKind.ECR else None
        return match["region"] if match else None

    @property
    def acr_name(self) -> str | None:
        """The registry name of an ACR server (``az acr login --name``)."""
        match = _ACR_SERVER.match(self.host) if self.kind == RegistryKind.ACR else None
        return match["name"] if match else None


# --- the Registry API -------------------------------------------------------------------------------------------

#: Where Docker Hub answers the Registry API (``docker.io`` is only the name images carry).
API_HOSTS = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
LOCAL_START = "scripts/local-services.sh start"
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="…",service="…"`` → (``bearer``, {realm, service, …})."""
    scheme, _, params = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE.findall(params))


def local_start_command(server: str) -> str | None:
    """The command that starts the registry at ``server`` when it is this machine's local registry."""
    return LOCAL_START if server.rsplit(":", 1)[0] in LOCAL_HOSTS else None
