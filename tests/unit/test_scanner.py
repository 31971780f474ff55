"""The scanner's judgement of trivy's exit code and JSON report: clean, vulnerable, or unavailable; never a guess."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dockyard_components import scanner
from dockyard_components.cosign import SigningTools
from dockyard_components.scanner import (
    FINDINGS_EXIT_CODE,
    Finding,
    ScannerUnavailableError,
    VulnerableImageError,
    findings,
    judge,
    trivy_image_args,
)

IMAGE = "127.0.0.1:5443/dockyard/app@sha256:" + "a" * 64
WHEN = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
JWT = {
    "VulnerabilityID": "CVE-2025-30204",
    "PkgName": "github.com/golang-jwt/jwt/v4",
    "InstalledVersion": "v4.5.1",
    "FixedVersion": "4.5.2",
    "Severity": "HIGH",
}


def report(*vulnerabilities: dict[str, Any]) -> str:
    return json.dumps(
        {
            "SchemaVersion": 2,
            "Trivy": {"Version": "0.74.0"},
            "ArtifactName": IMAGE,
            "Results": [
                {"Target": "usr/local/bin/dockyard-app", "Class": "lang-pkgs", "Type": "gobinary"},
                {"Target": "usr/local/bin/dockyard-app", "Vulnerabilities": list(vulnerabilities)},
            ],
        }
    )


def judged(returncode: int, text: str, stderr: str = "") -> scanner.ScanResult:
    return judge(
        IMAGE,
        returncode,
        text,
        stderr,
        db_repository="127.0.0.1:5443/dockyard/trivy-db:2",
        severities=("HIGH", "CRITICAL"),
        started=WHEN,
        finished=WHEN,
    )


def test_findings_name_the_vulnerability_the_package_and_the_fixed_version() -> None:
    (finding,) = findings(json.loads(report(JWT, JWT)))
    assert finding.line() == "CVE-2025-30204 (HIGH) in github.com/golang-jwt/jwt/v4 v4.5.1, fixed in 4.5.2"
    assert Finding("GHSA-x", "CRITICAL", "p", "1", "").line() == "GHSA-x (CRITICAL) in p 1, no fixed version yet"


def test_the_findings_exit_code_refuses_with_one_line() -> None:
    with pytest.raises(VulnerableImageError) as refused:
        judged(FINDINGS_EXIT_CODE, report(JWT))
    assert str(refused.value) == (
        f"{IMAGE} is vulnerable: CVE-2025-30204 (HIGH) in github.com/golang-jwt/jwt/v4 v4.5.1, fixed in 4.5.2"
    )
    assert "\n" not in str(refused.value)


def test_a_clean_scan_is_a_cosign_vuln_predicate() -> None:
    result = judged(0, report())
    predicate = result.predicate()
    assert predicate["scanner"]["uri"] == "pkg:github/aquasecurity/trivy@0.74.0"
    assert predicate["scanner"]["db"]["uri"] == "127.0.0.1:5443/dockyard/trivy-db:2"
    assert predicate["scanner"]["result"]["ArtifactName"] == IMAGE
    assert predicate["metadata"]["scanFinishedOn"] == "2026-12-04T12:00:00Z"


@pytest.mark.parametrize(
    ("returncode", "text", "stderr", "why"),
    [
        (1, "", "FATAL\tFatal error\tinit error: DB error: failed to download vulnerability DB", "exit 1"),
        (1, report(), "2026-12-04 ERROR connection refused", "connection refused"),
        (0, "", "", "without a readable report"),
        (0, "not json", "", "without a readable report"),
        (FINDINGS_EXIT_CODE, report(), "", "lists none"),
        (0, report(JWT), "", "exited 0"),
        (2, report(JWT), "", "exit 2"),
    ],
)
def test_anything_else_is_the_scanner_unavailable_never_a_pass_nor_vulnerable(
    returncode: int, text: str, stderr: str, why: str
) -> None:
    with pytest.raises(ScannerUnavailableError, match="scanner unavailable") as failed:
        judged(returncode, text, stderr)
    assert why in str(failed.value)


def test_the_command_gates_on_a_distinct_exit_code_and_reads_the_db_repository() -> None:
    args = trivy_image_args(
        IMAGE, db_repository="r/db:2", severities=("HIGH", "CRITICAL"), cache_dir="/c", output="/o.json"
    )
    assert args[0] == "image"
    assert args[-1] == IMAGE
    flags = dict(zip(args[1:-1:2], args[2:-1:2], strict=False))
    assert flags["--exit-code"] == str(FINDINGS_EXIT_CODE) != "1"
    assert flags["--db-repository"] == "r/db:2"
    assert flags["--severity"] == "HIGH,CRITICAL"
    assert flags["--image-src"] == "remote"


def test_a_missing_trivy_is_the_scanner_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("dockyard_components.cosign.TOOLS_DIR", tmp_path)
    with SigningTools("127.0.0.1:5443", None, None, None) as tools, pytest.raises(ScannerUnavailableError):
        scanner.scan(tools, IMAGE, db_repository="r/db:2")


def test_scan_runs_trivy_with_the_registry_login_and_judges_its_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    def fake_run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen["args"], seen["env"] = args, kwargs["env"]
        Path(args[args.index("--output") + 1]).write_text(report(JWT))
        return subprocess.CompletedProcess(args, FINDINGS_EXIT_CODE, "", "")

    monkeypatch.setattr(scanner, "tool", lambda name: f"/bin/{name}")
    monkeypatch.setattr(subprocess, "run", fake_run)
    with SigningTools("127.0.0.1:5443", "u", "sentinel-password", None) as tools:
        with pytest.raises(VulnerableImageError, match="CVE-2025-30204"):
            scanner.scan(tools, IMAGE, db_repository="r/db:2")
        assert seen["env"]["DOCKER_CONFIG"] == str(tools.directory)
    assert "sentinel-password" not in " ".join(seen["args"])


def test_ci_installs_the_trivy_the_bootstrap_builds() -> None:
    from dockyard.pipeline.pins import TRIVY_VERSION

    versions = (Path(__file__).parents[2] / "scripts" / "supply-chain" / "versions.env").read_text()
    assert f"DOCKYARD_TRIVY_VERSION={TRIVY_VERSION}\n" in versions


def test_an_index_is_scanned_once_per_platform_and_a_finding_on_one_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    scanned: list[str] = []
    vulnerable = {"linux/arm64"}

    def fake_run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        platform = args[args.index("--platform") + 1]
        scanned.append(platform)
        found = platform in vulnerable
        Path(args[args.index("--output") + 1]).write_text(report(JWT) if found else report())
        return subprocess.CompletedProcess(args, FINDINGS_EXIT_CODE if found else 0, "", "")

    monkeypatch.setattr(scanner, "tool", lambda name: f"/bin/{name}")
    monkeypatch.setattr(subprocess, "run", fake_run)
    platforms = ("linux/amd64", "linux/arm64")
    with SigningTools("127.0.0.1:5443", "u", "p", None) as tools:
        with pytest.raises(VulnerableImageError, match=r"\(linux/arm64\).*CVE-2025-30204"):
            scanner.scan(tools, IMAGE, db_repository="r/db:2", platforms=platforms)
        assert scanned == list(platforms)
        vulnerable.clear()
        result = scanner.scan(tools, IMAGE, db_repository="r/db:2", platforms=platforms)
    assert result.image_ref == IMAGE
    named = [r["Target"].rsplit(" ", 1)[1] for r in result.report["Results"]]
    assert sorted(set(named)) == ["(linux/amd64)", "(linux/arm64)"]
    assert named.count("(linux/amd64)") == named.count("(linux/arm64)")
