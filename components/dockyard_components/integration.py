"""The integration stage of the podman builder: the app's integration tests against its service containers.

The services are those of a Compose file (``compose.integration.yaml``): the tests' service (whose image is the
Dockerfile's ``integration`` stage, built just before) and every service it ``depends_on``. They run as one podman
pod per build, named uniquely (``dockyard-it-<random>``): a pod with no network of its own (``--network none``) whose
containers share one loopback, with an ``/etc/hosts`` that names every service ``127.0.0.1``, so ``cache:6379``
reaches the cache as it does on a Compose network, with no network, bridge or firewall rule to make or leave behind.
Why not podman-compose: Debian's 1.0.3 ignores ``condition: service_healthy`` and podman 4.3 runs health checks
from systemd timers, which this machine has not; here a health check is run by hand until it passes.

Nothing of a build's project may outlive it, also not a ``kill -9`` of the build's process group:

- every pod carries the labels :data:`PROJECT_LABEL` and :data:`OWNER_LABEL` (the build script's pid and start time);
- ``run`` removes its pod when the tests end, passed or failed;
- ``reap``, started by the build script in a session of its own before the pod exists, waits until the script is
  gone and removes the project then (a SIGKILL of the script's group does not reach it);
- ``run`` first sweeps the pods of owners that are gone (a reaper that did not run, a machine that stopped).

    python -m dockyard_components.integration run --compose F --service S --image IID --project P --owner PID
    python -m dockyard_components.integration reap --project P --owner PID
    python -m dockyard_components.integration sweep

Podman runs here with ``runc`` and explicit ulimits (crun cannot set rlimits on this machine): unless the caller set
``CONTAINERS_CONF``, every podman call of this module reads :data:`CONTAINERS_CONF` from a file it writes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dockyard_components.scripts.build_guard import start_time
from dockyard_components.test_reports import EVENTS_FILE, events_from_verbose, write_junit

PROJECT_LABEL = "io.dockyard.integration.project"
OWNER_LABEL = "io.dockyard.integration.owner"
#: The podman engine settings the services run with (see the module's docstring).
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=10240:10240", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""
POLL_SECONDS = 0.2
#: Compose's own health-check defaults (interval 30 s is too slow for a build: 1 s unless the file says).
DEFAULT_INTERVAL = 1.0
DEFAULT_RETRIES = 60
#: Where the integration tests' report goes inside the build's reports folder.
REPORTS_SUBDIR = "integration"


class IntegrationError(Exception):
    """The Compose file cannot be run as written, or a service did not become healthy."""


@dataclass
class Service:
    """One service of the Compose file, interpolated."""

    name: str
    image: str
    environment: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    healthcheck: list[str] | None = None
    interval: float = DEFAULT_INTERVAL
    retries: int = DEFAULT_RETRIES
    depends_on: dict[str, str] = field(default_factory=dict)


_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("plain")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        if (op in (":-", ":?") and not current) or (op in ("-", "?") and current is None):
            if op.endswith("?"):
                raise IntegrationError(f"${{{name}}} is required: {arg or 'not set'}")
            return arg
        return current or ""

    return _VARIABLE.sub(one, value)


def _words(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, list) and all(isinstance(item, str | int | float) for item in value):
        return [str(item) for item in value]
    raise IntegrationError(f"{key}: want a string or a list of strings, got {value!r}")


def _seconds(value: Any, key: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", str(value).strip())
    if not match:
        raise IntegrationError(f"{key}: want a duration such as 1s or 500ms, got {value!r}")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number / 1000 if unit == "ms" else number * 60 if unit == "m" else number


def _service(name: str, raw: Any, env: Mapping[str, str]) -> Service:
    where = f"services.{name}"
    if not isinstance(raw, dict):
        raise IntegrationError(f"{where}: want a mapping, got {raw!r}")
    raw = _interpolated(raw, env)
    environment = raw.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) if "=" in item else (item, env.get(item, "")) for item in environment)
    if not isinstance(environment, dict):
        raise IntegrationError(f"{where}.environment: want a mapping or a list of KEY=VALUE")
    depends = raw.get("depends_on") or {}
    if isinstance(depends, list):
        depends = {dependency: None for dependency in depends}
    if not isinstance(depends, dict) or not all(isinstance(v, dict | None) for v in depends.values()):
        raise IntegrationError(f"{where}.depends_on: want a list of services or a mapping of service to condition")
    service = Service(
        name=name,
        image=str(raw.get("image") or ""),
        environment={str(k): "" if v is None else str(v) for k, v in environment.items()},
        command=_words(raw["command"], f"{where}.command") if raw.get("command") is not None else None,
        entrypoint=_words(raw["entrypoint"], f"{where}.entrypoint") if raw.get("entrypoint") is not None else None,
        depends_on={str(k): str((v or {}).get("condition", "service_started")) for k, v in depends.items()},
    )
    check = raw.get("healthcheck") or {}
    if check and not check.get("disable"):
        test = check.get("test")
        if isinstance(test, str):
            service.healthcheck = ["/bin/sh", "-c", test]
        elif isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL"):
            service.healthcheck = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", " ".join(test[1:])]
        elif test != ["NONE"]:
            raise IntegrationError(f"{where}.healthcheck.test: want [CMD, ...], [CMD-SHELL, ...] or a string")
        service.interval = _seconds(check.get("interval", DEFAULT_INTERVAL), f"{where}.healthcheck.interval")
        service.retries = int(check.get("retries", DEFAULT_RETRIES))
    return service


def _interpolated(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, list):
        return [_interpolated(item, env) for item in value]
    if isinstance(value, dict):
        return {key: _interpolated(item, env) for key, item in value.items()}
    return value


def load(compose: Path, service: str, env: Mapping[str, str]) -> list[Service]:
    """The services ``service`` needs, in start order, ``service`` last (its image is the one the build made)."""
    try:
        document = yaml.safe_load(compose.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise IntegrationError(f"cannot read the Compose file {compose}: {error}") from None
    services = (document or {}).get("services") if isinstance(document, dict) else None
    if not isinstance(services, dict) or service not in services:
        found = sorted(services) if isinstance(services, dict) else []
        raise IntegrationError(f"{compose}: no service {service!r} (services: {', '.join(found) or 'none'})")
    ordered: list[Service] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if any(s.name == name for s in ordered):
            return
        if name in visiting:
            raise IntegrationError(f"{compose}: depends_on cycle {' -> '.join([*visiting, name])}")
        if name not in services:
            raise IntegrationError(f"{compose}: services.{visiting[-1]}.depends_on names {name!r}, which is no service")
        visiting.append(name)
        current = _service(name, services[name], env)
        for dependency in current.depends_on:
            visit(dependency)
        visiting.pop()
        if not current.image and name != service:
            raise IntegrationError(f"{compose}: services.{name} has no image")
        ordered.append(current)

    visit(service)
    return ordered


# ---------------------------------------------------------------------------------------------- podman


@contextlib.contextmanager
def podman_environment() -> Iterator[dict[str, str]]:
    """The environment podman runs with: the caller's ``CONTAINERS_CONF``, or :data:`CONTAINERS_CONF`."""
    if os.environ.get("CONTAINERS_CONF"):
        yield dict(os.environ)
        return
    with tempfile.TemporaryDirectory(prefix="dockyard-it-") as directory:
        conf = Path(directory) / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        yield {**os.environ, "CONTAINERS_CONF": str(conf)}


def _podman(env: Mapping[str, str], *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], env=dict(env), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise IntegrationError(f"podman {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result


def owner_of(pid: int) -> str:
    """``pid:start time``: a pid alone may be recycled."""
    return f"{pid}:{start_time(pid) or 0}"


def owner_alive(owner: str) -> bool:
    pid, _, started = owner.partition(":")
    return pid.isdigit() and start_time(int(pid)) == started


def project_pods(env: Mapping[str, str], project: str | None = None) -> dict[str, str]:
    """Pods of integration projects (of ``project`` only, if given): name → owner."""
    label = f"{PROJECT_LABEL}={project}" if project else PROJECT_LABEL
    listed = _podman(
        env,
        "pod",
        "ps",
        "--filter",
        f"label={label}",
        "--format",
        f'{{{{.Name}}}} {{{{index .Labels "{OWNER_LABEL}"}}}}',
    )
    pods = {}
    for line in listed.stdout.splitlines():
        name, _, owner = line.partition(" ")
        if name:
            pods[name] = owner.strip()
    return pods


def leftovers(env: Mapping[str, str], project: str) -> list[str]:
    """What of ``project`` still exists: its pods, containers and networks (``pod NAME``, ``container NAME``, ...)."""
    found = [f"pod {name}" for name in project_pods(env, project)]
    containers = _podman(env, "ps", "--all", "--format", "{{.Names}}", "--filter", f"name={project}").stdout.split()
    networks = _podman(env, "network", "ls", "--format", "{{.Name}}").stdout.split()
    return [*found, *(f"container {name}" for name in containers), *(f"network {n}" for n in networks if project in n)]


def teardown(env: Mapping[str, str], project: str) -> None:
    """Remove the project's pod and every container that carries its label; idempotent."""
    _podman(env, "pod", "rm", "--force", "--ignore", "--time", "0", project)
    leftovers = _podman(env, "ps", "--all", "--quiet", "--filter", f"label={PROJECT_LABEL}={project}").stdout.split()
    if leftovers:
        _podman(env, "rm", "--force", "--time", "0", *leftovers)
    for pod in project_pods(env, project):
        _podman(env, "pod", "rm", "--force", "--ignore", "--time", "0", pod)


def sweep(env: Mapping[str, str]) -> list[str]:
    """Remove the projects whose owner is gone; return their names."""
    gone = [pod for pod, owner in project_pods(env).items() if not owner_alive(owner)]
    for pod in gone:
        teardown(env, pod)
    return gone


def _run_flags(project: str, service: Service, hosts: Path) -> list[str]:
    flags = ["--pod", project, "--name", f"{project}-{service.name}", "--label", f"{PROJECT_LABEL}={project}"]
    flags += ["--volume", f"{hosts}:/etc/hosts:ro"]
    for key, value in sorted(service.environment.items()):
        flags += ["--env", f"{key}={value}"]
    if service.entrypoint is not None:
        flags += ["--entrypoint", json.dumps(service.entrypoint)]  # a JSON array: podman keeps the words apart
    return flags


def _wait_healthy(env: Mapping[str, str], project: str, service: Service, log: Any) -> None:
    name = f"{project}-{service.name}"
    assert service.healthcheck is not None
    for attempt in range(1, service.retries + 1):
        state = _podman(env, "inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        if state not in ("running", "created", "configured"):
            logs = _podman(env, "logs", "--tail", "20", name)
            raise IntegrationError(
                f"service {service.name} stopped ({state or 'gone'}) before it was healthy; its last lines:\n"
                + (logs.stdout + logs.stderr).strip()
            )
        if _podman(env, "exec", name, *service.healthcheck).returncode == 0:
            print(f"integration: service {service.name} is healthy (check {attempt})", file=log)
            return
        time.sleep(service.interval)
    raise IntegrationError(
        f"service {service.name} was not healthy after {service.retries} checks: {shlex.join(service.healthcheck)}"
    )


def run(compose: Path, service: str, image: str, project: str, owner: str, reports: Path | None) -> int:
    """Bring up the services ``service`` depends on, run ``service`` from ``image`` and return its exit status;
    the project is removed whatever happens."""
    variables = dict(os.environ)
    for line in os.environ.get("INTEGRATION_ENV", "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            variables[key] = value
    services = load(compose, service, variables)
    log = sys.stderr
    with podman_environment() as env:
        for stale in sweep(env):
            print(f"integration: removed {stale}, left by a build that is gone", file=log)
        hosts = Path(tempfile.mkdtemp(prefix="dockyard-it-hosts-")) / "hosts"
        hosts.write_text(f"127.0.0.1\tlocalhost {' '.join(s.name for s in services)}\n::1\tlocalhost\n")
        hosts.chmod(0o644)
        hosts.parent.chmod(0o755)
        try:
            _podman(
                env,
                *("pod", "create", "--name", project, "--network", "none"),
                *("--label", f"{PROJECT_LABEL}={project}", "--label", f"{OWNER_LABEL}={owner}"),
                check=True,
            )
            tests = services[-1]
            for dependency in services[:-1]:
                print(f"integration: starting {dependency.name} ({dependency.image})", file=log)
                _podman(
                    env,
                    *("run", "--detach", *_run_flags(project, dependency, hosts), dependency.image),
                    *(dependency.command or []),
                    check=True,
                )
                if dependency.healthcheck and tests.depends_on.get(dependency.name) == "service_healthy":
                    _wait_healthy(env, project, dependency, log)
            print(f"integration: running {tests.name}", file=log)
            command = ["podman", "run", *_run_flags(project, tests, hosts), image, *(tests.command or [])]
            output: list[str] = []
            with subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
            ) as process:
                assert process.stdout is not None
                for line in process.stdout:
                    output.append(line)
                    log.write(line)
                    log.flush()
            if reports is not None:
                _write_report(reports, "".join(output))
            return process.returncode
        finally:
            teardown(env, project)
            shutil.rmtree(hosts.parent, ignore_errors=True)


def _write_report(reports: Path, output: str) -> None:
    folder = reports / REPORTS_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    events = events_from_verbose(output, package="integration")
    (folder / EVENTS_FILE).write_text("".join(f"{json.dumps(event)}\n" for event in events))
    junit = write_junit(folder)
    print(f"integration: test report {junit}", file=sys.stderr)


def reap(project: str, owner: str) -> None:
    """Wait until ``owner`` is gone, then remove ``project`` (a no-op when the build removed it already)."""
    while owner_alive(owner):
        time.sleep(POLL_SECONDS)
    with podman_environment() as env:
        teardown(env, project)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m dockyard_components.integration")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the tests' service and its dependencies; exit with its status")
    run_parser.add_argument("--compose", type=Path, required=True)
    run_parser.add_argument("--service", required=True)
    run_parser.add_argument("--image", required=True)
    run_parser.add_argument("--project", required=True)
    run_parser.add_argument("--owner", type=int, required=True, help="pid whose end ends the project")
    run_parser.add_argument("--reports", default="", help="folder for the JUnit report (empty: none)")
    reap_parser = commands.add_parser("reap", help="remove the project once the owner is gone")
    reap_parser.add_argument("--project", required=True)
    reap_parser.add_argument("--owner", type=int, required=True)
    commands.add_parser("sweep", help="remove the projects whose owner is gone")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            reports = Path(args.reports) if args.reports else None
            return run(args.compose, args.service, args.image, args.project, owner_of(args.owner), reports)
        if args.command == "reap":
            reap(args.project, owner_of(args.owner))
            return 0
        with podman_environment() as env:
            for gone in sweep(env):
                print(f"removed {gone}")
        return 0
    except IntegrationError as error:
        print(f"integration: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
