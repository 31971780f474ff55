"""The ``helm`` binary (scripts/bootstrap-supply-chain.sh builds it): lint, package, push and template charts.

Registry credentials go to a private, temporary registry config (``--registry-config``), never to a command line;
helm's own config, cache and data homes are in the same temporary directory, so nothing of the user's helm set-up
(repositories, plugins, logins) takes part and nothing is left behind.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.model.credentials import RegistryCredentials
from dockyard.releases.errors import DockyardError
from dockyard_components.cosign import ToolUnavailableError, run_unattended, tool

HELM_TIMEOUT_SECONDS = 300
_DIGEST = re.compile(r"^Digest:\s*(sha256:[0-9a-f]{64})\s*$", re.MULTILINE)
_PACKAGED = re.compile(r"saved it to:\s*(\S+)\s*$", re.MULTILINE)


class HelmError(DockyardError):
    """helm failed or is missing; the message names the step and its reason (never a password)."""


@dataclass
class Helm:
    """Runs helm for one registry (``server``, ``credentials``); use as a context manager (it owns a private temp
    dir). Without credentials it works on local charts and anonymous registries only."""

    server: str | None = None
    credentials: RegistryCredentials | None = None
    _scratch: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False, repr=False)

    def __enter__(self) -> Helm:
        # Owner-only (mkdtemp's 0700): the registry config holds the password.
        self._scratch = tempfile.TemporaryDirectory(prefix="dockyard-helm-")
        auths = {}
        if self.server and self.credentials and self.credentials.password:
            token = f"{self.credentials.username}:{self.credentials.password}".encode()
            auths[self.server] = {"auth": base64.b64encode(token).decode()}
        config = self.directory / "registry.json"
        config.touch(0o600)
        config.write_text(json.dumps({"auths": auths}))
        return self

    def __exit__(self, *_: object) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    @property
    def directory(self) -> Path:
        if self._scratch is None:
            raise RuntimeError("Helm is used outside its `with` block")
        return Path(self._scratch.name)

    def _tls(self) -> list[str]:
        ca_file = self.credentials.ca_file if self.credentials else None
        return ["--ca-file", ca_file] if ca_file else []

    def run(self, step: str, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """``helm ARGS`` in the private homes; a non-zero exit is a :class:`HelmError` naming ``step``."""
        try:
            binary = tool("helm")
        except ToolUnavailableError as error:
            raise HelmError(str(error)) from None
        homes = {name: str(self.directory / name.lower()) for name in ("HELM_CONFIG_HOME", "HELM_CACHE_HOME")}
        environment = {
            **os.environ,
            **homes,
            "HELM_DATA_HOME": str(self.directory / "data"),
            "HELM_REGISTRY_CONFIG": str(self.directory / "registry.json"),
        }
        try:
            result = run_unattended(step, [binary, *args], environment, HELM_TIMEOUT_SECONDS)
        except ToolUnavailableError as error:
            raise HelmError(str(error)) from None
        if result.returncode != 0:
            raise HelmError(f"{step} failed (exit {result.returncode}): {self._reason(result)}")
        return result

    def _reason(self, result: subprocess.CompletedProcess[str]) -> str:
        lines = [line for line in (result.stdout + "\n" + result.stderr).splitlines() if line.strip()]
        text = "\n".join(lines[-12:]) or "no output"
        password = self.credentials.password if self.credentials else None
        return text.replace(password, "***") if password else text

    def lint(self, chart: Path) -> str:
        """``helm lint --strict``: a warning fails too."""
        return self.run("helm lint", ["lint", "--strict", str(chart)]).stdout

    def package(self, chart: Path, destination: Path) -> Path:
        """The chart's ``.tgz`` in ``destination``."""
        result = self.run("helm package", ["package", str(chart), "--destination", str(destination)])
        found = _PACKAGED.search(result.stdout)
        if found is None:
            raise HelmError(f"helm package did not say where it saved the chart: {result.stdout.strip()}")
        return Path(found.group(1))

    def push(self, package: Path, repository: str) -> str:
        """Push to ``repository`` (``oci://host/path``); the chart manifest's digest."""
        result = self.run("helm push", ["push", str(package), repository, *self._tls()])
        found = _DIGEST.search(result.stdout + "\n" + result.stderr)
        if found is None:
            raise HelmError(f"helm push did not report a digest: {self._reason(result)}")
        return found.group(1)

    def template(
        self, release: str, chart: str, values: Sequence[Path] = (), version: str | None = None, *extra: str
    ) -> str:
        """``helm template`` of a chart directory, package or ``oci://`` reference (``version``: the OCI tag)."""
        args = ["template", release, chart, *(f"--values={v}" for v in values), *extra]
        if version is not None:
            args += ["--version", version]
        if chart.startswith("oci://"):
            args += self._tls()
        return self.run("helm template", args).stdout
