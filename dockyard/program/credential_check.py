"""Registry credentials are checked against the registry (Registry API v2 auth) before anything uses them.

``RegistryCredentialCheck`` is a dynamic resource whose inputs are the registry, the user and a salted hash of the
password (never the password: the provider reads it from the same place the program does). Its provider's ``check`` (which runs on ``preview`` and ``up``) asks the registry only when the credential
changed: ``GET /v2/`` with basic auth, or, for a token registry, the ``WWW-Authenticate: Bearer`` challenge's realm.
A refusal fails the run through the engine's own input-validation path (a one-line reason, no traceback) before the
pull Secret or the build that use the credential are touched: they take the credential through this resource.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from dataclasses import dataclass
from typing import Any, TypedDict

import httpx
import pulumi
import pulumi.dynamic as dynamic
from pulumi.runtime import rpc

from dockyard.model.credentials import registry_password
from dockyard.model.registry import API_HOSTS, local_start_command, parse_challenge

TIMEOUT_SECONDS = 10.0
#: Inputs whose change means a new credential to check; the rest (password, CA, wording) ride along.
CREDENTIAL_KEYS = ("server", "username", "credential_hash")


class RegistryAuthError(Exception):
    """The registry refused the credential or could not be asked; the message names the part and the next step."""


@dataclass(frozen=True)
class Credential:
    server: str
    """host[:port] as the stack names it."""
    repository: str
    """Repository path, the scope a token registry is asked for."""
    username: str
    password: str
    password_key: str
    """Where the password comes from, as the user writes it (e.g. ``dockyard:registryPassword``)."""
    ca_file: str | None = None
    """CA bundle for a self-hosted registry's TLS; None: the system trust store."""


def credential_hash(server: str, username: str, password: str) -> str:
    """A salted, slow hash of the credential: detects a rotation without the password in the resource's diff."""
    salt = f"dockyard-registry-credential\0{server}\0{username}".encode()
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 100_000).hex()


def _api_base(server: str) -> str:
    host = server.removeprefix("https://").removeprefix("http://").rstrip("/")
    return f"https://{API_HOSTS.get(host, host)}"


def _unreachable(credential: Credential, error: httpx.HTTPError) -> RegistryAuthError:
    reason = str(error) or type(error).__name__
    if isinstance(error, httpx.ConnectError) and "refused" in reason.lower():
        reason = f"connection refused at {credential.server}"
    start = local_start_command(credential.server)
    hint = f"start it with {start}" if start else "check the network and dockyard:registry.server"
    return RegistryAuthError(f"registry {credential.server} unreachable ({reason}) — {hint}")


def _refused(credential: Credential, status: int) -> RegistryAuthError:
    return RegistryAuthError(
        f"registry {credential.server} refused the credentials of user {credential.username!r} ({status}) — "
        f"check {credential.password_key}"
    )


def verify(credential: Credential, transport: httpx.BaseTransport | None = None) -> None:
    """Log in the way a pull does (Registry API v2 auth); raise :class:`RegistryAuthError` if that fails."""
    verify_tls: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=credential.ca_file) if credential.ca_file else True
    )
    auth = httpx.BasicAuth(credential.username, credential.password)
    try:
        with httpx.Client(verify=verify_tls, timeout=TIMEOUT_SECONDS, transport=transport, trust_env=False) as client:
            response = client.get(f"{_api_base(credential.server)}/v2/", auth=auth)
            if response.status_code == 401:
                scheme, params = parse_challenge(response.headers.get("www-authenticate", ""))
                if scheme != "bearer" or "realm" not in params:
                    raise _refused(credential, response.status_code)
                # A token registry: the realm hands out a pull token only to valid credentials.
                query = {"scope": f"repository:{credential.repository}:pull"}
                if "service" in params:
                    query["service"] = params["service"]
                response = client.get(params["realm"], params=query, auth=auth)
            if response.status_code in (401, 403):
                raise _refused(credential, response.status_code)
            if response.status_code != 200:
                raise RegistryAuthError(
                    f"registry {credential.server} answered {response.status_code} to a login check — "
                    "see the registry's log; the credentials were not verified"
                )
    except httpx.HTTPError as error:
        raise _unreachable(credential, error) from None


class RegistryCredentialCheckArgs(TypedDict):
    server: pulumi.Input[str]
    """Registry host[:port]."""
    repository: pulumi.Input[str]
    """Repository path (the scope a token registry is asked for)."""
    username: pulumi.Input[str]
    """User that pushes and pulls."""
    password: pulumi.Input[str]
    """The password, a Pulumi secret: only its salted hash becomes an input (the change detector)."""
    password_env: str | None
    """The environment variable the password comes from (registry.passwordEnv); None: dockyard:registryPassword."""
    password_key: str
    """How the user sets the password, named in a refusal."""
    ca_file: str | None
    """CA bundle of a self-hosted registry's TLS."""


def _changed(olds: dict[str, Any], news: dict[str, Any]) -> bool:
    return any(olds.get(key) != news.get(key) for key in CREDENTIAL_KEYS)


def _known(value: Any) -> bool:
    return isinstance(value, str) and value != rpc.UNKNOWN


class RegistryCredentialCheckProvider(dynamic.ResourceProvider):
    """Asks the registry in ``check`` when the credential changed; create/update only record the new hash.

    The password itself never enters the resource's inputs or state: the provider reads it where the program does,
    from the environment variable ``password_env`` (the engine's environment, which the provider inherits) or from
    the stack config ``dockyard:registryPassword`` (dynamic providers receive the stack's config in ``configure``).
    """

    def __init__(self) -> None:
        super().__init__()
        self._config: dynamic.Config | None = None

    def configure(self, req: dynamic.ConfigureRequest) -> None:
        self._config = req.config

    def _secret(self, key: str) -> str | None:
        value = self._config.get(key) if self._config is not None else None
        return value if isinstance(value, str) else None

    def _password(self, news: dict[str, Any]) -> str | None:
        # The program's rule, read from where the provider sees it: its environment and the stack's config.
        return registry_password(str(news.get("password_env") or "") or None, os.environ, self._secret, str)

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        fields = [news.get(k) for k in ("server", "repository", "username", "credential_hash")]
        if not all(_known(value) for value in fields):
            return dynamic.CheckResult(inputs=news, failures=[])  # unknown until an earlier step runs
        if olds and not _changed(olds, news):
            return dynamic.CheckResult(inputs=news, failures=[])
        server, repository, username = (str(value) for value in fields[:3])
        key = str(news.get("password_key"))
        password = self._password(news)
        if password is None:
            reason = f"cannot check the credentials for {server}: {key} is not readable by the provider"
            return dynamic.CheckResult(inputs=news, failures=[dynamic.CheckFailure("", reason)])
        try:
            verify(Credential(server, repository, username, password, key, news.get("ca_file") or None))
        except RegistryAuthError as error:
            # No property named: the engine would print that property's value next to the reason.
            return dynamic.CheckResult(inputs=news, failures=[dynamic.CheckFailure("", str(error))])
        return dynamic.CheckResult(inputs=news, failures=[])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # Never a replacement: whatever waits on this resource is updated, not re-created.
        return dynamic.DiffResult(changes=_changed(olds, news), replaces=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        return dynamic.CreateResult(id_=f"{props['server']}/{props['username']}", outs=props)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs=news)


class RegistryCredentialCheck(dynamic.Resource):
    """The stack's registry credential, verified against the registry whenever it changes.

    ``gate(value)`` returns ``value`` once the check has passed: a resource that takes a credential through it (the
    pull Secret, the build) waits for the check, and a refused credential never reaches it.
    """

    credential_hash: pulumi.Output[str]

    def __init__(
        self, name: str, args: RegistryCredentialCheckArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        hashed = pulumi.Output.all(args["server"], args["username"], args["password"]).apply(
            lambda parts: credential_hash(str(parts[0]), str(parts[1]), str(parts[2]))
        )
        inputs = {key: value for key, value in args.items() if key != "password"}
        super().__init__(
            RegistryCredentialCheckProvider(),
            name,
            {**inputs, "credential_hash": pulumi.Output.secret(hashed)},
            opts=pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=["credential_hash"])
            ),
        )

    def gate(self, value: pulumi.Input[str]) -> pulumi.Output[str]:
        return pulumi.Output.all(self.credential_hash, value).apply(lambda parts: str(parts[1]))
