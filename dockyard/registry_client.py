"""Registry HTTP API v2: does a manifest exist? Basic auth, and the bearer-token challenge GHCR and Docker Hub use."""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass

import httpx

from components.config import RegistryConfig
from components.image_ref import parse_image_reference

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class RegistryUnreachableError(Exception):
    """The registry did not answer, or refused the credentials."""


@dataclass(frozen=True)
class RegistryCredentials:
    username: str
    password: str | None
    ca_file: str | None


def credentials_for(registry: RegistryConfig) -> RegistryCredentials:
    """Credentials from the environment: ``registry.passwordEnv``; the CA from ``caFile`` or DOCKYARD_REGISTRY_CA."""
    password = os.environ.get(registry.password_env) if registry.password_env else None
    ca_file = registry.ca_file or os.environ.get("DOCKYARD_REGISTRY_CA")
    return RegistryCredentials(registry.username, password, ca_file)


def _bearer_token(client: httpx.Client, challenge: str, auth: httpx.BasicAuth | None) -> str:
    fields = dict(_CHALLENGE.findall(challenge))
    params = {key: fields[key] for key in ("service", "scope") if key in fields}
    response = client.get(fields["realm"], params=params, auth=auth or httpx.USE_CLIENT_DEFAULT)
    if response.status_code != 200:
        raise RegistryUnreachableError(f"token endpoint {fields['realm']} answered {response.status_code}")
    body = response.json()
    return str(body.get("token") or body.get("access_token"))


def manifest_exists(image_ref: str, credentials: RegistryCredentials, timeout: float = 10.0) -> bool:
    """True when ``registry/repo@sha256:...`` resolves in its registry; raises :class:`RegistryUnreachableError`."""
    reference = parse_image_reference(image_ref)
    if not reference.registry or reference.digest is None:
        raise ValueError(f"{image_ref} must name its registry and a digest")
    url = f"https://{reference.registry}/v2/{reference.repository}/manifests/{reference.digest}"
    auth = httpx.BasicAuth(credentials.username, credentials.password) if credentials.password else None
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=credentials.ca_file) if credentials.ca_file else True
    )
    headers = {"Accept": MANIFEST_TYPES}
    try:
        # Basic auth goes on the first request only: client-level auth would overwrite the bearer token below.
        with httpx.Client(verify=verify, timeout=timeout) as client:
            response = client.head(url, headers=headers, auth=auth or httpx.USE_CLIENT_DEFAULT)
            challenge = response.headers.get("www-authenticate", "")
            if response.status_code == 401 and challenge.lower().startswith("bearer "):
                token = _bearer_token(client, challenge[7:], auth)
                response = client.head(url, headers={**headers, "Authorization": f"Bearer {token}"})
    except httpx.HTTPError as error:
        raise RegistryUnreachableError(f"{reference.registry}: {error.__class__.__name__}: {error}") from None
    if response.status_code in (401, 403):
        raise RegistryUnreachableError(f"{reference.registry} refused the credentials of {credentials.username!r}")
    if response.status_code == 404:
        return False
    if response.status_code != 200:
        raise RegistryUnreachableError(f"{reference.registry} answered HTTP {response.status_code} for {url}")
    return str(response.headers.get("docker-content-digest", reference.digest)) == reference.digest
