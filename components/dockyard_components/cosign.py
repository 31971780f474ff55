"""syft and cosign against a registry, with credentials that never reach a command line or a log.

Shared by the program (sign and attest what it pushed) and the CLI (verify before a promotion). Registry
credentials go to a private, temporary docker config; the private key and its password go through the
environment (``--key env://COSIGN_PRIVATE_KEY``); a self-hosted registry's CA joins the system bundle in
``SSL_CERT_FILE``. Offline, there is no transparency log (``--tlog-upload=false`` / ``--insecure-ignore-tlog``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard_components.image_ref import parse_image_reference

TOOL_TIMEOUT_SECONDS = 600
#: Where scripts/bootstrap-supply-chain.sh puts the tools; PATH is searched first.
TOOLS_DIR = Path(os.environ.get("DOCKYARD_CACHE", Path.home() / ".cache" / "dockyard")) / "supply-chain" / "bin"
#: The in-toto predicate type of Dockyard's verification attestations.
VERIFICATION_PREDICATE = "https://dockyard.dev/attestations/verification/v1"


class CosignError(Exception):
    """syft or cosign failed or is missing; the message names the step and the way out (never a secret)."""


class ToolUnavailableError(CosignError):
    """The tool could not give an answer at all (not installed, timed out): nothing was verified, or refuted."""


#: What cosign says when a digest carries no attestation of the asked type (an answer, not a failure).
NO_ATTESTATION = ("none of the attestations matched", "no matching attestations")


def says_none_attested(error: CosignError) -> bool:
    """``error`` is cosign's answer that the digest has no attestation of the asked type (signed by the key)."""
    return not isinstance(error, ToolUnavailableError) and any(marker in str(error) for marker in NO_ATTESTATION)


@dataclass(frozen=True)
class KeylessIdentity:
    """A keyless signer: the identity in the Fulcio certificate (exact, or a regular expression) and the OIDC issuer
    that vouched for it. Verifying against one needs Fulcio's roots and Rekor (online): no offline flag is added."""

    issuer: str
    identity: str | None = None
    identity_regexp: str | None = None

    def __post_init__(self) -> None:
        if (self.identity is None) == (self.identity_regexp is None):
            raise ValueError("a keyless identity names exactly one of identity or identity_regexp, and the issuer")

    def flags(self) -> list[str]:
        """``cosign verify`` flags that accept only this signer."""
        if self.identity is not None:
            subject = ["--certificate-identity", self.identity]
        else:
            subject = ["--certificate-identity-regexp", str(self.identity_regexp)]
        return [*subject, "--certificate-oidc-issuer", self.issuer]

    def __str__(self) -> str:
        subject = self.identity if self.identity is not None else f"~{self.identity_regexp}"
        return f"{subject} (issuer {self.issuer})"


def signature_tag(image_ref: str) -> str:
    """Where cosign stores the signature of a digest-pinned reference (no referrers API needed)."""
    repository, digest = image_ref.split("@", 1)
    return f"{repository}:{digest.replace(':', '-')}.sig"


def attestation_tag(image_ref: str) -> str:
    repository, digest = image_ref.split("@", 1)
    return f"{repository}:{digest.replace(':', '-')}.att"


def tool(name: str) -> str:
    found = shutil.which(name) or (str(TOOLS_DIR / name) if (TOOLS_DIR / name).is_file() else None)
    if found is None:
        raise ToolUnavailableError(
            f"{name} is not installed: run scripts/bootstrap-supply-chain.sh (or put {name} on PATH)"
        )
    return found


def run_unattended(
    step: str, args: list[str], environment: Mapping[str, str], timeout: int = TOOL_TIMEOUT_SECONDS
) -> subprocess.CompletedProcess[str]:
    """A tool run with no terminal and a time limit, its output captured; the caller judges its exit code. A
    timeout is a :class:`ToolUnavailableError` naming ``step``."""
    try:
        return subprocess.run(
            args,
            env=dict(environment),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ToolUnavailableError(f"{step} took over {timeout}s") from None


@dataclass
class SigningTools:
    """Runs syft and cosign for one registry login; use as a context manager (it owns a private temp dir)."""

    registry_server: str
    username: str | None
    password: str | None
    ca_file: str | None
    private_key: str | None = None
    key_password: str | None = None
    public_key: str | None = None
    _directory: Path | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> SigningTools:
        return cls(
            registry_server=props["registry_server"],
            username=props.get("username"),
            password=props.get("password"),
            ca_file=props.get("ca_file"),
            private_key=props.get("private_key"),
            key_password=props.get("key_password"),
            public_key=props.get("public_key"),
        )

    def __enter__(self) -> SigningTools:
        self._directory = Path(tempfile.mkdtemp(prefix="dockyard-cosign-"))
        self._directory.chmod(0o700)
        if self.username and self.password:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            config = self._directory / "config.json"
            config.write_text(json.dumps({"auths": {self.registry_server: {"auth": token}}}))
            config.chmod(0o600)
        if self.ca_file:
            # cosign (Go) reads one bundle: the system roots plus the registry's own CA.
            system = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
            bundle = system.read_text() if system.is_file() else ""
            (self._directory / "ca-bundle.pem").write_text(bundle + "\n" + Path(self.ca_file).read_text())
        if self.public_key:
            (self._directory / "cosign.pub").write_text(self.public_key)
        return self

    def __exit__(self, *_: object) -> None:
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    @property
    def directory(self) -> Path:
        if self._directory is None:
            raise RuntimeError("SigningTools is used outside its `with` block")
        return self._directory

    def environment(self) -> dict[str, str]:
        """The tools' environment: the private docker config, the CA bundle, the key (for the scanner too)."""
        environment = {
            **os.environ,
            "DOCKER_CONFIG": str(self.directory),
            # No update checks, no telemetry, no prompts: the tools run unattended and offline.
            "SYFT_CHECK_FOR_APP_UPDATE": "false",
            "COSIGN_YES": "true",
        }
        if self.ca_file:
            environment["SSL_CERT_FILE"] = str(self.directory / "ca-bundle.pem")
            environment["SYFT_REGISTRY_CA_CERT"] = self.ca_file
        if self.username and self.password:
            environment["SYFT_REGISTRY_AUTH_AUTHORITY"] = self.registry_server
            environment["SYFT_REGISTRY_AUTH_USERNAME"] = self.username
            environment["SYFT_REGISTRY_AUTH_PASSWORD"] = self.password
        if self.private_key is not None:
            environment["COSIGN_PRIVATE_KEY"] = self.private_key
            environment["COSIGN_PASSWORD"] = self.key_password or ""
        return environment

    def execute(self, step: str, args: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a tool in :meth:`environment`, unattended; the caller judges its exit code. A timeout is a
        :class:`CosignError` naming ``step``."""
        return run_unattended(step, args, self.environment())

    def _run(self, step: str, args: list[str]) -> str:
        result = self.execute(step, args)
        if result.returncode != 0:
            raise CosignError(f"{step} failed (exit {result.returncode}): {self._reason(result.stderr)}")
        return result.stdout

    def _reason(self, stderr: str) -> str:
        lines = [
            line
            for line in stderr.strip().splitlines()
            # Offline, cosign always warns that it cannot fetch the public-good trust root; it is not the cause.
            if line.strip() and "trusted_root.json" not in line and "TUF" not in line
        ]
        text = "\n".join(lines[-6:]) or "no output"
        for secret in (self.password, self.key_password):
            if secret:
                text = text.replace(secret, "***")
        return text

    def sbom(self, image_ref: str) -> dict[str, Any]:
        """The SPDX JSON SBOM of the pushed image, read from the registry (nothing pulled into local storage)."""
        output = self.directory / "sbom.spdx.json"
        self._run("syft scan", [tool("syft"), "scan", f"registry:{image_ref}", "-q", "-o", f"spdx-json={output}"])
        document: dict[str, Any] = json.loads(output.read_text())
        return document

    def sign(self, image_ref: str) -> None:
        self._require_pinned(image_ref)
        self._run(
            "cosign sign",
            [tool("cosign"), "sign", "--key", "env://COSIGN_PRIVATE_KEY", "--tlog-upload=false", image_ref],
        )

    def attest(self, image_ref: str, predicate: Mapping[str, Any], *, predicate_type: str) -> None:
        self._require_pinned(image_ref)
        path = self.directory / "predicate.json"
        path.write_text(json.dumps(predicate))
        self._run(
            f"cosign attest ({predicate_type})",
            [
                tool("cosign"),
                "attest",
                "--key",
                "env://COSIGN_PRIVATE_KEY",
                "--tlog-upload=false",
                "--type",
                predicate_type,
                "--predicate",
                str(path),
                image_ref,
            ],
        )

    def verify(self, image_ref: str, *, identity: KeylessIdentity | None = None) -> None:
        """The digest carries a signature made by the key of :attr:`public_key`, or by ``identity`` (keyless)."""
        self._run("cosign verify", [tool("cosign"), "verify", *self._signer_flags(identity), image_ref])

    def verify_attestation(
        self, image_ref: str, *, predicate_type: str, identity: KeylessIdentity | None = None
    ) -> list[dict[str, Any]]:
        """The verified in-toto statements of ``predicate_type`` on the digest (each with its predicate), signed by
        the key of :attr:`public_key`, or by ``identity`` (keyless)."""
        output = self._run(
            f"cosign verify-attestation ({predicate_type})",
            [
                tool("cosign"),
                "verify-attestation",
                *self._signer_flags(identity),
                "--type",
                predicate_type,
                image_ref,
            ],
        )
        statements = []
        for line in output.splitlines():
            if line.strip():
                envelope = json.loads(line)
                statements.append(json.loads(base64.b64decode(envelope["payload"])))
        return statements

    def attested(self, image_ref: str, *, predicate_type: str) -> list[dict[str, Any]]:
        """:meth:`verify_attestation`, where a digest with none of ``predicate_type`` is an empty answer."""
        try:
            return self.verify_attestation(image_ref, predicate_type=predicate_type)
        except CosignError as error:
            if says_none_attested(error):
                return []
            raise

    def _signer_flags(self, identity: KeylessIdentity | None) -> list[str]:
        if identity is not None:
            return identity.flags()
        # A key pair of our own: offline there is no transparency log to check the signature's entry in.
        return ["--key", str(self._public_key_file()), "--insecure-ignore-tlog"]

    def _public_key_file(self) -> Path:
        if self.public_key is None:
            raise CosignError("no public key to verify with")
        return self.directory / "cosign.pub"

    @staticmethod
    def _require_pinned(image_ref: str) -> None:
        if not parse_image_reference(image_ref).is_digest_pinned:
            raise CosignError(f"{image_ref} is not digest-pinned: only a digest is signed, never a tag")
