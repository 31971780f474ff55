"""regctl against one or more registries, logged in by the one credential rule, with nothing on a command line.

A promotion copies a digest from the source's registry into the target's, and retention lists and deletes digests:
both are registry writes that regctl (a well-kept client of the Registry API and OCI's referrers) does for us.
Credentials go to a private, temporary docker config (``DOCKER_CONFIG``; one ``auths`` entry per registry), regctl's
own config to the same directory (``REGCTL_CONFIG``: nothing is written to ``~/.regctl``), and each self-hosted
registry's CA joins the system bundle in ``SSL_CERT_FILE``, as ``scripts/local-vuln-db.sh`` runs it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from dockyard.model.credentials import RegistryCredentials
from dockyard.releases.errors import DockyardError
from dockyard_components.cosign import ToolUnavailableError, run_unattended, tool

#: An image config's ``created`` in ISO 8601 (UTC), or nothing when it has none.
CREATED_FORMAT = '{{ if .Created }}{{ .Created.UTC.Format "2006-01-02T15:04:05Z07:00" }}{{ end }}'


class RegctlError(DockyardError):
    """regctl failed (registry down, credentials refused, nothing there); the message is its last error line."""


@dataclass
class Regctl:
    """Runs regctl logged in to ``logins`` (registry host → credentials); a context manager owning a private dir."""

    logins: Mapping[str, RegistryCredentials]
    _directory: Path | None = field(default=None, init=False, repr=False)

    def __enter__(self) -> Regctl:
        self._directory = Path(tempfile.mkdtemp(prefix="dockyard-regctl-"))
        self._directory.chmod(0o700)
        auths = {
            host: {"auth": base64.b64encode(f"{login.username}:{login.password}".encode()).decode()}
            for host, login in self.logins.items()
            if login.password
        }
        config = self._directory / "config.json"
        config.write_text(json.dumps({"auths": auths}))
        config.chmod(0o600)
        cas = sorted({login.ca_file for login in self.logins.values() if login.ca_file})
        if cas:
            # regctl (Go) reads one bundle: the system roots plus each self-hosted registry's CA.
            system = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
            parts = [system.read_text() if system.is_file() else "", *(Path(ca).read_text() for ca in cas)]
            (self._directory / "ca-bundle.pem").write_text("\n".join(parts))
        return self

    def __exit__(self, *_: object) -> None:
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    def environment(self) -> dict[str, str]:
        if self._directory is None:
            raise RuntimeError("Regctl is used outside its `with` block")
        environment = {
            **os.environ,
            "DOCKER_CONFIG": str(self._directory),
            "REGCTL_CONFIG": str(self._directory / "regctl.json"),
        }
        if (self._directory / "ca-bundle.pem").is_file():
            environment["SSL_CERT_FILE"] = str(self._directory / "ca-bundle.pem")
        return environment

    def run(self, *args: str) -> str:
        """regctl ``args``; its stdout, or :class:`RegctlError` with its last error line (no secret in it)."""
        try:
            result = run_unattended(f"regctl {' '.join(args[:2])}", [tool("regctl"), *args], self.environment())
        except ToolUnavailableError as error:
            raise RegctlError(str(error)) from None
        if result.returncode != 0:
            raise RegctlError(self._reason(result.stderr or result.stdout))
        return result.stdout

    def _reason(self, output: str) -> str:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        reason = next(
            (line for line in reversed(lines) if "rror" in line or "fail" in line), lines[-1] if lines else ""
        )
        for login in self.logins.values():
            if login.password:
                reason = reason.replace(login.password, "***")
        return reason or "no output"

    # --- what Dockyard asks of a registry ---------------------------------------------------------------------

    def copy(self, source: str, target: str) -> None:
        """``source`` (``repo@sha256:…``) to ``target``, keeping the digest, with its ``sha256-<hex>.*`` tags (cosign's
        ``.sig``/``.att``, the referrers fallback) and its referrers. A digest already there costs a few HEADs."""
        self.run("image", "copy", "--digest-tags", "--referrers", source, target)

    def tags(self, repository: str) -> list[str]:
        """The tags of ``registry/repository``; none when nothing was ever pushed there."""
        try:
            return self.run("tag", "ls", repository).split()
        except RegctlError as error:
            if _missing(str(error)):
                return []
            raise

    def digest(self, reference: str) -> str | None:
        """The manifest digest ``reference`` (a tag or digest) resolves to; None when the registry has none."""
        try:
            return self.run("image", "digest", reference).strip() or None
        except RegctlError as error:
            if _missing(str(error)):
                return None
            raise

    def created(self, reference: str) -> datetime | None:
        """When the image was built (its config's ``created``); None for an artifact without one."""
        text = self.run("image", "config", reference, "--format", CREATED_FORMAT).strip()
        try:
            return datetime.fromisoformat(text) if text else None
        except ValueError:
            return None

    def delete(self, reference: str) -> None:
        """Delete the manifest ``repo@sha256:…`` (the registry drops every tag that named it); gone already is done."""
        self.run("manifest", "delete", "--ignore-missing", reference)

    def delete_tag(self, reference: str) -> None:
        """Delete the manifest the tag ``repo:tag`` names: for a tag that is its manifest's only one (a digest's
        ``.sig``/``.att``), never a tag that may share its manifest with others."""
        self.run("manifest", "delete", "--ignore-missing", "--force-tag-dereference", reference)


def _missing(reason: str) -> bool:
    return any(marker in reason.lower() for marker in ("not found", "manifest unknown", "name_unknown", "404"))
