"""The builder's integration stage with the real build script, podman and the local registry: the app's integration
tests run against the cache of app/compose.integration.yaml (localhost/dockyard/redis:7) after the test stage.

A passing run pushes; with CACHE_FAIL=true (the app counts two visits per request, which only a real cache shows)
the build fails naming the failing test, nothing is pushed and nothing of the build's pod is left; after a SIGKILL of
the build's process group in the middle of the integration tests, the reaper removes the pod all the same."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from dockyard_components import integration, podman_build
from tests.local_services import build_props, remove_images, start_local_services

pytestmark = pytest.mark.timeout(1200)

REPOSITORY = "build28/integration-it"
CACHE_IMAGE = "localhost/dockyard/redis:7"


def unique_tag(kind: str) -> str:
    """Unique per run: tmp_path's name repeats across sessions, and a tag an earlier run pushed would look pushed."""
    return f"it-{kind}-{os.getpid()}-{time.time_ns()}"


def integration_props(env: dict[str, str], tmp_path: Path, tag: str, **build_args: str) -> dict[str, Any]:
    props = build_props(env, tmp_path, REPOSITORY, tag)
    props["build_args"] = {**props["build_args"], **build_args}
    props["reports_target"] = "test-reports"
    props["integration"] = {
        "compose": "compose.integration.yaml",
        "service": "tests",
        "target": "integration",
        "env": {"DOCKYARD_CACHE_IMAGE": CACHE_IMAGE},
    }
    return props


def leftovers(project: str) -> list[str]:
    """Pods, containers and networks of ``project`` that still exist."""
    return integration.leftovers(os.environ, project)


def pushed(image: str) -> bool:
    return subprocess.run(["skopeo", "inspect", "--raw", f"docker://{image}"], capture_output=True).returncode == 0


def projects_in(log: Path) -> list[str]:
    text = log.read_text(errors="replace") if log.exists() else ""
    return [line.rsplit("podman pod ", 1)[1].rstrip(")") for line in text.splitlines() if "(podman pod " in line]


def test_passing_integration_tests_push_and_leave_nothing(app: Path, tmp_path: Path) -> None:
    env = start_local_services()
    tag = unique_tag("pass")
    props = integration_props(env, tmp_path, tag)
    built: dict[str, str] = {}
    try:
        digest = podman_build.run_build(props, built)
        assert pushed(f"{props['image_name']}@{digest}")
    finally:
        remove_images(f"{props['image_name']}:{tag}")
    log = Path(built["log"])
    [project] = projects_in(log)
    text = log.read_text()
    assert "service cache is healthy" in text
    assert "--- PASS: TestIntegrationVisitsAreCountedInTheCache" in text
    assert leftovers(project) == []
    junit = ET.parse(Path(built["test_reports"]) / "integration" / "junit.xml").getroot()
    names = {case.attrib["name"] for case in junit.iter("testcase")}
    assert {"TestIntegrationCacheAnswersPing", "TestIntegrationVisitsAreCountedInTheCache"} <= names
    assert junit.attrib["failures"] == "0"


def test_a_wrong_answer_from_the_cache_fails_before_the_push(app: Path, tmp_path: Path) -> None:
    env = start_local_services()
    tag = unique_tag("fail")
    props = integration_props(env, tmp_path, tag, CACHE_FAIL="true")
    built: dict[str, str] = {}
    with pytest.raises(podman_build.PodmanBuildError) as failed:
        podman_build.run_build(props, built)
    message = str(failed.value)
    assert "failed while running the integration tests" in message
    assert "--- FAIL: TestIntegrationVisitsAreCountedInTheCache" in message
    assert "visits 2, want 1" in message
    assert not pushed(f"{props['image_name']}:{tag}")
    [project] = projects_in(Path(built["log"]))
    assert leftovers(project) == []
    junit = ET.parse(Path(built["test_reports"]) / "integration" / "junit.xml").getroot()
    assert junit.attrib["failures"] == "1"


def test_a_sigkill_of_the_build_mid_integration_leaves_nothing(app: Path, tmp_path: Path) -> None:
    env = start_local_services()
    tag = unique_tag("kill")
    # The tests' service sleeps before its tests, so the kill lands while the pod runs.
    compose = app / "compose.integration.yaml"
    compose.write_text(
        compose.read_text().replace(
            "      DOCKYARD_CACHE_ADDR: cache:6379\n",
            "      DOCKYARD_CACHE_ADDR: cache:6379\n    entrypoint: [/bin/sh, -c, 'sleep 600']\n",
        )
    )
    props = integration_props(env, tmp_path, tag)
    # The build script as run_build starts it (under the guard, in a process group of its own), but from here.
    environment = {**podman_build.script_environment(props), "REPORTS_DIR": str(tmp_path / "reports")}
    log = tmp_path / "kill.log"
    script = (Path(podman_build.__file__).parent / "scripts" / "podman-build.sh").read_text()
    with log.open("w") as output:
        build = subprocess.Popen(
            ["bash", "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=output,
            env=environment,
            text=True,
            process_group=0,
        )
    assert build.stdin is not None
    build.stdin.write(props["password"])
    build.stdin.close()
    deadline = time.monotonic() + 900
    project = ""
    while time.monotonic() < deadline and build.poll() is None:
        found = projects_in(log)
        if found and any(f"{found[0]}-tests" in name for name in running_containers()):
            project = found[0]
            break
        time.sleep(0.5)
    assert project, f"the integration tests never started; log:\n{log.read_text()[-3000:]}"
    os.killpg(build.pid, signal.SIGKILL)
    build.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and leftovers(project):
        time.sleep(0.5)
    assert leftovers(project) == []
    assert not pushed(f"{props['image_name']}:{tag}")


def running_containers() -> list[str]:
    return subprocess.run(
        ["podman", "ps", "--format", "{{.Names}}"], capture_output=True, text=True, check=True
    ).stdout.split()
