"""Registry HTTP API v2: does a manifest exist, what labels does an image carry. Basic and bearer-token auth."""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from dockyard.model.credentials import RegistryCredentials
from dockyard.model.registry import parse_challenge
from dockyard.releases.errors import DockyardError
from dockyard_components.image_ref import parse_image_reference

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


class RegistryUnreachableError(DockyardError):
    """The registry did not answer, or refused the credentials."""


class RegistrySession:
    """One repository of one registry over HTTP API v2: basic auth first, then the bearer token GHCR and Docker Hub
    hand out in their ``WWW-Authenticate`` challenge, kept for the session's later requests."""

    def __init__(
        self,
        image_ref: str,
        credentials: RegistryCredentials,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        reference = parse_image_reference(image_ref)
        if not reference.registry or reference.digest is None:
            raise ValueError(f"{image_ref} must name its registry and a digest")
        self.registry = reference.registry
        self.digest = reference.digest
        self.base = f"https://{reference.registry}/v2/{reference.repository}"
        self._auth = httpx.BasicAuth(credentials.username, credentials.password) if credentials.password else None
        self._username = credentials.username
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=credentials.ca_file) if credentials.ca_file else True
        )
        self._client = httpx.Client(verify=verify, timeout=timeout, transport=transport, trust_env=False)
        self._headers = {"Accept": MANIFEST_TYPES}

    def __enter__(self) -> RegistrySession:
        return self

    def __exit__(self, *_: object) -> None:
        self._client.close()

    def request(self, method: str, path: str) -> httpx.Response:
        """``method`` on ``/v2/<repo><path>``; maps transport failures and refused credentials to one error."""
        try:
            response = self._send(method, path)
            scheme, challenge = parse_challenge(response.headers.get("www-authenticate", ""))
            if response.status_code == 401 and scheme == "bearer":
                # Per request, not on the client: client-level basic auth would overwrite the bearer header.
                self._headers["Authorization"] = f"Bearer {self._bearer_token(challenge)}"
                response = self._send(method, path)
        except httpx.HTTPError as error:
            raise RegistryUnreachableError(f"{self.registry}: {error.__class__.__name__}: {error}") from None
        if response.status_code in (401, 403):
            raise RegistryUnreachableError(f"{self.registry} refused the credentials of {self._username!r}")
        return response

    def json(self, path: str) -> Any:
        response = self.request("GET", path)
        if response.status_code != 200:
            raise RegistryUnreachableError(f"{self.registry} answered HTTP {response.status_code} for {path}")
        return response.json()

    def _send(self, method: str, path: str) -> httpx.Response:
        bearer = "Authorization" in self._headers
        auth = self._auth if self._auth and not bearer else httpx.USE_CLIENT_DEFAULT
        return self._client.request(method, self.base + path, headers=self._headers, auth=auth, follow_redirects=True)

    def _bearer_token(self, fields: dict[str, str]) -> str:
        params: dict[str, str] = {key: fields[key] for key in ("service", "scope") if key in fields}
        response = self._client.get(fields["realm"], params=params, auth=self._auth or httpx.USE_CLIENT_DEFAULT)
        if response.status_code != 200:
            raise RegistryUnreachableError(f"token endpoint {fields['realm']} answered {response.status_code}")
        body = response.json()
        return str(body.get("token") or body.get("access_token"))


def manifest_exists(
    image_ref: str,
    credentials: RegistryCredentials,
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> bool:
    """True when ``registry/repo@sha256:...`` resolves in its registry; raises :class:`RegistryUnreachableError`."""
    with RegistrySession(image_ref, credentials, timeout, transport) as session:
        response = session.request("HEAD", f"/manifests/{session.digest}")
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise RegistryUnreachableError(f"{session.registry} answered HTTP {response.status_code} for {image_ref}")
        return str(response.headers.get("docker-content-digest", session.digest)) == session.digest


def index_platforms(
    image_ref: str, credentials: RegistryCredentials, transport: httpx.BaseTransport | None = None
) -> list[str]:
    """The platforms (``os/arch``) of the image index ``registry/repo@sha256:...``, in its order; empty for a single
    image. Entries that are no platform's image (BuildKit's attestation manifests, ``unknown/unknown``) are left out."""
    with RegistrySession(image_ref, credentials, transport=transport) as session:
        manifest = session.json(f"/manifests/{session.digest}")
    platforms = [entry.get("platform") or {} for entry in manifest.get("manifests") or []]
    return [f"{p['os']}/{p['architecture']}" for p in platforms if p.get("os") not in (None, "unknown")]


def image_labels(
    image_ref: str, credentials: RegistryCredentials, transport: httpx.BaseTransport | None = None
) -> dict[str, str]:
    """The OCI config labels of ``registry/repo@sha256:...`` (an index resolves to its linux/amd64 image)."""
    with RegistrySession(image_ref, credentials, transport=transport) as session:
        manifest = session.json(f"/manifests/{session.digest}")
        if "manifests" in manifest:
            chosen = next(
                (m for m in manifest["manifests"] if m.get("platform", {}).get("architecture") == "amd64"),
                manifest["manifests"][0],
            )
            manifest = session.json(f"/manifests/{chosen['digest']}")
        labels = (session.json(f"/blobs/{manifest['config']['digest']}").get("config") or {}).get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()}
