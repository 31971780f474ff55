"""``dockyard verify``: is what a stack deployed healthy? And ``promote --verify``: roll back when it is not.

Two ways to look, chosen by the stack's ``kubernetes.mode``:

- ``render`` (the local stacks): the manifests in the render directory must pin exactly the stack's ``image_ref`` in
  every Deployment, and the image itself is pulled from the registry and run on this machine (``buildah from`` +
  ``buildah run --isolation=chroot``, the way that works here without ``podman run``): its health path must answer
  200 within a bounded wait, then the smoke checks (``GET /`` and the health path) must pass.
- ``cluster``: through the Kubernetes API (plain HTTP, see :class:`KubeClient`), every Deployment's rollout is
  complete with the expected image, every pod is ready and runs the expected digest, and the health path answers
  200 through the Ingress (or, without one, through the API server's proxy to the Service).

Every outcome is appended to the stack's ledger (:mod:`dockyard.records`), where the promotion gate reads it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import httpx
import yaml
from pulumi import automation as auto

from components.config import EnvironmentConfig
from components.image_ref import ImageReferenceError, parse_image_reference
from components.kubernetes_app import release_tracks
from dockyard import records
from dockyard.promotion import DockyardError, Outcome, Project, actor
from dockyard.records import Check, Verification
from dockyard.registry_client import credentials_for

#: How long the health path may take to answer 200 after the process starts (seconds).
HEALTH_TIMEOUT = 30.0
PULL_TIMEOUT = 300
SHORT_TIMEOUT = 60
STOP_GRACE = 20
HTTP_TIMEOUT = 5.0


class VerifierError(DockyardError):
    """The verifier cannot look (no image_ref output, no kubeconfig, a refused registry login)."""


def expected_images(env: EnvironmentConfig, image_ref: str) -> dict[str, str]:
    """Deployment name → image it must run, from the same track rules the program deploys with.

    Rolling: the one ``stable`` Deployment runs ``image_ref``. Canary: ``stable`` runs it, ``canary`` the canary
    image. Blue-green: each color its own image (``image_ref`` is the active color's).
    """
    tracks = release_tracks(env.kubernetes, image_ref)
    return {f"{env.kubernetes.app_name}-{track.name}": str(track.image) for track in tracks}


def _short(image: str) -> str:
    digest = image.rsplit("@", 1)[-1]
    return digest[:19] if digest.startswith("sha256:") else image


# --- rendered manifests -----------------------------------------------------------------------------------------


def rendered_deployments(directory: Path) -> dict[str, dict[str, Any]]:
    """Every Deployment under ``directory`` (``**/*.yaml``) by name."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") == "Deployment":
                found[str(document["metadata"]["name"])] = document
    return found


def _pod_images(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    containers = [*spec.get("initContainers", []), *spec.get("containers", [])]
    return [(str(c.get("name")), str(c.get("image"))) for c in containers]


def manifest_check(directory: Path, expected: Mapping[str, str]) -> Check:
    """The render directory holds exactly the expected Deployments, each pinning exactly its expected image."""
    if not directory.is_dir():
        return Check("manifests", False, f"{directory} does not exist (pulumi up renders it)")
    deployments = rendered_deployments(directory)
    problems = [f"Deployment {name} is missing" for name in sorted(set(expected) - set(deployments))]
    problems += [f"unexpected Deployment {name}" for name in sorted(set(deployments) - set(expected))]
    for name in sorted(set(expected) & set(deployments)):
        spec = deployments[name]["spec"]["template"]["spec"]
        problems += [
            f"{name}: container {container} runs {image}, expected {expected[name]}"
            for container, image in _pod_images(spec)
            if image != expected[name]
        ]
    if problems:
        return Check("manifests", False, "; ".join(problems))
    pinned = ", ".join(f"{name}={_short(image)}" for name, image in sorted(expected.items()))
    return Check("manifests", True, f"{len(expected)} Deployment(s) in {directory.name}/ pin {pinned}")


# --- running the image on this machine --------------------------------------------------------------------------


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
    health_timeout: float = HEALTH_TIMEOUT
    checks: list[Check] = field(default_factory=list)

    @contextlib.contextmanager
    def _registry_access(self) -> Iterator[list[str]]:
        """``--authfile``/``--cert-dir`` flags: the local services' auth file, else a login from passwordEnv."""
        credentials = credentials_for(self.env.registry)
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
        with self._registry_access() as access:
            pulled = _run(["buildah", "from", "--pull=always", *access, "--name", container, self.image], PULL_TIMEOUT)
        if pulled.returncode != 0:
            self.checks.append(Check("pull", False, f"buildah from {self.image}: {_tail(pulled.stderr)}"))
            return self.checks
        try:
            self.checks.append(Check("pull", True, f"pulled {_short(self.image)}"))
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


# --- a cluster, through the Kubernetes API ----------------------------------------------------------------------


class KubeconfigError(VerifierError):
    """A kubeconfig this client cannot use; the message names the field."""


@dataclass
class KubeClient:
    """Just enough of the Kubernetes API: authenticated GETs against one API server. Pass ``transport`` in tests."""

    server: str
    headers: dict[str, str] = field(default_factory=dict)
    verify: ssl.SSLContext | bool = True
    cert: tuple[str, str] | None = None
    transport: httpx.BaseTransport | None = None
    timeout: float = 10.0

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.rstrip("/"),
            headers=self.headers,
            verify=self.verify,
            cert=self.cert,
            transport=self.transport,
            timeout=self.timeout,
            trust_env=False,
        )

    def get(self, http: httpx.Client, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        response = http.get(path, params=params)
        if response.status_code != 200:
            raise VerifierError(f"GET {path} answered HTTP {response.status_code}: {response.text.strip()[:200]}")
        body: dict[str, Any] = response.json()
        return body


@contextlib.contextmanager
def client_from_kubeconfig(text: str, context: str | None) -> Iterator[KubeClient]:
    """A :class:`KubeClient` for ``context`` (default: current-context): token or client-certificate users."""
    config = yaml.safe_load(text) or {}
    name = context or config.get("current-context")

    def entry(kind: str, key: str | None) -> dict[str, Any]:
        for item in config.get(kind) or []:
            if item.get("name") == key:
                return dict(item.get(kind[:-1]) or {})
        raise KubeconfigError(f"kubeconfig has no {kind[:-1]} named {key!r}")

    ctx = entry("contexts", name)
    cluster = entry("clusters", ctx.get("cluster"))
    user = entry("users", ctx.get("user"))
    if "exec" in user or "auth-provider" in user:
        raise KubeconfigError(f"user of context {name!r} uses an exec/auth-provider plugin; give it a token instead")
    with tempfile.TemporaryDirectory(prefix="dockyard-kube-") as scratch:

        def material(key: str) -> str | None:
            if user.get(f"{key}-data") or cluster.get(f"{key}-data"):
                path = Path(scratch) / key
                path.write_bytes(base64.b64decode(user.get(f"{key}-data") or cluster[f"{key}-data"]))
                path.chmod(0o600)
                return str(path)
            return user.get(key) or cluster.get(key)

        verify: ssl.SSLContext | bool = not cluster.get("insecure-skip-tls-verify", False)
        authority = material("certificate-authority")
        if verify and authority:
            verify = ssl.create_default_context(cafile=authority)
        headers = {"Accept": "application/json"}
        token = user.get("token") or (Path(user["tokenFile"]).read_text().strip() if user.get("tokenFile") else None)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        certificate, key = material("client-certificate"), material("client-key")
        yield KubeClient(
            server=str(cluster["server"]),
            headers=headers,
            verify=verify,
            cert=(certificate, key) if certificate and key else None,
        )


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def rollout_problems(name: str, deployment: Mapping[str, Any], image: str) -> list[str]:
    """Why ``deployment`` is not completely rolled out to ``image`` (like ``kubectl rollout status``)."""
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    generation = deployment.get("metadata", {}).get("generation", 0)
    wanted = spec.get("replicas", 1)
    problems = [
        f"{name}: container {container} runs {actual}, expected {image}"
        for container, actual in _pod_images(spec.get("template", {}).get("spec", {}))
        if actual != image
    ]
    if status.get("observedGeneration", 0) < generation:
        problems.append(f"{name}: generation {generation} not observed yet")
    for field_name, label in (("updatedReplicas", "updated"), ("availableReplicas", "available")):
        if status.get(field_name, 0) < wanted:
            problems.append(f"{name}: {status.get(field_name, 0)} of {wanted} replicas {label}")
    if status.get("replicas", 0) > status.get("updatedReplicas", 0):
        problems.append(f"{name}: {status['replicas'] - status.get('updatedReplicas', 0)} old replica(s) remain")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            problems.append(f"{name}: progress deadline exceeded ({condition.get('message', '')})")
    return problems


def pod_problems(name: str, pods: list[Mapping[str, Any]], image: str, wanted: int) -> list[str]:
    """Every live pod of the Deployment is ready and runs ``image``'s digest; at least ``wanted`` of them."""
    digest = parse_image_reference(image).digest
    live = [p for p in pods if not p.get("metadata", {}).get("deletionTimestamp")]
    problems = []
    good = 0
    for pod in live:
        pod_name = pod.get("metadata", {}).get("name", "?")
        statuses = pod.get("status", {}).get("containerStatuses") or []
        wrong = [
            f"{s.get('name')} runs {s.get('imageID') or s.get('image')}"
            for s in statuses
            if not str(s.get("imageID", "")).endswith(f"@{digest}")
        ]
        if not statuses:
            wrong.append("no container has started")
        if wrong:
            problems.append(f"pod {pod_name}: {'; '.join(wrong)}, expected {digest}")
        if not _ready(pod):
            problems.append(f"pod {pod_name} is not ready ({pod.get('status', {}).get('phase', 'unknown')})")
        if not wrong and _ready(pod):
            good += 1
    if good < wanted:
        problems.append(f"{name}: {good} of {wanted} pods ready with {digest}")
    return problems


def cluster_checks(
    kube: KubeClient,
    *,
    namespace: str,
    expected: Mapping[str, str],
    health_path: str,
    url: str | None,
    http: httpx.Client | None = None,
) -> list[Check]:
    """Rollout, pods and the health path through the Service or Ingress, read from the Kubernetes API."""
    rollout: list[str] = []
    pods: list[str] = []
    with kube.client() as api:
        for name, image in sorted(expected.items()):
            try:
                deployment = kube.get(api, f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
                rollout += rollout_problems(name, deployment, image)
                labels = deployment.get("spec", {}).get("selector", {}).get("matchLabels", {})
                selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
                found = kube.get(api, f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": selector})
            except (VerifierError, httpx.HTTPError) as error:
                rollout.append(f"{name}: {error}")
                continue
            wanted = int(deployment.get("spec", {}).get("replicas", 1))
            pods += pod_problems(name, found.get("items") or [], image, wanted)
        done = ", ".join(f"{name}={_short(image)}" for name, image in sorted(expected.items()))
        endpoint = endpoint_check(api, namespace, health_path, url, http)
    return [
        Check("rollout", not rollout, "; ".join(rollout) or f"complete: {done}"),
        Check("pods", not pods and not rollout, "; ".join(pods) or "every pod is ready with the expected digest"),
        endpoint,
    ]


def endpoint_check(
    api: httpx.Client, namespace: str, health_path: str, url: str | None, http: httpx.Client | None = None
) -> Check:
    """The health path through the Ingress (an https url), else through the API server's proxy to the Service."""
    parsed = urlparse(url or "")
    host = parsed.hostname or ""
    try:
        if parsed.scheme == "https" and not host.endswith(".svc.cluster.local"):
            target = f"{url}{health_path}"
            with contextlib.ExitStack() as stack:
                client = http or stack.enter_context(httpx.Client(timeout=HTTP_TIMEOUT))
                response = client.get(target)
        else:
            service = host.split(".")[0]
            if not service:
                return Check("endpoint", False, f"the stack's url output {url!r} names no Service")
            target = f"/api/v1/namespaces/{namespace}/services/{service}:{parsed.port or 80}/proxy{quote(health_path)}"
            response = api.get(target)
    except httpx.HTTPError as error:
        return Check("endpoint", False, f"GET {health_path}: {error.__class__.__name__}: {error}")
    if response.status_code != 200:
        return Check("endpoint", False, f"GET {target} answered HTTP {response.status_code}, want 200")
    return Check("endpoint", True, f"GET {target} answered 200")


# --- the command ------------------------------------------------------------------------------------------------


@dataclass
class Verifier:
    """Verifies stacks of ``project`` and records each outcome; ``kube`` replaces the kubeconfig in tests."""

    project: Project
    health_timeout: float = HEALTH_TIMEOUT
    kube: KubeClient | None = None
    http: httpx.Client | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def ledger(self, stack_name: str) -> records.Ledger:
        return records.ledger_for(self.project.stack(stack_name))

    def verify(self, stack_name: str, *, trigger: str = "verify") -> Verification:
        """Check ``stack_name``'s deployment and append the outcome to its ledger (under the dockyard lock)."""
        env = self.project.environment(stack_name)
        stack = self.project.stack(stack_name)
        with self.project.lock(stack_name):
            outputs = stack.outputs()
            image = str(outputs["image_ref"].value) if "image_ref" in outputs else ""
            if not image:
                raise VerifierError(f"{stack_name} has no image_ref output (pulumi up --stack {stack_name})")
            ledger = records.ledger_for(stack)
            checks = self._deployment_checks(stack)
            try:
                checks += self._checks(stack_name, stack, env, image, outputs)
            except Exception as error:  # a verifier that cannot look has not verified anything: record a failure
                checks.append(Check("verifier", False, f"{error.__class__.__name__}: {error}"))
            record = Verification(
                stack=stack_name,
                image=image,
                passed=all(check.passed for check in checks),
                at=self.now(),
                actor=actor(),
                mode=env.kubernetes.mode,
                trigger=trigger,
                checks=tuple(checks),
            )
            ledger.append(record)
        return record

    @staticmethod
    def _deployment_checks(stack: auto.Stack) -> list[Check]:
        last = next(iter(stack.history(page_size=1)), None)
        if last is None:
            return [Check("update", False, "the stack has no update")]
        when = (last.end_time or last.start_time).isoformat(timespec="seconds")
        return [Check("update", last.result == "succeeded", f"last update ({when} UTC) {last.result}")]

    def _checks(
        self,
        stack_name: str,
        stack: auto.Stack,
        env: EnvironmentConfig,
        image: str,
        outputs: Mapping[str, auto.OutputValue],
    ) -> list[Check]:
        try:
            pinned = parse_image_reference(image).is_digest_pinned
        except ImageReferenceError as error:
            return [Check("image", False, str(error))]
        if not pinned:
            return [Check("image", False, f"image_ref {image} is not digest-pinned")]
        expected = expected_images(env, image)
        if env.kubernetes.mode == "render":
            directory = self.project.directory / (env.kubernetes.render_directory or f"rendered/{stack_name}")
            checks = [manifest_check(directory, expected)]
            run = LocalRun(image, env, self.health_timeout)
            checks += run.run()
            return checks
        namespace = str(outputs["namespace"].value) if "namespace" in outputs else ""
        url = str(outputs["url"].value) if "url" in outputs else None
        with contextlib.ExitStack() as exits:
            kube = self.kube or exits.enter_context(self._kube_client(stack, env))
            return cluster_checks(
                kube,
                namespace=namespace,
                expected=expected,
                health_path=env.kubernetes.health_path,
                url=url,
                http=self.http,
            )

    @staticmethod
    @contextlib.contextmanager
    def _kube_client(stack: auto.Stack, env: EnvironmentConfig) -> Iterator[KubeClient]:
        """The stack's ``dockyard:kubeconfig`` secret, else $KUBECONFIG or ~/.kube/config (as the provider does)."""
        try:
            text = stack.get_config("dockyard:kubeconfig").value
        except auto.CommandError:
            path = Path(os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or Path.home() / ".kube" / "config")
            if not path.exists():
                raise VerifierError(f"no dockyard:kubeconfig secret and no kubeconfig at {path}") from None
            text = path.read_text()
        with client_from_kubeconfig(text, env.kubernetes.context) as client:
            yield client


# --- promote, verify, roll back ---------------------------------------------------------------------------------


@dataclass
class VerifiedPromotion:
    """What ``promote --verify`` did: the promotion, its verification and, on failure, the rollback."""

    promotion: Outcome
    verification: Verification | None = None
    rollback: Outcome | None = None
    restored: Verification | None = None
    problem: str | None = None

    @property
    def healthy(self) -> bool:
        """The target ends on a verified release (the promoted one, or the one it was rolled back to)."""
        if self.verification is not None and self.verification.passed:
            return True
        return self.restored is not None and self.restored.passed


def promote_verified(
    project: Project,
    verifier: Verifier,
    source: str,
    target: str,
    *,
    yes: bool,
    confirm: Callable[[], bool],
    on_failure: Callable[[Verification], None] = lambda _: None,
) -> VerifiedPromotion:
    """Promote, verify the target, and on failure roll back to the target's previous verified digest."""
    outcome = project.promote(source, target, yes=yes, confirm=confirm)
    result = VerifiedPromotion(outcome)
    if not outcome.applied:
        return result
    result.verification = verifier.verify(target, trigger=f"promote from {source}")
    if result.verification.passed:
        return result
    on_failure(result.verification)
    # The promoted image has just failed, so its newest record is a failure: it cannot be the target.
    previous = records.last_verified(verifier.ledger(target).verifications(target))
    if previous is None:
        result.problem = f"{target} has no previously verified digest to roll back to; it still serves {outcome.image}"
        return result
    try:
        result.rollback = project.rollback(target, to=previous.image, yes=True, confirm=confirm)
    except DockyardError as error:
        result.problem = f"the rollback of {target} to {previous.image} failed: {error}"
        return result
    result.restored = verifier.verify(target, trigger=f"rollback after failed verification of {outcome.image}")
    return result
