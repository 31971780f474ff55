"""The integration stage's config (dockyard:image.build.integration), its mapping into AppImage's args and the
PodmanBuild inputs, and the Compose file reading of dockyard_components.integration, without podman."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from dockyard.model.config import ConfigError, parse_environment
from dockyard_components import podman_build
from dockyard_components.integration import IntegrationError, interpolate, load
from dockyard_components.podman_build import PodmanBuildProvider
from dockyard_components.test_reports import events_from_verbose, junit_xml
from tests.stacks import PROJECT, dockyard_document
from tests.unit.conftest import RecordingMocks
from tests.unit.test_program import _run_local


def local_with(integration: Any, **build: Any) -> dict[str, Any]:
    document = copy.deepcopy(dockyard_document("local"))
    document["image"]["build"].update(build)
    document["image"]["build"]["integration"] = integration
    return document


def test_the_local_stack_runs_the_integration_stage_with_the_defaults() -> None:
    integration = parse_environment("local", dockyard_document("local")).image.build.integration  # type: ignore[union-attr]
    assert integration is not None
    assert (integration.compose, integration.service, integration.target) == (
        "compose.integration.yaml",
        "tests",
        "integration",
    )
    assert integration.env == {"DOCKYARD_CACHE_IMAGE": "localhost/dockyard/redis:7"}


def test_absent_means_no_integration_stage() -> None:
    document = copy.deepcopy(dockyard_document("local"))
    document["image"]["build"].pop("integration", None)
    assert parse_environment("local", document).image.build.integration is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("integration", "build", "problem"),
    [
        (
            {"compose": "../compose.yaml"},
            {},
            "local: dockyard:image.build.integration.compose: found '../compose.yaml'; allowed: a .yaml or .yml path "
            "relative to the build context, inside it (no '..', not absolute)",
        ),
        (
            {"service": "tests;rm"},
            {},
            "local: dockyard:image.build.integration.service: found 'tests;rm'; allowed: a Compose service name: "
            "letters, digits, '_', '.', '-'",
        ),
        (
            {"target": ""},
            {},
            "local: dockyard:image.build.integration.target: found ''; allowed: a Dockerfile stage name: letters, "
            "digits, '_', '.', '-'",
        ),
        (
            {},
            {"builder": "docker", "testReportsTarget": None},
            "local: dockyard:image.build.integration: set with builder docker; allowed: builder podman (pulumi-docker "
            "runs no containers during a build)",
        ),
    ],
)
def test_bad_integration_config_is_one_clear_error(integration: Any, build: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_environment("local", local_with(integration, **build))
    assert len(caught.value.problems) == 1
    assert caught.value.problems == [problem]


def test_an_unknown_integration_key_names_the_allowed_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_environment("local", local_with({"composeFile": "x.yaml"}))
    (problem,) = caught.value.problems
    assert problem.startswith("local: dockyard:image.build.integration.composeFile:")


def test_the_program_hands_the_integration_stage_to_the_podman_build(mocks: RecordingMocks, workdir: Path) -> None:
    _run_local(mocks, workdir)
    build = mocks.named("image-podman-build")
    assert build.inputs["integration"] == {
        "compose": "compose.integration.yaml",
        "service": "tests",
        "target": "integration",
        "env": {"DOCKYARD_CACHE_IMAGE": "localhost/dockyard/redis:7"},
    }


def test_a_changed_integration_stage_rebuilds() -> None:
    olds = {"integration": {"compose": "a.yaml", "service": "tests", "target": "integration", "env": {}}}
    news = {"integration": {**olds["integration"], "service": "it"}}
    diff = PodmanBuildProvider().diff("id", olds, news)
    assert diff.changes
    assert diff.replaces == ["integration"]
    assert not PodmanBuildProvider().diff("id", olds, copy.deepcopy(olds)).changes


def test_the_script_gets_the_integration_stage_or_none() -> None:
    none = podman_build.integration_environment(None)
    assert none["INTEGRATION_TARGET"] == ""
    some = podman_build.integration_environment(
        {"compose": "c.yaml", "service": "tests", "target": "integration", "env": {"B": "2", "A": "1"}}
    )
    assert (some["INTEGRATION_TARGET"], some["INTEGRATION_COMPOSE"], some["INTEGRATION_SERVICE"]) == (
        "integration",
        "c.yaml",
        "tests",
    )
    assert some["INTEGRATION_ENV"] == "A=1\nB=2"


def test_the_app_compose_file_runs_the_tests_after_a_healthy_cache() -> None:
    compose = PROJECT / "app" / "compose.integration.yaml"
    cache, tests = load(compose, "tests", {"DOCKYARD_CACHE_IMAGE": "localhost/dockyard/redis:7"})
    assert (cache.name, cache.image, cache.healthcheck) == (
        "cache",
        "localhost/dockyard/redis:7",
        ["redis-cli", "ping"],
    )
    assert tests.depends_on == {"cache": "service_healthy"}
    assert tests.environment == {"DOCKYARD_CACHE_ADDR": "cache:6379"}
    (default_cache, _) = load(compose, "tests", {})
    assert default_cache.image == "docker.io/library/redis:7-bookworm"


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A:-x}", {}, "x"),
        ("${A:-x}", {"A": ""}, "x"),
        ("${A-x}", {"A": ""}, ""),
        ("${A}/$B", {"A": "1", "B": "2"}, "1/2"),
        ("$$A", {"A": "1"}, "$A"),
    ],
)
def test_compose_interpolation(text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(text, env) == expected


def test_a_compose_file_that_cannot_run_is_one_clear_error(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  tests:\n    depends_on: [db]\n")
    with pytest.raises(IntegrationError, match=r"services\.tests\.depends_on names 'db', which is no service"):
        load(compose, "tests", {})
    with pytest.raises(IntegrationError, match=r"no service 'it' \(services: tests\)"):
        load(compose, "it", {})


def test_a_test_binary_verbose_run_becomes_a_junit_report() -> None:
    output = (
        "=== RUN   TestIntegrationA\n--- PASS: TestIntegrationA (0.01s)\n=== RUN   TestIntegrationB\n"
        "    integration_test.go:9: visits 2, want 1\n--- FAIL: TestIntegrationB (0.02s)\nFAIL\n"
    )
    report = junit_xml(events_from_verbose(output, "integration"))
    assert 'tests="2" failures="1"' in report
    assert "visits 2, want 1" in report
    # A run that ends with no verdict (the container was stopped) fails its package.
    assert 'failures="1"' in junit_xml(events_from_verbose("=== RUN   TestIntegrationA\n", "integration"))
