"""ContainerRegistry: where a stack's images live, and the credentials to reach it."""

# No `from __future__ import annotations`: Pulumi's component provider reads the Args and output annotations
# as live types to infer the schema other languages use.

import base64
import json
from enum import StrEnum
from typing import NotRequired, TypedDict

import pulumi


class RegistryKind(StrEnum):
    """Where images live; the cloud kinds authenticate with short-lived OIDC-derived tokens."""

    GHCR = "ghcr"
    DOCKER_HUB = "dockerHub"
    SELF_HOSTED = "selfHosted"
    ECR = "ecr"
    ACR = "acr"
    GAR = "gar"
    GCR = "gcr"

    @property
    def cloud(self) -> bool:
        """Logged in to with a token from the cloud's OIDC federation, pulled from through workload identity."""
        return self in TOKEN_USERNAMES


DEFAULT_SERVERS = {RegistryKind.GHCR: "ghcr.io", RegistryKind.DOCKER_HUB: "docker.io", RegistryKind.GCR: "gcr.io"}

#: The fixed user name each cloud's registry token is presented with (``docker login -u``).
TOKEN_USERNAMES = {
    RegistryKind.ECR: "AWS",
    RegistryKind.ACR: "00000000-0000-0000-0000-000000000000",
    RegistryKind.GAR: "oauth2accesstoken",
    RegistryKind.GCR: "oauth2accesstoken",
}


class ContainerRegistryArgs(TypedDict):
    kind: RegistryKind
    """ghcr, dockerHub, selfHosted, or a cloud registry: ecr, acr, gar, gcr."""
    server: NotRequired[str]
    """host[:port]; defaults by kind (ghcr.io, docker.io, gcr.io); required for selfHosted, ecr, acr and gar."""
    repository: str
    """Repository path inside the registry, e.g. acme/shop-api."""
    username: pulumi.Input[str]
    """User that pushes (CI) and pulls (the cluster)."""
    password: NotRequired[pulumi.Input[str]]
    """Password or token, a Pulumi secret; left out when previewing without credentials. A cloud registry's is a token
    CI's OIDC login minted for this run: it expires within hours, so no pull Secret is made of it by default."""


def docker_config_json(server: str, username: str, password: str) -> str:
    """The ``~/.docker/config.json`` document Kubernetes pull secrets and ``docker login`` understand."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps({"auths": {server: {"username": username, "password": password, "auth": auth}}})


class ContainerRegistry(pulumi.ComponentResource):
    """A registry repository and its credentials, shared by the image build, CI and the cluster's pull secret.

    The registry itself already exists (GHCR, Docker Hub, a self-hosted distribution registry, or a cloud's: ECR, ACR,
    Artifact Registry, GCR); this component gives every consumer the same names and keeps the password a secret end
    to end.
    """

    server: pulumi.Output[str]
    """Registry host[:port]."""
    image_name: pulumi.Output[str]
    """``server/repository``, the name images are pushed under."""
    username: pulumi.Output[str]
    """User that pushes and pulls."""
    password: pulumi.Output[str] | None
    """The password, still a secret; None without credentials."""
    docker_config_json: pulumi.Output[str] | None
    """Secret docker config JSON for ``kubernetes.io/dockerconfigjson`` Secrets and CI logins."""

    def __init__(self, name: str, args: ContainerRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dockyard:index:ContainerRegistry", name, None, opts)
        kind = RegistryKind(args["kind"])
        server = args.get("server") or DEFAULT_SERVERS.get(kind)
        if not server:
            raise ValueError(f"{name}: a {kind} registry needs a server (host[:port])")
        # Docker Hub stores images under docker.io but authenticates against index.docker.io.
        auth_server = "https://index.docker.io/v1/" if kind == RegistryKind.DOCKER_HUB else server

        self.server = pulumi.Output.from_input(server)
        self.image_name = pulumi.Output.from_input(f"{server}/{args['repository']}")
        self.username = pulumi.Output.from_input(args["username"])
        password = args.get("password")
        self.password = pulumi.Output.secret(password) if password is not None else None
        self.docker_config_json = (
            pulumi.Output.secret(
                pulumi.Output.all(self.username, self.password).apply(
                    lambda creds: docker_config_json(auth_server, creds[0], creds[1])
                )
            )
            if self.password is not None
            else None
        )
        self.register_outputs(
            {
                "server": self.server,
                "imageName": self.image_name,
                "username": self.username,
                "dockerConfigJson": self.docker_config_json,
            }
        )
