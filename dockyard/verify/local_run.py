"""Run a deployed image on this machine and check it answers: the ``render`` stacks' verification.

The image is pulled from the registry and its entrypoint run with ``buildah from`` + ``buildah run
--isolation=chroot`` (the way that works here without ``podman run``) on 127.0.0.1: its health path must answer 200
within a bounded wait, then the smoke checks (``GET /`` and the health path) must pass, then it is stopped the way a
kubelet stops a pod.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from dockyard.model.config import EnvironmentConfig
from dockyard.model.credentials import RegistryCredentials
from dockyard.releases.ledger import Check
from dockyard.verify.common import VerifierError
from dockyard_components.image_ref import short_image

#: OCI architecture names of the machines this runs on (``platform.machine()``).
_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def local_platform() -> str:
    """This machine's OCI platform: the image of an index that runs here without emulation."""
    machine = platform.machine()
    return f"linux/{_ARCHITECTURES.get(machine.lower(), machine.lower())}"


#: How long the health path may take to answer 200 after the process starts (seconds).
HEALTH_TIMEOUT = 30.0
PULL_TIMEOUT = 300
SHORT_TIMEOUT = 60
STOP_GRACE = 20
HTTP_TIMEOUT = 5.0


def _run(args: list[str], timeout: float, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _argv0(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return ""


@dataclass
class LocalRun:
    """Pull ``image`` and run its entrypoint with buildah on 127.0.0.1; the checks it made are in ``checks``."""

    image: str
    env: EnvironmentConfig
    credentials: RegistryCredentials
    health_timeout: float = HEALTH_TIMEOUT
    checks: list[Check] = field(default_factory=list)

    @contextlib.contextmanager
    def _registry_access(self) -> Iterator[list[str]]:
        """``--authfile``/``--cert-dir`` flags: the local services' auth file, else a login from passwordEnv."""
        credentials = self.credentials
        with tempfile.TemporaryDirectory(prefix="dockyard-verify-") as scratch:
            flags: list[str] = []
            if credentials.ca_file:
                cert_dir = Path(scratch) / "certs"
                cert_dir.mkdir()
                (cert_dir / "ca.crt").write_bytes(Path(credentials.ca_file).read_bytes())
                flags += ["--cert-dir", str(cert_dir)]
            authfile = os.environ.get("DOCKYARD_REGISTRY_AUTHFILE")
            if not authfile and credentials.password:
                authfile = str(Path(scratch) / "auth.json")
                # The password goes through stdin only, never the command line.
                login = _run(
                    [
                        "buildah",
                        "login",
                        "--authfile",
                        authfile,
                        *flags,
                        "--username",
                        credentials.username,
                        "--password-stdin",
                        self.env.registry.host,
                    ],
                    SHORT_TIMEOUT,
                    stdin=credentials.password,
                )
                if login.returncode != 0:
                    raise VerifierError(f"buildah login to {self.env.registry.host} failed: {_tail(login.stderr)}")
            if authfile:
                flags += ["--authfile", authfile]
            yield flags

    def run(self) -> list[Check]:
        container = f"dockyard-verify-{secrets.token_hex(4)}"
        # An image index (a multi-arch build) gives this machine's image; a single image must be of this platform.
        here = local_platform()
        with self._registry_access() as access:
            pulled = _run(
                ["buildah", "from", "--pull=always", "--platform", here, *access, "--name", container, self.image],
                PULL_TIMEOUT,
            )
        if pulled.returncode != 0:
            self.checks.append(Check("pull", False, f"buildah from {self.image}: {_tail(pulled.stderr)}"))
            return self.checks
        try:
            self.checks.append(Check("pull", True, f"pulled {short_image(self.image)} ({here})"))
            self._run_container(container)
        finally:
            _run(["buildah", "rm", container], SHORT_TIMEOUT)
        return self.checks

    def _run_container(self, container: str) -> None:
        inspected = _run(["buildah", "inspect", "--type", "container", container], SHORT_TIMEOUT)
        if inspected.returncode != 0:
            self.checks.append(Check("start", False, f"buildah inspect: {_tail(inspected.stderr)}"))
            return
        config = json.loads(inspected.stdout)["OCIv1"].get("config") or {}
        command = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
        if not command:
            self.checks.append(Check("start", False, "the image has neither an entrypoint nor a command"))
            return
        port = free_port()
        settings = self.env.kubernetes
        # What the Deployment gives the container: the ConfigMap's settings, then PORT (secrets are left out).
        variables = {**settings.env, "PORT": str(port)}
        env_flags = [flag for key, value in variables.items() for flag in ("--env", f"{key}={value}")]
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(
                ["buildah", "run", "--isolation=chroot", *env_flags, container, "--", *command],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            base = f"http://127.0.0.1:{port}"
            try:
                health = _wait_for_health(process, base + settings.health_path, self.health_timeout)
                if process.poll() is None:
                    self.checks.append(Check("start", True, f"{' '.join(command)} serving on {base}"))
                else:
                    output.seek(0)
                    log = _tail(output.read().decode(errors="replace"))
                    self.checks.append(Check("start", False, f"{command[0]} exited with {process.returncode}: {log}"))
                self.checks.append(health)
                if health.passed:
                    self.checks.append(smoke_check(base, settings.health_path))
            finally:
                self._stop(process, command[0])

    @staticmethod
    def _stop(process: subprocess.Popen[bytes], argv0: str) -> None:
        # `buildah run` answers SIGTERM by killing its child outright: signal the app itself, like a kubelet would.
        targets = [pid for pid in _descendants(process.pid) if _argv0(pid) == argv0] or [process.pid]
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=SHORT_TIMEOUT)


def _wait_for_health(process: subprocess.Popen[bytes], url: str, timeout: float) -> Check:
    """Poll ``url`` until it answers 200, the process exits, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return Check("health", False, f"the app exited with code {process.returncode} before {url} answered")
            try:
                response = client.get(url)
            except httpx.TransportError as error:
                last = f"no answer ({error.__class__.__name__})"
            else:
                if response.status_code == 200:
                    return Check("health", True, f"GET {url} answered 200")
                last = f"HTTP {response.status_code} {response.text.strip()[:120]}"
            time.sleep(0.25)
    return Check("health", False, f"GET {url} did not answer 200 within {timeout:g}s; last: {last}")


def _is_json(response: httpx.Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return True


def smoke_check(base: str, health_path: str) -> Check:
    """``GET /`` and the health path answer 200 with a JSON body."""
    problems, seen = [], []
    with httpx.Client(timeout=HTTP_TIMEOUT, trust_env=False) as http:
        for path in ("/", health_path):
            try:
                response = http.get(base + path)
            except httpx.HTTPError as error:
                problems.append(f"GET {path}: {error.__class__.__name__}: {error}")
                continue
            if response.status_code != 200:
                problems.append(f"GET {path}: HTTP {response.status_code}, want 200")
            elif not _is_json(response):
                problems.append(f"GET {path}: HTTP 200 but the body is not JSON")
            else:
                seen.append(f"GET {path} 200")
    if problems:
        return Check("smoke", False, "; ".join(problems))
    return Check("smoke", True, ", ".join(seen))
