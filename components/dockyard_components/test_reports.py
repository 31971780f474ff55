"""Test reports: the JUnit XML that CI systems show, made from the ``go test -json`` events a test stage exported.

The Dockerfile's test stage writes ``go-test.json`` (the Go toolchain's own event stream) and ``coverage.out`` into
a stage of their own; the podman builder exports that stage with ``--output`` before it runs the test stage, so the
reports exist also when a test fails. This module turns the events into ``junit.xml`` beside them, in the shape
gotestsum writes (one ``testsuite`` per package, one ``testcase`` per test and subtest, the test's output in its
``failure``), without a tool to install in the builder image or on the build host.
"""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where a build puts its test reports instead of a fresh folder beside its log (CI: a folder it publishes).
REPORTS_ENV = "DOCKYARD_TEST_REPORTS"
EVENTS_FILE = "go-test.json"
JUNIT_FILE = "junit.xml"
COVERAGE_FILE = "coverage.out"
#: What the test stage exports: removed before a build, so a report is never a previous build's.
EXPORTED = (EVENTS_FILE, COVERAGE_FILE, "status", JUNIT_FILE)


@dataclass
class _Case:
    name: str
    result: str = "run"
    seconds: float = 0.0
    output: list[str] = field(default_factory=list)


@dataclass
class _Suite:
    name: str
    result: str = "run"
    seconds: float = 0.0
    cases: dict[str, _Case] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)


def read_events(text: str) -> list[dict[str, Any]]:
    """The JSON events of a ``go test -json`` stream; other lines (a build's plain stderr) are skipped."""
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "Action" in event:
            events.append(event)
    return events


_VERBOSE_START = re.compile(r"^=== (?:RUN|CONT)\s+(\S+)")
_VERBOSE_END = re.compile(r"^\s*--- (PASS|FAIL|SKIP): (\S+) \((\d+(?:\.\d+)?)s\)")


def events_from_verbose(text: str, package: str) -> list[dict[str, Any]]:
    """``go test -json``-shaped events from a compiled test binary's ``-test.v`` output (a test binary run on its
    own, as the integration stage does, has no ``test2json`` beside it). Each line is the output of the test that
    ran last; a run that ends without ``PASS`` fails its package."""
    events: list[dict[str, Any]] = []
    current: str | None = None
    verdict = None
    for line in text.splitlines(keepends=True):
        if start := _VERBOSE_START.match(line):
            current = start.group(1)
            events.append({"Action": "run", "Package": package, "Test": current})
        elif end := _VERBOSE_END.match(line):
            events.append({"Action": "output", "Package": package, "Test": end.group(2), "Output": line})
            events.append(
                {
                    "Action": end.group(1).lower(),
                    "Package": package,
                    "Test": end.group(2),
                    "Elapsed": float(end.group(3)),
                }
            )
            current = None
            continue
        if line.strip() in ("PASS", "FAIL"):
            verdict = line.strip().lower()
        event: dict[str, Any] = {"Action": "output", "Package": package, "Output": line}
        if current is not None and verdict is None:
            event["Test"] = current
        events.append(event)
    events.append({"Action": verdict or "fail", "Package": package})
    return events


def _suites(events: Iterable[Mapping[str, Any]]) -> list[_Suite]:
    suites: dict[str, _Suite] = {}
    for event in events:
        package = str(event.get("Package") or event.get("ImportPath") or "")
        suite = suites.setdefault(package, _Suite(package))
        action, test, output = event["Action"], event.get("Test"), event.get("Output")
        if test is None:
            if output is not None:
                suite.output.append(str(output))
            if action in ("pass", "fail", "skip"):
                suite.result, suite.seconds = action, float(event.get("Elapsed") or 0)
            continue
        case = suite.cases.setdefault(test, _Case(test))
        if output is not None:
            case.output.append(str(output))
        if action in ("pass", "fail", "skip"):
            case.result, case.seconds = action, float(event.get("Elapsed") or 0)
    return list(suites.values())


def junit_xml(events: Iterable[Mapping[str, Any]]) -> str:
    """JUnit XML for ``events``. A package that failed with no failing test (a build error, a panic outside a
    test) gets a failing case of its own, so a CI system never shows a failed run as green."""
    root = ET.Element("testsuites")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in _suites(events):
        cases = list(suite.cases.values())
        if suite.result == "fail" and not any(case.result == "fail" for case in cases):
            cases.append(_Case("(package)", "fail", suite.seconds, suite.output))
        failures = sum(case.result == "fail" for case in cases)
        skipped = sum(case.result == "skip" for case in cases)
        errors = sum(case.result == "run" for case in cases)
        element = ET.SubElement(
            root,
            "testsuite",
            name=suite.name,
            tests=str(len(cases)),
            failures=str(failures),
            errors=str(errors),
            skipped=str(skipped),
            time=f"{suite.seconds:.3f}",
        )
        for case in cases:
            entry = ET.SubElement(element, "testcase", classname=suite.name, name=case.name, time=f"{case.seconds:.3f}")
            if case.result == "fail":
                ET.SubElement(entry, "failure", message="Failed", type="").text = "".join(case.output)
            elif case.result == "skip":
                ET.SubElement(entry, "skipped", message="".join(case.output).strip()[:500])
            elif case.result == "run":  # no verdict: the run ended inside this test (a timeout or a crash)
                ET.SubElement(entry, "error", message="no result").text = "".join(case.output)
        totals["tests"] += len(cases)
        totals["failures"] += failures
        totals["errors"] += errors
        totals["skipped"] += skipped
    root.attrib.update({key: str(value) for key, value in totals.items()})
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def clear(directory: Path) -> None:
    """Remove what an earlier build exported into ``directory``."""
    for name in EXPORTED:
        (directory / name).unlink(missing_ok=True)


def write_junit(directory: Path) -> Path | None:
    """``directory/junit.xml`` from the events exported there; None when the test stage exported none."""
    events = directory / EVENTS_FILE
    if not events.is_file():
        return None
    junit = directory / JUNIT_FILE
    junit.write_text(junit_xml(read_events(events.read_text(errors="replace"))))
    return junit


def main(argv: list[str]) -> int:
    """``python3 test_reports.py DIR``: ``DIR/junit.xml`` from ``DIR/go-test.json``. Standard library only, so a CI
    job that builds with podman alone runs it from the checkout, with no install."""
    if len(argv) != 1:
        print("usage: test_reports.py DIR", file=sys.stderr)
        return 2
    junit = write_junit(Path(argv[0]))
    if junit is None:
        print(f"test_reports: no {EVENTS_FILE} in {argv[0]}", file=sys.stderr)
        return 1
    print(f"test_reports: wrote {junit}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
