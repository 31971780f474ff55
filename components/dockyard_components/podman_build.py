"""The podman builder as a Pulumi dynamic resource: daemonless build, test stage, push, digest out.

A dynamic provider needs no provider plugin of its own (the engine runs it through the Python SDK), and its ``diff``
decides exactly when to rebuild: only when something that shapes the image changes, never for a password rotation.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic as dynamic

from dockyard_components.build_memo import build_memo
from dockyard_components.build_secrets import secret_files
from dockyard_components.scripts.build_guard import find_engine
from dockyard_components.test_reports import REPORTS_ENV, clear, write_junit

#: Inputs that shape the pushed image: any change rebuilds (a replacement, since an image is immutable). Not among
#: them: ``cache_repo``, the optional registry layer cache, which only makes a build faster; the build secrets'
#: values (``secrets``), which grant the build access and are not content: rotating one must not rebuild, and a
#: value, even hashed, kept in state or the build memo's key could be checked against guesses. Their ids are. Nor
#: ``timestamp``: it is the commit's time, which ``labels`` (``org.opencontainers.image.created``) already carry.
#: ``platform`` is one string, comma separated for an image index.
REBUILD_KEYS = (
    "image_name",
    "tags",
    "context",
    "dockerfile",
    "target",
    "test_target",
    "platform",
    "build_args",
    "labels",
    "context_hash",
    "secret_ids",
    "integration",
)
#: Inputs that are secrets: never among a resource's outputs.
SECRET_INPUTS = ("password", "secrets")
BUILD_TIMEOUT_SECONDS = 1800
#: Runs the build in a process group of its own and stops it (and the run's plugins) when the engine dies.
GUARD = Path(__file__).resolve().parent / "scripts" / "build_guard.py"
#: Where each build's whole output is kept; the newest KEPT_LOGS stay.
LOG_DIR = Path(os.environ.get("DOCKYARD_CACHE", Path.home() / ".cache" / "dockyard")) / "build-logs"
KEPT_LOGS = 20
#: Lines that name a failure: Go test failures, compiler and podman errors, the script's own verdicts.
#: Lines that say what failed; ``x_test.go:12: message`` is a Go test's own reason, under its ``--- FAIL`` line.
FAILURE = re.compile(
    r"--- FAIL|^FAIL\b|^panic:|\berror\b|^Error|refused|unreachable|failed|_test\.go:\d+:", re.IGNORECASE
)
FIRST_FAILURES = 20


class PodmanBuildError(Exception):
    """podman failed; the message says which step, shows the first failures and where the whole output is."""


def _lines(values: Mapping[str, str]) -> str:
    return "\n".join(f"{key}={value}" for key, value in sorted(values.items()))


def new_log_path(image_name: str, directory: Path | None = None) -> Path:
    """A fresh log file for one build of ``image_name`` (in :data:`LOG_DIR`); logs beyond :data:`KEPT_LOGS` go,
    with their test reports (``<log>.reports/``)."""
    directory = directory or LOG_DIR
    directory.mkdir(parents=True, exist_ok=True)
    for old in sorted(directory.glob("*.log"), key=lambda p: p.stat().st_mtime)[: -KEPT_LOGS + 1]:
        old.unlink(missing_ok=True)
        shutil.rmtree(old.with_suffix(".reports"), ignore_errors=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return directory / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', image_name)}-{stamp}-{os.getpid()}.log"


def reports_beside(log_path: Path, project_dir: Path) -> Path:
    """The folder a build's test reports go to: ``$DOCKYARD_TEST_REPORTS`` (relative to the program's directory,
    as CI sets it) if set, else beside its log."""
    chosen = os.environ.get(REPORTS_ENV)
    return project_dir / chosen if chosen else log_path.with_suffix(".reports")


def failure_report(output: str, log_path: Path, image_name: str, returncode: int) -> str:
    """What failed (the script's last step), the first failure lines (not the last: a long test run's first
    failures explain the rest), and the log that keeps everything."""
    lines = output.splitlines()
    steps = [line.removeprefix("dockyard-build: ") for line in lines if line.startswith("dockyard-build: ")]
    verdict = next((s for s in reversed(steps) if "refused" in s or "unreachable" in s), None)
    if verdict is not None:
        return f"podman build of {image_name}: {verdict}\nfull output: {log_path}"
    step = steps[-1] if steps else "the build script"
    # The failing step's own output: an earlier step's lines (the unit tests' log, say) are not why it failed.
    last_step = max((i for i, line in enumerate(lines) if line.startswith("dockyard-build: ")), default=-1)
    failures = [
        line for line in lines[last_step + 1 :] if FAILURE.search(line) and not line.startswith("dockyard-build: ")
    ]
    shown = failures[:FIRST_FAILURES] or lines[last_step + 1 :][-FIRST_FAILURES:] or lines[-FIRST_FAILURES:]
    more = f"\n  ... {len(failures) - FIRST_FAILURES} more" if len(failures) > FIRST_FAILURES else ""
    body = "\n".join(f"  {line}" for line in shown)
    return (
        f"podman build of {image_name} failed while {step} (exit {returncode}); first failures:\n{body}{more}\n"
        f"full output: {log_path}"
    )


def integration_environment(integration: Mapping[str, Any] | None) -> dict[str, str]:
    """The script's ``INTEGRATION_*`` variables (an empty ``INTEGRATION_TARGET``: no integration stage) and the
    Python that runs :mod:`dockyard_components.integration` (this one: the package is importable here)."""
    integration = integration or {}
    return {
        "INTEGRATION_TARGET": integration.get("target") or "",
        "INTEGRATION_COMPOSE": integration.get("compose") or "",
        "INTEGRATION_SERVICE": integration.get("service") or "",
        "INTEGRATION_ENV": _lines(integration.get("env") or {}),
        "DOCKYARD_PYTHON": sys.executable,
    }


def run_build(props: Mapping[str, Any], built: dict[str, str] | None = None) -> str:
    """Build, test and push ``props`` (or reuse the digest a build with the same inputs pushed, when a build memo is
    set and the registry still holds it); return the pushed manifest digest. ``built``, if given, gets the paths of
    what the build kept: ``log`` and, when its test stage exported reports, ``test_reports``."""
    with build_memo(props, REBUILD_KEYS) as memo:
        digest = _run_script(props, reuse=memo.digest if memo else None, built=built if built is not None else {})
        if memo:
            memo.record(digest)
        return digest


def script_environment(props: Mapping[str, Any], reuse: str | None = None) -> dict[str, str]:
    """The build script's environment for ``props`` (``REPORTS_DIR`` and ``BUILD_SECRETS`` are the caller's)."""
    environment = {
        **os.environ,
        "IMAGE_NAME": props["image_name"],
        "TAGS": " ".join(props["tags"]),
        "CONTEXT": str(Path(props["project_dir"]) / props["context"]),
        "DOCKERFILE": props["dockerfile"],
        "TARGET": props.get("target") or "",
        "TEST_TARGET": props.get("test_target") or "",
        "PLATFORM": props["platform"],
        # A number through the engine comes back a float (0.0); --timestamp takes whole seconds.
        "TIMESTAMP": str(int(props["timestamp"])) if props.get("timestamp") is not None else "",
        "BUILD_ARGS": _lines(props["build_args"]),
        "LABELS": _lines(props["labels"]),
        "REGISTRY": props["registry_server"],
        "REGISTRY_USER": props["username"],
        "REGISTRY_LOGIN": "true" if props.get("password") else "false",
        "CACHE_REPO": props.get("cache_repo") or "",
        "PASSWORD_SOURCE": props.get("password_source") or "",
        "REUSE_DIGEST": reuse or "",
        "REPORTS_TARGET": props.get("reports_target") or "",
    }
    environment.update(integration_environment(props.get("integration")))
    return environment


def _run_script(props: Mapping[str, Any], reuse: str | None, built: dict[str, str]) -> str:
    """Run ``scripts/podman-build.sh`` for ``props`` under the build guard; return the pushed manifest digest."""
    script = resources.files("dockyard_components").joinpath("scripts/podman-build.sh").read_text()
    password = props.get("password")
    environment = script_environment(props, reuse)
    log_path = new_log_path(props["image_name"])
    built["log"] = str(log_path)
    reports = reports_beside(log_path, Path(props["project_dir"]))
    if props.get("reports_target"):
        reports.mkdir(parents=True, exist_ok=True)
        clear(reports)
    environment["REPORTS_DIR"] = str(reports)
    command = [sys.executable, str(GUARD), str(find_engine(os.getpid()) or 0), "--", "bash", "-c", script]
    with secret_files(props.get("secrets") or {}) as build_secrets, log_path.open("w") as log:
        environment["BUILD_SECRETS"] = build_secrets
        build = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=environment, text=True
        )
        try:
            digest, _ = build.communicate(password or "", timeout=BUILD_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            build.terminate()  # the guard stops the build's whole process group, then exits
            build.communicate()
            raise PodmanBuildError(
                f"podman build of {props['image_name']} took over {BUILD_TIMEOUT_SECONDS}s and was stopped; "
                f"full output: {log_path}"
            ) from None
    # Also after a failed test: the reports say which tests failed.
    junit = write_junit(reports) if props.get("reports_target") else None
    if junit is not None:
        built["test_reports"] = str(reports)
    if build.returncode != 0:
        output = log_path.read_text(errors="replace")
        report = failure_report(output, log_path, props["image_name"], build.returncode)
        raise PodmanBuildError(report + (f"\ntest report: {junit}" if junit else ""))
    digest = digest.strip()
    if not digest.startswith("sha256:"):
        raise PodmanBuildError(f"podman push of {props['image_name']} reported no digest: {digest!r}; see {log_path}")
    return digest


class _PlainBuildErrors:
    """Stands in for the ``traceback`` module of the dynamic provider host, which reports every error as a Python
    traceback: a :class:`PodmanBuildError` is reported as its message (it already names the step and the log)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(traceback, name)

    @staticmethod
    def format_exc(*args: Any, **kwargs: Any) -> str:
        error = sys.exc_info()[1]
        if isinstance(error, PodmanBuildError):
            return str(error)
        return traceback.format_exc(*args, **kwargs)


def _report_build_errors_plainly() -> None:
    host = sys.modules.get("__main__")
    spec = getattr(host, "__spec__", None)
    if host is not None and spec is not None and spec.name == "pulumi.dynamic.__main__":
        host.traceback = _PlainBuildErrors()  # type: ignore[attr-defined]


_report_build_errors_plainly()


class PodmanBuildProvider(dynamic.ResourceProvider):
    """Builds on create and on any change of :data:`REBUILD_KEYS`; deleting keeps the pushed image (rollbacks)."""

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        built: dict[str, str] = {}
        digest = run_build(props, built)
        outputs = {key: value for key, value in props.items() if key not in SECRET_INPUTS}
        return dynamic.CreateResult(
            id_=digest, outs={**outputs, "digest": digest, "test_reports": built.get("test_reports", "")}
        )

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [key for key in REBUILD_KEYS if olds.get(key) != news.get(key)]
        return dynamic.DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # Pushed images stay in the registry: promoted stacks and rollbacks still reference their digests.
        return None


class PodmanBuild(dynamic.Resource):
    """One podman build + push. Output ``digest`` is the pushed manifest digest (an image index's when ``platform``
    names several, comma separated). ``timestamp`` (seconds since the epoch) is every time in the image.

    The optional input ``cache_repo`` (a repository without a tag) becomes the script's ``CACHE_REPO``: layers are
    pulled from and pushed to it, so a fresh CI runner reuses the previous build's layers. ``secrets`` (id → value, a
    secret Output) are mounted for ``RUN --mount=type=secret,id=<id>`` from files that exist only during the build;
    ``secret_ids`` (their ids) are what a diff compares. With ``reports_target`` (a stage holding only the test
    stage's reports), output ``test_reports`` is the folder with ``junit.xml`` and ``coverage.out`` (empty: none, as
    when a build memo reused a digest and no test ran).
    """

    digest: pulumi.Output[str]
    test_reports: pulumi.Output[str]

    def __init__(self, name: str, props: Mapping[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(
            PodmanBuildProvider(),
            name,
            {**props, "digest": None, "test_reports": None},
            opts=pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=list(SECRET_INPUTS))
            ),
        )
