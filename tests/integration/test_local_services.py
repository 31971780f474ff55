"""Integration tests for the local services: registry (TLS + htpasswd), podman builds, push, run.

Needs root on the Debian machine this project runs on: `scripts/local-services.sh start` installs
missing packages, starts the registry and builds the offline base images (a session fixture does
it). Every subprocess and HTTP call has a bounded timeout; the registry password is read from its
file into a `Secret` whose repr is masked and is only ever passed on stdin or as HTTP auth.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.local_services import parse_exports, podman_build_lock, remove_images

# Per-call timeouts bound every step; the test timeout leaves room for a cold start
# (package installs, base images) and two image builds inside the first tests' fixtures.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = REPO_ROOT / "scripts" / "local-services.sh"
APP_DIR = REPO_ROOT / "app"

# podman/buildah on this machine: the storage driver (overlay where it mounts, else vfs) comes from
# /etc/containers/storage.conf (written by scripts/local-base-images.sh); builds and runs need chroot isolation.
ISOLATION = "--isolation=chroot"
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
BUILD_TIMEOUT = 900
SHORT_TIMEOUT = 60
HTTP_TIMEOUT = 10.0


class Secret:
    """A string that never shows itself in reprs, assertion messages or tracebacks."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class Services:
    registry: str
    user: str
    password: Secret
    password_file: Path
    ca: Path
    authfile: Path
    builder_image: str
    runtime_image: str

    def basic_auth(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.user, self.password.reveal())  # its repr shows nothing

    def url(self, path: str) -> str:
        return f"https://{self.registry}{path}"


def run(
    args: list[str], *, timeout: float, stdin: Secret | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command with a bounded timeout; on failure show its output (which holds no secret).
    Secrets go to the command's stdin only, wrapped so that no traceback shows them."""
    try:
        proc = subprocess.run(
            args,
            input=stdin.reveal() if stdin is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"timed out after {timeout}s: {shlex.join(args)}\n{_tail(exc.stdout)}\n{_tail(exc.stderr)}")
    if check and proc.returncode != 0:
        pytest.fail(
            f"exit {proc.returncode}: {shlex.join(args)}\n--- stdout\n{_tail(proc.stdout)}\n--- stderr\n{_tail(proc.stderr)}"
        )
    return proc


def _tail(text: str | bytes | None, lines: int = 40) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------------- fixtures


def require_root() -> None:
    if os.geteuid() != 0:
        message = "needs root (installs packages, podman storage in /var/lib/containers)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # CI must run this tier, never skip it
        pytest.skip(message)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    require_root()
    was_running = run([str(SERVICES), "status"], timeout=SHORT_TIMEOUT, check=False).returncode == 0
    run([str(SERVICES), "start"], timeout=BUILD_TIMEOUT)
    env = parse_exports(run([str(SERVICES), "env"], timeout=SHORT_TIMEOUT).stdout)
    password_file = Path(env["DOCKYARD_REGISTRY_PASSWORD_FILE"])
    assert password_file.stat().st_mode & 0o077 == 0, "password file must be private (0600)"
    svc = Services(
        registry=env["DOCKYARD_REGISTRY"],
        user=env["DOCKYARD_REGISTRY_USER"],
        password=Secret(password_file.read_text().strip()),
        password_file=password_file,
        ca=Path(env["DOCKYARD_REGISTRY_CA"]),
        authfile=Path(env["DOCKYARD_REGISTRY_AUTHFILE"]),
        builder_image=env["DOCKYARD_BUILDER_IMAGE"],
        runtime_image=env["DOCKYARD_RUNTIME_IMAGE"],
    )
    yield svc
    if not was_running:
        run([str(SERVICES), "stop"], timeout=SHORT_TIMEOUT, check=False)


@pytest.fixture(scope="session")
def http(services: Services) -> Iterator[httpx.Client]:
    ctx = ssl.create_default_context(cafile=str(services.ca))
    with httpx.Client(verify=ctx, timeout=HTTP_TIMEOUT, trust_env=False) as client:
        yield client


def podman_build(services: Services, *, target: str, tag: str, extra: list[str] | None = None) -> None:
    with podman_build_lock():
        _podman_build(services, target=target, tag=tag, extra=extra)


def _podman_build(services: Services, *, target: str, tag: str, extra: list[str] | None) -> None:
    run(
        [
            "podman",
            "build",
            ISOLATION,
            "--build-arg",
            f"BUILDER_IMAGE={services.builder_image}",
            "--build-arg",
            f"RUNTIME_IMAGE={services.runtime_image}",
            *(extra or []),
            "--target",
            target,
            "--tag",
            tag,
            str(APP_DIR),
        ],
        timeout=BUILD_TIMEOUT,
    )


@dataclass(frozen=True)
class Pushed:
    repo: str  # repository path inside the registry, e.g. dockyard/app-it
    tag: str
    ref: str  # registry/repo:tag
    digest: str  # from podman push --digestfile
    version: str


@pytest.fixture(scope="module")
def pushed(
    services: Services, http: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Pushed]]:
    """Build the runtime image twice (healthy and HEALTH_FAIL=true), push both; delete them after."""
    repo = "dockyard/app-it"
    run_id = f"{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
    out: dict[str, Pushed] = {}
    tmp = tmp_path_factory.mktemp("push")
    try:
        for variant, health_fail in (("ok", "false"), ("fail", "true")):
            version = f"0.0.0-it.{run_id}.{variant}"
            tag = f"it-{run_id}-{variant}"
            ref = f"{services.registry}/{repo}:{tag}"
            podman_build(
                services,
                target="runtime",
                tag=ref,
                extra=[
                    "--build-arg", f"VERSION={version}",
                    "--build-arg", f"HEALTH_FAIL={health_fail}",
                    "--build-arg", "VCS_REF=integration-test",
                    "--build-arg", f"BUILD_DATE={datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}",
                ],
            )  # fmt: skip
            digest_file = tmp / f"{variant}.digest"
            run(
                ["podman", "push", "--authfile", str(services.authfile), "--digestfile", str(digest_file), ref],
                timeout=300,
            )
            out[variant] = Pushed(repo, tag, ref, digest_file.read_text().strip(), version)
        yield out
    finally:
        for p in out.values():
            with contextlib.suppress(httpx.HTTPError):
                http.delete(services.url(f"/v2/{p.repo}/manifests/{p.digest}"), auth=services.basic_auth())
            # The repo@digest name `buildah from` added when pulling goes too.
            remove_images(p.ref, f"{services.registry}/{p.repo}@{p.digest}")


def descendants(root: int) -> list[int]:
    """Pids of all processes below ROOT (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


@dataclass(frozen=True)
class Running:
    ctr: str  # buildah working container
    base_url: str  # http://127.0.0.1:PORT
    log: Path  # the process's stdout+stderr

    def wait_http(self, path: str, timeout: float = 30.0) -> httpx.Response:
        """GET base_url+path once the service accepts connections (bounded wait)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                return httpx.get(self.base_url + path, timeout=2.0, trust_env=False)
            except httpx.TransportError as exc:
                last = exc
                time.sleep(0.2)
        pytest.fail(f"{self.base_url}{path} did not answer within {timeout}s: {last!r}\n{_tail(self.log.read_text())}")


@contextlib.contextmanager
def running_image(services: Services, image: str, port: int, log: Path) -> Iterator[Running]:
    """Pull IMAGE from the registry, run its entrypoint with buildah (chroot isolation, host
    network) on 127.0.0.1:PORT. Always stops the process and removes the working container."""
    ctr = f"dockyard-it-{secrets.token_hex(4)}"
    run(
        ["buildah", "from", "--pull=always", "--authfile", str(services.authfile), "--name", ctr, image],
        timeout=300,
    )
    proc: subprocess.Popen[bytes] | None = None
    try:
        inspect = run(["buildah", "inspect", "--type", "container", ctr], timeout=SHORT_TIMEOUT).stdout
        cfg = json.loads(inspect)["OCIv1"]["config"]
        assert cfg.get("User") == "65532:65532", f"image must run as numeric non-root user, got {cfg.get('User')!r}"
        entrypoint = cfg.get("Entrypoint") or []
        assert entrypoint, "runtime image has no ENTRYPOINT"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["buildah", "run", ISOLATION, "--env", f"PORT={port}", ctr, "--", *entrypoint],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        yield Running(ctr, f"http://127.0.0.1:{port}", log)
    finally:
        if proc is not None:
            # `buildah run` answers SIGTERM with SIGKILL to its process, so send SIGTERM to the
            # app itself (what a container runtime does) for a graceful stop; escalate if needed.
            app_pids = [pid for pid in descendants(proc.pid) if cmdline(pid)[:1] == entrypoint[:1]]
            for pid in app_pids or [proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        run(["buildah", "rm", ctr], timeout=SHORT_TIMEOUT, check=False)


# ---------------------------------------------------------------------------------- registry


def test_registry_rejects_anonymous_and_wrong_password(services: Services, http: httpx.Client) -> None:
    anonymous = http.get(services.url("/v2/"))
    assert anonymous.status_code == 401
    assert anonymous.headers.get("WWW-Authenticate", "").lower().startswith("basic")
    assert http.get(services.url("/v2/_catalog")).status_code == 401

    wrong = http.get(services.url("/v2/"), auth=(services.user, "not-the-password"))
    assert wrong.status_code == 401
    wrong_user = http.get(services.url("/v2/"), auth=("someone-else", services.password.reveal()))
    assert wrong_user.status_code == 401

    right = http.get(services.url("/v2/"), auth=services.basic_auth())
    assert right.status_code == 200


def test_registry_serves_only_tls_from_the_local_ca(services: Services) -> None:
    # Not trusted by the system store: our throwaway CA is the only way in.
    with pytest.raises(httpx.ConnectError), httpx.Client(timeout=HTTP_TIMEOUT, trust_env=False) as system_trust:
        system_trust.get(services.url("/v2/"))
    # Plain HTTP on the TLS port is refused.
    plain = httpx.get(f"http://{services.registry}/v2/", timeout=HTTP_TIMEOUT, trust_env=False)
    assert plain.status_code == 400
    # The state is private.
    assert services.ca.parent.stat().st_mode & 0o077 == 0
    assert (services.ca.parent / "ca.key").stat().st_mode & 0o077 == 0
    ca_for_podman = Path("/etc/containers/certs.d") / services.registry / "ca.crt"
    assert ca_for_podman.read_bytes() == services.ca.read_bytes()


def test_podman_login_rejects_wrong_password(services: Services, tmp_path: Path) -> None:
    authfile = tmp_path / "auth.json"
    base = ["podman", "login", "--authfile", str(authfile), "--username", services.user, "--password-stdin"]

    bad = run([*base, services.registry], timeout=SHORT_TIMEOUT, stdin=Secret("not-the-password\n"), check=False)
    assert bad.returncode != 0
    assert "invalid username/password" in bad.stderr.lower(), bad.stderr
    assert not authfile.exists() or services.registry not in authfile.read_text()

    good = run(
        [*base, services.registry], timeout=SHORT_TIMEOUT, stdin=Secret(services.password.reveal() + "\n"), check=False
    )
    assert good.returncode == 0, good.stderr
    assert services.registry in json.loads(authfile.read_text())["auths"]


# ------------------------------------------------------------------------------------ builds


def test_build_test_target(services: Services) -> None:
    tag = f"localhost/dockyard-app-it:test-{secrets.token_hex(3)}"
    try:
        podman_build(services, target="test", tag=tag)
    finally:
        remove_images(tag)


def test_push_digest_matches_registry(services: Services, http: httpx.Client, pushed: dict[str, Pushed]) -> None:
    auth = services.basic_auth()
    for p in pushed.values():
        assert p.digest.startswith("sha256:"), p.digest
        assert len(p.digest) == len("sha256:") + 64, p.digest
        head = http.head(
            services.url(f"/v2/{p.repo}/manifests/{p.tag}"), auth=auth, headers={"Accept": MANIFEST_ACCEPT}
        )
        assert head.status_code == 200
        assert head.headers["Docker-Content-Digest"] == p.digest
        # And the manifest is addressable by that digest.
        by_digest = http.head(
            services.url(f"/v2/{p.repo}/manifests/{p.digest}"), auth=auth, headers={"Accept": MANIFEST_ACCEPT}
        )
        assert by_digest.status_code == 200
    assert pushed["ok"].digest != pushed["fail"].digest
    # skopeo (same certs.d trust and auth file) sees the same digest and the OCI labels.
    ok = pushed["ok"]
    info = json.loads(
        run(
            ["skopeo", "inspect", "--authfile", str(services.authfile), f"docker://{ok.ref}"], timeout=SHORT_TIMEOUT
        ).stdout
    )
    assert info["Digest"] == ok.digest
    assert info["Labels"]["org.opencontainers.image.version"] == ok.version
    assert info["Labels"]["org.opencontainers.image.revision"] == "integration-test"
    assert info["Labels"]["org.opencontainers.image.title"] == "dockyard-app"
    # Anonymous pulls are refused too.
    anon = http.head(services.url(f"/v2/{pushed['ok'].repo}/manifests/{pushed['ok'].tag}"))
    assert anon.status_code == 401


def smoke(app: Running) -> subprocess.CompletedProcess[str]:
    """The binary's own smoke mode, run from the image (a second process in the same container)."""
    return run(
        ["buildah", "run", ISOLATION, app.ctr, "--", "/usr/local/bin/dockyard-app", "-smoke", app.base_url],
        timeout=SHORT_TIMEOUT,
        check=False,
    )


def test_pushed_image_serves_health(services: Services, pushed: dict[str, Pushed], tmp_path: Path) -> None:
    p = pushed["ok"]
    image = f"{services.registry}/{p.repo}@{p.digest}"
    with running_image(services, image, free_port(), tmp_path / "app.log") as app:
        health = app.wait_http("/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "version": p.version}
        hello = app.wait_http("/")
        assert hello.status_code == 200
        assert hello.json()["version"] == p.version
        checked = smoke(app)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    # SIGTERM reached the app: it shut down gracefully.
    assert "shutting down" in (tmp_path / "app.log").read_text()


def test_health_fail_variant_answers_503(services: Services, pushed: dict[str, Pushed], tmp_path: Path) -> None:
    p = pushed["fail"]
    image = f"{services.registry}/{p.repo}@{p.digest}"
    with running_image(services, image, free_port(), tmp_path / "app.log") as app:
        health = app.wait_http("/health")
        assert health.status_code == 503
        assert health.json() == {"status": "fail", "version": p.version}
        # Only the health check fails: the service itself answers.
        assert app.wait_http("/").status_code == 200
        checked = smoke(app)
        assert checked.returncode == 1, checked.stdout + checked.stderr
        assert "503" in checked.stderr


# ----------------------------------------------------------- a second registry: its environment and its port


def services_command(command: str, state: Path, port: int, **environment: str) -> subprocess.CompletedProcess[str]:
    """``local-services.sh COMMAND`` on its own state and port, without base images (seconds, not minutes)."""
    settings = {"DOCKYARD_STATE": str(state), "DOCKYARD_REGISTRY_PORT": str(port), "DOCKYARD_SKIP_BASE_IMAGES": "1"}
    return subprocess.run(
        [str(SERVICES), command],
        env={**os.environ, **settings, **environment},
        capture_output=True,
        text=True,
        timeout=SHORT_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_registry_never_reads_the_callers_registry_variables(tmp_path: Path) -> None:
    require_root()
    port, state = free_port(), tmp_path / "state"
    (tmp_path / "auth.json").write_text("{}")
    # podman's standard variable, which the registry would read as its `auth` section, and a wrong listen address.
    callers = {"REGISTRY_AUTH_FILE": str(tmp_path / "auth.json"), "REGISTRY_HTTP_ADDR": "127.0.0.1:1"}
    try:
        started = services_command("start", state, port, **callers)
        assert started.returncode == 0, started.stderr
        pid = int((state / "registry" / "registry.pid").read_text())
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert [v for v in environment if v.startswith(b"REGISTRY_")] == []
    finally:
        services_command("stop", state, port)
        subprocess.run(["rm", "-rf", f"/etc/containers/certs.d/127.0.0.1:{port}"], check=False)


def test_a_taken_port_names_the_stack_files_that_hold_the_registry_address(tmp_path: Path) -> None:
    require_root()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        refused = services_command("start", tmp_path / "state", port)
    assert refused.returncode == 1
    assert f"port {port} on 127.0.0.1 is taken by another process" in refused.stderr
    holders = sorted(p.name for p in REPO_ROOT.glob("Pulumi.*.yaml") if "127.0.0.1:" in p.read_text())
    assert holders, "the local stacks name their registry"
    for name in holders:
        assert f"    {name}: 127.0.0.1:" in refused.stderr
    assert "DOCKYARD_REGISTRY_PORT alone leaves" in refused.stderr


# ----------------------------------------------------------- one home for the registry address; quiet scripts


def registry_env() -> dict[str, str]:
    lines = (REPO_ROOT / "scripts" / "local-registry.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_stack_files_name_the_registry_of_local_registry_env() -> None:
    settings = registry_env()
    address = f"{settings['DOCKYARD_LOCAL_REGISTRY_HOST']}:{settings['DOCKYARD_LOCAL_REGISTRY_PORT']}"
    local_stacks = sorted(REPO_ROOT.glob("Pulumi.local*.yaml"))
    assert local_stacks
    for stack_file in local_stacks:
        named = set(re.findall(r"127\.0\.0\.1:[0-9]+", stack_file.read_text()))
        assert named == {address}, f"{stack_file.name} names {named}; scripts/local-registry.env says {address}"
    exported = subprocess.run(
        [str(SERVICES), "env"], capture_output=True, text=True, timeout=SHORT_TIMEOUT, check=True
    ).stdout
    assert parse_exports(exported)["DOCKYARD_REGISTRY"] == address


def test_a_stale_cluster_pid_file_is_quiet(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    state.mkdir()
    # A pid from an earlier machine or boot: nothing runs under it (pid_max is far below this).
    (state / "kube-apiserver.pid").write_text("99999999\n")
    status = subprocess.run(
        [str(REPO_ROOT / "scripts" / "local-cluster.sh"), "status"],
        env={**os.environ, "DOCKYARD_CLUSTER_STATE": str(state)},
        capture_output=True,
        text=True,
        timeout=SHORT_TIMEOUT,
        check=False,
    )
    assert status.returncode == 3, status.stdout + status.stderr
    assert status.stderr == ""
    assert status.stdout.startswith("cluster: stopped")


def test_status_reports_podman_storage() -> None:
    status = subprocess.run(
        [str(SERVICES), "status"], capture_output=True, text=True, timeout=SHORT_TIMEOUT, check=False
    )
    assert re.search(r"^podman storage: [0-9]+ MB in /", status.stdout, re.MULTILINE), status.stdout
