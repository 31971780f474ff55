"""Signing without the engine: the order of the supply-chain steps, where secrets go, when a digest is re-signed.

Stand-in ``syft``/``cosign`` scripts on PATH record their arguments and the environment they saw; the real tools
run in the engine tier against the local registry.
"""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dockyard_components.cosign import CosignError, SigningTools, attestation_tag, signature_tag
from dockyard_components.scanner import ScanResult
from dockyard_components.signing import CosignSigningProvider, sign_and_attest

IMAGE = "127.0.0.1:5443/dockyard/app@sha256:" + "ab" * 32
PASSWORD = "sentinel-registry-password"
PRIVATE_KEY = (
    "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nsentinel-key\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"
)
KEY_PASSWORD = "sentinel-key-password"
NOW, LATER = datetime(2026, 12, 5, 12, 0, tzinfo=UTC), datetime(2026, 12, 5, 13, 0, tzinfo=UTC)
PUBLIC_KEY = "-----BEGIN PUBLIC KEY-----\nsentinel-public\n-----END PUBLIC KEY-----\n"


def props(ca_file: str | None = None) -> dict[str, Any]:
    return {
        "image_ref": IMAGE,
        "registry_server": "127.0.0.1:5443",
        "username": "dockyard",
        "password": PASSWORD,
        "ca_file": ca_file,
        "private_key": PRIVATE_KEY,
        "key_password": KEY_PASSWORD,
        "public_key": PUBLIC_KEY,
    }


def calls(record: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def test_sbom_sign_attest_then_verify_both_on_the_digest(tools_on_path: Path, tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nlocal\n-----END CERTIFICATE-----\n")
    with SigningTools.from_props(props(str(ca))) as tools:
        outputs = sign_and_attest(props(), tools)
        workdir = tools.directory
    steps = [c["argv"][0] for c in calls(tools_on_path)]
    assert sorted(steps) == ["attest", "scan", "sign", "verify", "verify-attestation", "verify-attestation"]
    # The signature is made while the SBOM half runs: is there one already, else syft reads the image, the SBOM is
    # attested, and the attestation verified. Each write is verified after it.
    sbom_half = [step for step in steps if step not in ("sign", "verify")]
    assert sbom_half == ["verify-attestation", "scan", "attest", "verify-attestation"]
    assert steps.index("sign") < steps.index("verify")
    assert steps.index("verify") < steps.index("attest"), "signed and verified before anything is attested"
    assert all(any(a in (IMAGE, f"registry:{IMAGE}") for a in c["argv"]) for c in calls(tools_on_path)), "one digest"
    assert outputs["signature_ref"] == signature_tag(IMAGE) == f"127.0.0.1:5443/dockyard/app:sha256-{'ab' * 32}.sig"
    assert outputs["sbom_attestation_ref"] == attestation_tag(IMAGE)
    assert outputs["sbom_packages"] == 2
    assert outputs["sbom_go_modules"] == ["golang.org/x/text"]
    assert not workdir.exists(), "the credentials directory is removed afterwards"


def test_a_digest_already_attested_by_the_key_keeps_its_sbom_and_an_equal_scan_is_not_attested_again(
    tools_on_path: Path,
) -> None:
    """Another stack or checkout built the same digest: its SBOM attestation is reused (no syft run, no new layer on
    the ``.att`` every verification downloads), and a scan saying the same is not attested twice."""
    scan = ScanResult(IMAGE, "127.0.0.1:5443/trivy-db", ("HIGH",), {"Results": [], "CreatedAt": "1"}, NOW, NOW)
    rescanned = ScanResult(IMAGE, "127.0.0.1:5443/trivy-db", ("HIGH",), {"Results": [], "CreatedAt": "2"}, LATER, LATER)
    first = {**props(), "vulnerability_report": json.dumps(scan.predicate())}
    with SigningTools.from_props(first) as tools:
        built = sign_and_attest(first, tools)
    tools_on_path.unlink()
    again = {**props(), "vulnerability_report": json.dumps(rescanned.predicate())}
    with SigningTools.from_props(again) as tools:
        rebuilt = sign_and_attest(again, tools)
    steps = [c["argv"][0] for c in calls(tools_on_path)]
    assert "scan" not in steps, "the SBOM is read from the attestation"
    assert "attest" not in steps, "nothing attested again"
    assert rebuilt["sbom_sha256"] == built["sbom_sha256"]
    assert rebuilt["vulnerability_report"] == again["vulnerability_report"], "this scan's report is the output"

    tools_on_path.unlink()
    findings = {"Results": [{"Vulnerabilities": [{"VulnerabilityID": "CVE-2026-1"}]}]}
    new_record = ScanResult(IMAGE, "127.0.0.1:5443/trivy-db", ("HIGH",), findings, LATER, LATER)
    other = {**props(), "vulnerability_report": json.dumps(new_record.predicate())}
    with SigningTools.from_props(other) as tools:
        sign_and_attest(other, tools)
    attests = [c["argv"] for c in calls(tools_on_path) if c["argv"][0] == "attest"]
    assert [a[a.index("--type") + 1] for a in attests] == ["vuln"], "a scan that says more is attested"


def test_secrets_reach_the_tools_only_through_the_environment(tools_on_path: Path) -> None:
    with SigningTools.from_props(props()) as tools:
        outputs = sign_and_attest(props(), tools)
    recorded = calls(tools_on_path)
    for secret in (PASSWORD, PRIVATE_KEY, KEY_PASSWORD):
        assert not [c for c in recorded if any(secret in a for a in c["argv"])], "a secret on a command line"
        assert secret not in json.dumps(outputs)
    sign = next(c for c in recorded if c["argv"][0] == "sign")
    assert sign["env"]["COSIGN_PRIVATE_KEY"] == PRIVATE_KEY
    assert sign["env"]["COSIGN_PASSWORD"] == KEY_PASSWORD
    assert "env://COSIGN_PRIVATE_KEY" in sign["argv"]
    assert "--tlog-upload=false" in sign["argv"]
    assert sign["auth_mode"] == "0o600"
    assert list(sign["auth"]["auths"]) == ["127.0.0.1:5443"]
    syft = next(c for c in recorded if c["tool"] == "syft")
    assert syft["env"]["SYFT_REGISTRY_AUTH_PASSWORD"] == PASSWORD


def test_a_failed_verification_names_the_step_and_hides_the_key_password(
    tools_on_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIL_ON", "verify")
    with SigningTools.from_props(props()) as tools, pytest.raises(CosignError) as raised:
        sign_and_attest(props(), tools)
    assert str(raised.value).startswith("cosign verify failed (exit 12): Error: no matching signatures: ***")
    assert KEY_PASSWORD not in str(raised.value)


def test_only_a_digest_is_signed(tools_on_path: Path) -> None:
    with SigningTools.from_props(props()) as tools, pytest.raises(CosignError, match="not digest-pinned"):
        tools.sign("127.0.0.1:5443/dockyard/app:1.0.0")
    assert not tools_on_path.exists(), "nothing ran"


def test_a_missing_tool_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("dockyard_components.cosign.TOOLS_DIR", tmp_path / "none")
    with SigningTools.from_props(props()) as tools, pytest.raises(CosignError) as raised:
        tools.sbom(IMAGE)
    assert str(raised.value) == "syft is not installed: run scripts/bootstrap-supply-chain.sh (or put syft on PATH)"


@pytest.mark.parametrize(
    ("change", "resigns"),
    [
        ({}, False),
        ({"password": "rotated"}, False),
        ({"key_password": "rotated"}, False),
        ({"image_ref": IMAGE.replace("ab", "cd")}, True),
        ({"public_key": "another key"}, True),
    ],
)
def test_a_digest_is_signed_again_only_when_the_digest_or_the_key_changes(
    change: dict[str, str], resigns: bool
) -> None:
    old = props()
    diff = CosignSigningProvider().diff("id", old, {**old, **change})
    assert diff.changes is resigns
    assert (diff.replaces or []) == list(change) if resigns else not diff.replaces


def test_the_stand_ins_are_executable(tools_on_path: Path) -> None:
    # Guards the fixture itself: a non-executable stand-in would make every test above fail for the wrong reason.
    for name in ("syft", "cosign"):
        path = tools_on_path.parent / "bin" / name
        assert path.stat().st_mode & stat.S_IXUSR


def test_a_write_a_concurrent_run_dropped_is_written_again_and_a_lasting_miss_fails() -> None:
    """Two runs attesting one digest at once can replace each other's tag: the check after a write catches it."""
    from dockyard_components import signing
    from dockyard_components.cosign import CosignError, ToolUnavailableError

    writes: list[int] = []
    misses = iter([True, False])

    def verify() -> None:
        if next(misses):
            raise CosignError("none of the attestations matched the predicate type: vuln")

    signing._written(lambda: writes.append(1), verify)
    assert len(writes) == 2

    def never() -> None:
        raise CosignError("no matching signatures")

    writes.clear()
    with pytest.raises(CosignError):
        signing._written(lambda: writes.append(1), never)
    assert len(writes) == signing.WRITE_ATTEMPTS

    def unavailable() -> None:
        raise ToolUnavailableError("cosign verify took over 300s")

    writes.clear()
    with pytest.raises(ToolUnavailableError):
        signing._written(lambda: writes.append(1), unavailable)
    assert len(writes) == 1
