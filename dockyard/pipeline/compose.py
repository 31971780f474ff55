"""The integration tests' environment, read from the app's compose file (``image.build.integration``).

The app declares its test environment once, as a Compose file in the build context: one service runs the tests
(built from the Dockerfile's integration stage), every other one is something they need (a cache, a database). The
pipeline runs the same environment in each CI system's own way, so this module turns the file into the model's
terms: a :class:`~dockyard.pipeline.model.ServiceContainer` per dependency and the tests' environment, where an
address ``<service>:<port>`` becomes a :class:`~dockyard.pipeline.model.ServiceAddress` that each renderer resolves.

Only what a CI system's service containers can express is accepted, and anything else is one problem naming the
file, the service and what is wrong: a dependency is an image (CI builds no service container), its image is a
literal or ``${VAR:-default}``/``${VAR-default}`` (the default is what every CI system can run; the variable is
kept for those that can read one there), its environment holds no interpolation.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dockyard.model.config import IntegrationConfig
from dockyard.model.problems import Problem
from dockyard.pipeline.model import (
    ComposeEnvironment,
    EnvValue,
    HealthCheck,
    PipelineConfigError,
    ServiceAddress,
    ServiceContainer,
)
from dockyard.pipeline.pins import pinned_image

#: The key every problem of the compose file is reported under.
KEY = "image.build.integration.compose"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_VARIABLE_IMAGE = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):?-(?P<default>[^${}]+)\}$")
_DURATION = re.compile(r"^(\d+(\.\d+)?(us|ms|s|m|h))+$")
_ADDRESS = re.compile(r"^(?P<host>[a-zA-Z0-9][a-zA-Z0-9_.-]*):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class IntegrationEnvironment:
    """What the compose file declares: the services the tests need and the tests' own environment."""

    compose: ComposeEnvironment
    services: tuple[ServiceContainer, ...]
    #: The tests service's ``environment``, addresses of the services as :class:`ServiceAddress`.
    environment: Mapping[str, EnvValue]


class _Problems:
    """Collects every problem of one file at once, each naming the file and the service."""

    def __init__(self, stack: str, path: str) -> None:
        self.stack, self.path, self.found = stack, path, list[Problem]()

    def add(self, service: str | None, found: str, allowed: str) -> None:
        where = f"{self.path}: service '{service}': " if service else f"{self.path}: "
        self.found.append(Problem(self.stack, KEY, where + found, allowed))


def read_integration(stack: str, context: str, config: IntegrationConfig, project_dir: Path) -> IntegrationEnvironment:
    """The integration environment of ``stack``'s compose file (``context/config.compose`` under ``project_dir``);
    raises :class:`PipelineConfigError` with every problem of the file."""
    path = f"{context}/{config.compose}"
    problems = _Problems(stack, path)
    try:
        text = (project_dir / path).read_text(encoding="utf-8")
    except OSError as error:
        problems.add(
            None, f"cannot be read ({error.strerror or error})", "allowed: a compose file in the build context"
        )
        raise PipelineConfigError(problems.found) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problems.add(None, f"not YAML{at} ({getattr(error, 'problem', None) or error})", "allowed: a compose file")
        raise PipelineConfigError(problems.found) from None
    services = document.get("services") if isinstance(document, dict) else None
    if not isinstance(services, dict) or not services:
        problems.add(None, "no services", "allowed: a mapping 'services' with the tests service and what it needs")
        raise PipelineConfigError(problems.found)
    environment = parse_services(services, config, problems)
    if problems.found:
        raise PipelineConfigError(problems.found)
    return environment


def parse_services(services: dict[Any, Any], config: IntegrationConfig, problems: _Problems) -> IntegrationEnvironment:
    """The compose file's ``services`` in the model's terms; problems are added to ``problems``."""
    tests = services.get(config.service)
    names = sorted(str(name) for name in services)
    if not isinstance(tests, dict):
        # Which service is which depends on it: the others are not judged until it is there.
        problems.add(config.service, "missing", f"allowed: the service that runs the tests (found: {', '.join(names)})")
        return IntegrationEnvironment(ComposeEnvironment(problems.path, config.service), (), {})
    _check_tests(tests, config, problems)
    others = {str(name): spec for name, spec in services.items() if name != config.service}
    addresses = _addresses(tests, others, config.service, problems)
    containers = []
    for name, spec in others.items():
        container = _container(name, spec, addresses.get(name, ()), problems)
        if container is not None:
            containers.append(container)
    environment: dict[str, EnvValue] = {}
    for key, value in _environment(config.service, tests.get("environment"), problems).items():
        match = _ADDRESS.match(value)
        if match and match["host"] in others:
            environment[key] = ServiceAddress(match["host"], int(match["port"]))
        else:
            environment[key] = value
    depends = tests.get("depends_on") or []
    for dependency in depends if isinstance(depends, list | dict) else []:
        if str(dependency) not in others:
            problems.add(
                config.service,
                f"depends_on '{dependency}', which the file does not declare",
                f"allowed: one of {', '.join(sorted(others)) or 'no other service'}",
            )
    return IntegrationEnvironment(ComposeEnvironment(problems.path, config.service), tuple(containers), environment)


def _check_tests(tests: dict[str, Any], config: IntegrationConfig, problems: _Problems) -> None:
    build = tests.get("build")
    if build is None:
        problems.add(config.service, "no build", f"allowed: built from the Dockerfile's stage '{config.target}'")
    elif isinstance(build, dict) and build.get("target", config.target) != config.target:
        problems.add(
            config.service,
            f"build.target '{build.get('target')}'",
            f"allowed: '{config.target}' (dockyard:image.build.integration.target)",
        )


def _addresses(
    tests: dict[str, Any], others: Mapping[str, Any], service: str, problems: _Problems
) -> dict[str, tuple[int, ...]]:
    """The ports of each service that the tests' environment names as ``<service>:<port>``."""
    found: dict[str, set[int]] = {}
    environment = tests.get("environment")
    if isinstance(environment, dict | list):
        for value in _environment(service, environment, _Problems("", "")).values():
            match = _ADDRESS.match(value)
            if match and match["host"] in others:
                found.setdefault(match["host"], set()).add(int(match["port"]))
    return {name: tuple(sorted(ports)) for name, ports in found.items()}


def _container(name: str, spec: Any, addressed: tuple[int, ...], problems: _Problems) -> ServiceContainer | None:
    if not _NAME.match(name):
        problems.add(name, "is no valid host name", "allowed: letters, digits, '_', '.', '-'")
        return None
    if not isinstance(spec, dict):
        problems.add(name, f"found {type(spec).__name__}", "allowed: a mapping with an image")
        return None
    raw = spec.get("image")
    if not isinstance(raw, str) or not raw:
        built = " (it has build:)" if "build" in spec else ""
        problems.add(name, f"no image{built}", "allowed: an image; CI runs it as a service container and builds none")
        return None
    image, variable = raw, None
    if "$" in raw:
        match = _VARIABLE_IMAGE.match(raw)
        if match is None:
            problems.add(
                name,
                f"image '{raw}'",
                "allowed: an image, or ${VAR:-default} (the default is what runs where CI reads no variable there)",
            )
            return None
        image, variable = match["default"], match["name"]
    pinned = pinned_image(image)
    if pinned is None:
        problems.add(
            name,
            f"image '{image}' is pinned by tag only",
            "allowed: an image pinned by digest (name@sha256:<64 hex>) or one dockyard/pipeline/pins.py pins",
        )
        return None
    image = pinned
    ports = sorted({*_ports(name, spec, problems), *addressed})
    return ServiceContainer(
        name=name,
        image=image,
        image_variable=variable,
        ports=tuple(ports),
        environment=_environment(name, spec.get("environment"), problems),
        health=_health(name, spec.get("healthcheck"), problems),
    )


def _ports(name: str, spec: dict[str, Any], problems: _Problems) -> list[int]:
    """Container ports from ``ports`` (short or long syntax) and ``expose``."""
    ports = []
    for entry in [*(spec.get("ports") or []), *(spec.get("expose") or [])]:
        target = entry.get("target") if isinstance(entry, dict) else str(entry).rsplit(":", 1)[-1].split("/")[0]
        if not str(target).isdigit() or not 0 < int(str(target)) < 65536:
            problems.add(name, f"port '{entry}'", "allowed: a container port (6379, '6379:6379', {target: 6379})")
            continue
        ports.append(int(str(target)))
    return ports


def _environment(name: str, raw: Any, problems: _Problems) -> dict[str, str]:
    if raw is None:
        return {}
    pairs: list[tuple[str, Any]]
    if isinstance(raw, dict):
        pairs = [(str(key), value) for key, value in raw.items()]
    elif isinstance(raw, list):
        pairs = [tuple(str(item).split("=", 1)) if "=" in str(item) else (str(item), None) for item in raw]  # type: ignore[misc]
    else:
        problems.add(name, f"environment is a {type(raw).__name__}", "allowed: a mapping or a list of KEY=VALUE")
        return {}
    environment = {}
    for key, value in pairs:
        if value is None or isinstance(value, dict | list):
            problems.add(name, f"environment {key} has no value", "allowed: KEY: VALUE (CI passes no host variable)")
        elif "$" in str(value):
            problems.add(name, f"environment {key} interpolates a variable", "allowed: a literal value")
        else:
            environment[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return environment


def _health(name: str, raw: Any, problems: _Problems) -> HealthCheck | None:
    if raw is None or (isinstance(raw, dict) and raw.get("disable")):
        return None
    test = raw.get("test") if isinstance(raw, dict) else None
    command: str | None = None
    if isinstance(test, str):
        command = test
    elif isinstance(test, list) and len(test) >= 2 and test[0] == "CMD-SHELL":
        command = " ".join(str(part) for part in test[1:])
    elif isinstance(test, list) and len(test) >= 2 and test[0] == "CMD":
        command = shlex.join(str(part) for part in test[1:])
    elif isinstance(test, list) and test[:1] == ["NONE"]:
        return None
    if command is None:
        problems.add(name, f"healthcheck.test {test!r}", "allowed: [CMD, ...], [CMD-SHELL, '...'] or a command")
        return None
    timing: dict[str, str | None] = {}
    for key in ("interval", "timeout", "start_period"):
        value = raw.get(key)
        if value is not None and not _DURATION.match(str(value)):
            problems.add(name, f"healthcheck.{key} '{value}'", "allowed: a duration such as 5s or 1m30s")
            value = None
        timing[key] = None if value is None else str(value)
    retries = raw.get("retries")
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool) or retries < 1):
        problems.add(name, f"healthcheck.retries '{retries}'", "allowed: a whole number of at least 1")
        retries = None
    return HealthCheck(
        command=command,
        interval=timing["interval"],
        timeout=timing["timeout"],
        retries=retries,
        start_period=timing["start_period"],
    )
