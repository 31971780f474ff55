"""JUnit XML from ``go test -json`` events: every test and subtest a case, a failure with the test's own output,
skips, a package that failed with no failing test, a run cut off inside a test; the builder writes it beside the
exported events, and only from this build's export."""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from dockyard_components import podman_build
from dockyard_components.build_memo import MEMO_ENV
from dockyard_components.test_reports import REPORTS_ENV, clear, junit_xml, read_events, write_junit
from tests.unit.conftest import FAKE_DIGEST
from tests.unit.test_build_memo import PROPS as MEMO_PROPS

PKG = "example.com/app"


def event(action: str, test: str | None = None, output: str | None = None, elapsed: float | None = None) -> str:
    fields: dict[str, Any] = {"Time": "2026-12-05T07:19:00Z", "Action": action, "Package": PKG}
    if test is not None:
        fields["Test"] = test
    if elapsed is not None:
        fields["Elapsed"] = elapsed
    if output is not None:
        fields["Output"] = output
    return json.dumps(fields)


STREAM = "\n".join(
    [
        event("start"),
        event("run", "TestOK"),
        event("output", "TestOK", "=== RUN   TestOK\n"),
        event("pass", "TestOK", elapsed=0.01),
        event("run", "TestBad"),
        event("run", "TestBad/sub"),
        event("output", "TestBad/sub", '    x_test.go:4: broken <on> "purpose"\n'),
        event("output", "TestBad/sub", "--- FAIL: TestBad/sub (0.00s)\n"),
        event("fail", "TestBad/sub", elapsed=0),
        event("fail", "TestBad", elapsed=0.02),
        event("run", "TestLater"),
        event("output", "TestLater", "    x_test.go:9: later\n"),
        event("skip", "TestLater", elapsed=0),
        "# a plain line from the build",
        event("output", None, "FAIL\n"),
        event("fail", elapsed=0.5),
    ]
)


def suites(text: str) -> ET.Element:
    return ET.fromstring(text.split("\n", 1)[1])


def test_each_test_and_subtest_is_a_case_with_its_verdict() -> None:
    root = suites(junit_xml(read_events(STREAM)))
    (suite,) = root.iter("testsuite")
    assert suite.attrib | {"time": ""} == {
        "name": PKG,
        "tests": "4",
        "failures": "2",
        "errors": "0",
        "skipped": "1",
        "time": "",
    }
    cases = {case.attrib["name"]: case for case in suite.iter("testcase")}
    assert sorted(cases) == ["TestBad", "TestBad/sub", "TestLater", "TestOK"]
    assert cases["TestOK"].find("failure") is None
    assert cases["TestOK"].attrib["time"] == "0.010"
    failure = cases["TestBad/sub"].find("failure")
    assert failure is not None
    assert 'x_test.go:4: broken <on> "purpose"' in (failure.text or "")
    skipped = cases["TestLater"].find("skipped")
    assert skipped is not None
    assert "later" in skipped.attrib["message"]
    assert root.attrib == {"tests": "4", "failures": "2", "errors": "0", "skipped": "1"}


def test_a_package_that_failed_with_no_failing_test_is_a_failing_case() -> None:
    stream = "\n".join([event("start"), event("output", None, "panic: boom\n"), event("fail", elapsed=0.1)])
    (case,) = suites(junit_xml(read_events(stream))).iter("testcase")
    failure = case.find("failure")
    assert case.attrib["name"] == "(package)"
    assert failure is not None
    assert "panic: boom" in (failure.text or "")


def test_a_run_cut_off_inside_a_test_is_an_error() -> None:
    stream = "\n".join([event("start"), event("run", "TestHangs"), event("output", "TestHangs", "=== RUN\n")])
    root = suites(junit_xml(read_events(stream)))
    (case,) = root.iter("testcase")
    assert case.find("error") is not None
    assert root.attrib["errors"] == "1"


def test_the_report_is_written_beside_this_builds_events_only(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_text("an earlier build's")
    (tmp_path / "go-test.json").write_text(STREAM)
    (tmp_path / "other.txt").write_text("not ours")
    clear(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt"]
    assert write_junit(tmp_path) is None  # no export: no report
    (tmp_path / "go-test.json").write_text(STREAM)
    junit = write_junit(tmp_path)
    assert junit == tmp_path / "junit.xml"
    assert 'name="TestBad/sub"' in junit.read_text()


def fake_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, returncode: int) -> list[dict[str, str]]:
    """A build script run that "exports" STREAM into REPORTS_DIR and exits with ``returncode``."""
    runs: list[dict[str, str]] = []
    monkeypatch.setattr(podman_build, "LOG_DIR", tmp_path / "logs")
    monkeypatch.delenv(MEMO_ENV, raising=False)

    class FakeBuild:
        def __init__(self, _command: list[str], **kwargs: Any) -> None:
            runs.append(kwargs["env"])
            if kwargs["env"]["REPORTS_TARGET"]:
                (Path(kwargs["env"]["REPORTS_DIR"]) / "go-test.json").write_text(STREAM)
            kwargs["stderr"].write("--- FAIL: TestBad/sub (0.00s)\n" if returncode else "")
            kwargs["stderr"].flush()
            self.returncode, self.pid = returncode, 0

        def communicate(self, _input: str = "", timeout: float | None = None) -> tuple[str, None]:
            return ("" if self.returncode else FAKE_DIGEST), None

    monkeypatch.setattr(subprocess, "Popen", FakeBuild)
    return runs


def test_a_failed_build_writes_the_report_and_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_build(monkeypatch, tmp_path, returncode=1)
    monkeypatch.delenv(REPORTS_ENV, raising=False)
    built: dict[str, str] = {}
    with pytest.raises(podman_build.PodmanBuildError) as failed:
        podman_build.run_build({**MEMO_PROPS, "reports_target": "test-reports"}, built)
    junit = Path(built["test_reports"]) / "junit.xml"
    assert Path(built["test_reports"]) == Path(built["log"]).with_suffix(".reports")
    assert str(failed.value).endswith(f"test report: {junit}")
    assert 'name="TestBad/sub"' in junit.read_text()


def test_ci_names_the_folder_relative_to_the_program(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runs = fake_build(monkeypatch, tmp_path, returncode=0)
    monkeypatch.setenv(REPORTS_ENV, "test-reports")
    built: dict[str, str] = {}
    podman_build.run_build({**MEMO_PROPS, "project_dir": str(tmp_path), "reports_target": "test-reports"}, built)
    assert built["test_reports"] == str(tmp_path / "test-reports")
    assert runs[0]["REPORTS_DIR"] == str(tmp_path / "test-reports")
    assert (tmp_path / "test-reports" / "junit.xml").is_file()


def test_no_reports_target_no_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runs = fake_build(monkeypatch, tmp_path, returncode=0)
    built: dict[str, str] = {}
    podman_build.run_build(MEMO_PROPS, built)
    assert "test_reports" not in built
    assert runs[0]["REPORTS_TARGET"] == ""


def test_old_reports_go_with_their_logs(tmp_path: Path) -> None:
    for index in range(podman_build.KEPT_LOGS + 3):
        log = tmp_path / f"old-{index:02d}.log"
        log.write_text("")
        os.utime(log, (index, index))
        log.with_suffix(".reports").mkdir()
    podman_build.new_log_path("r/a", tmp_path)
    assert len(list(tmp_path.glob("*.log"))) == podman_build.KEPT_LOGS - 1
    assert len(list(tmp_path.glob("*.reports"))) == podman_build.KEPT_LOGS - 1
