"""The app's test reports with the real build script, podman and the local registry: the build keeps a JUnit report
that lists the app's tests and their coverage profile beside its log; with the broken-app variant (a test that fails
on purpose, as tests/engine/test_pipeline_run.py pushes) the build fails, nothing is pushed, and the report lists the
failing test with its message beside the passing ones."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dockyard_components import podman_build
from tests.local_services import build_props, remove_images, start_local_services
from tests.stacks import PROJECT

pytestmark = pytest.mark.timeout(1200)

REPOSITORY = "build28/reports-it"
BROKEN = '\nfunc TestBrokenOnPurpose(t *testing.T) { t.Fatal("broken on purpose") }\n'


def app_tests() -> set[str]:
    """The top-level tests the app's sources declare."""
    # The integration tests (build tag `integration`) run in their own stage, against the cache.
    files = [p.read_text() for p in (PROJECT / "app").glob("*_test.go")]
    sources = "".join(text for text in files if not text.startswith("//go:build integration"))
    return set(re.findall(r"^func (Test\w+)\(t \*testing\.T\)", sources, re.MULTILINE))


def cases(junit: Path) -> dict[str, ET.Element]:
    return {case.attrib["name"]: case for case in ET.parse(junit).getroot().iter("testcase")}


def test_the_junit_report_lists_every_app_test_and_the_build_keeps_coverage(app: Path, tmp_path: Path) -> None:
    env = start_local_services()
    tag = f"reports-{tmp_path.name.lower()}"[:120]
    props = {**build_props(env, tmp_path, REPOSITORY, tag), "reports_target": "test-reports"}
    built: dict[str, str] = {}
    try:
        digest = podman_build.run_build(props, built)
        # The registry keeps no test image: skopeo reads podman's login and certs.d.
        subprocess.run(
            ["skopeo", "delete", f"docker://{props['image_name']}@{digest}"], capture_output=True, check=False
        )
    finally:
        remove_images(f"{props['image_name']}:{tag}")
    reports = Path(built["test_reports"])
    assert reports == Path(built["log"]).with_suffix(".reports")  # beside the build log
    found = cases(reports / "junit.xml")
    assert app_tests() <= set(found)
    assert len(app_tests()) >= 10
    assert not [name for name, case in found.items() if case.find("failure") is not None]
    assert (reports / "coverage.out").read_text().startswith("mode: ")


def test_a_failing_app_test_fails_the_build_and_is_in_the_junit_report(app: Path, tmp_path: Path) -> None:
    env = start_local_services()
    (app / "main_test.go").write_text((app / "main_test.go").read_text() + BROKEN)
    tag = f"broken-{tmp_path.name.lower()}"[:120]
    props = {**build_props(env, tmp_path, REPOSITORY, tag), "reports_target": "test-reports"}
    built: dict[str, str] = {}
    with pytest.raises(podman_build.PodmanBuildError) as failed:
        podman_build.run_build(props, built)
    message = str(failed.value)
    assert "--- FAIL: TestBrokenOnPurpose" in message
    assert "broken on purpose" in message
    junit = Path(built["test_reports"]) / "junit.xml"
    assert f"test report: {junit}" in message
    found = cases(junit)
    failure = found["TestBrokenOnPurpose"].find("failure")
    assert failure is not None
    assert "broken on purpose" in (failure.text or "")
    passed = app_tests() - {"TestBrokenOnPurpose"}
    assert passed <= set(found)
    assert all(found[name].find("failure") is None for name in passed)
    suites = ET.parse(junit).getroot()
    assert suites.attrib["failures"] == "1"
    # Nothing pushed: the test stage failed before the runtime stage was built.
    pushed = subprocess.run(
        ["skopeo", "inspect", "--raw", f"docker://{props['image_name']}:{tag}"], capture_output=True, check=False
    )
    assert pushed.returncode != 0
