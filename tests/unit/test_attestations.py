"""Verification outcomes as signed attestations in the registry, without a registry: what is attested, what a target
reads back (only its trusted key's statements about this digest, this stack and this backend), and where promotion
looks (the registry when the target has a trust policy, the ledger otherwise)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dockyard.model.config import parse_environment
from dockyard.model.stack import StackView
from dockyard.releases import attestations
from dockyard.releases.attestations import AttestationError, attested_verifications, publish
from dockyard.releases.ledger import Check, Ledger, Verification
from dockyard.releases.moves import Releases
from dockyard.releases.project import Project
from dockyard_components.cosign import VERIFICATION_PREDICATE, CosignError, KeylessIdentity, SigningTools
from tests.stacks import PROJECT, dockyard_document

REPO = "127.0.0.1:5443/dockyard/app"
IMAGE = f"{REPO}@sha256:{'a' * 64}"
OTHER_IMAGE = f"{REPO}@sha256:{'c' * 64}"
BACKEND = "file:///srv/pulumi-state"
AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def env(stack: str, *, signing: bool = True) -> StackView:
    document = copy.deepcopy(dockyard_document(stack))
    if not signing:
        document.pop("signing", None)
    return StackView(stack, parse_environment(stack, document))


def record(stack: str = "local", image: str = IMAGE, passed: bool = True, minutes: int = 0) -> Verification:
    checks = (Check("health", passed, "GET /health answered " + ("200" if passed else "503")),)
    return Verification(stack, image, passed, AT + timedelta(minutes=minutes), "ci@runner", "cluster", "verify", checks)


def statement(verification: Verification, *, backend: str = BACKEND, subject: str | None = None) -> dict[str, Any]:
    digest = (subject or verification.image).split("@")[1].split(":")
    return {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": VERIFICATION_PREDICATE,
        "subject": [{"name": REPO, "digest": {digest[0]: digest[1]}}],
        "predicate": attestations.predicate(verification, backend),
    }


@pytest.fixture
def registry_statements(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What cosign verify-attestation returns (or raises) for the digest, in place of the registry."""
    answers: list[Any] = []

    def verify_attestation(
        self: SigningTools, image_ref: str, *, predicate_type: str, identity: KeylessIdentity | None = None
    ) -> list[dict[str, Any]]:
        assert predicate_type == VERIFICATION_PREDICATE
        assert identity is None, "local-staging trusts a key, no keyless identity"
        assert self.public_key == (PROJECT / "keys" / "dockyard-local-cosign.pub").read_text(), "the target's key"
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return list(answer)

    monkeypatch.setattr(SigningTools, "verify_attestation", verify_attestation)
    return answers


def read(image: str = IMAGE) -> list[Verification]:
    return attested_verifications(PROJECT, BACKEND, "local", env("local-staging"), image)


def test_a_target_reads_back_its_upstreams_verification_of_the_digest(registry_statements: list[Any]) -> None:
    earlier, later = record(minutes=0), record(passed=False, minutes=5)
    registry_statements.append([statement(later), statement(earlier)])
    assert read() == [earlier, later], "oldest first, every outcome (a later failure outweighs an earlier pass)"


def test_statements_about_another_stack_digest_or_backend_are_not_the_upstreams(
    registry_statements: list[Any],
) -> None:
    registry_statements.append(
        [
            statement(record(stack="local-staging")),  # the target's own verification, not its upstream's
            statement(record(), backend="file:///another/team"),  # another backend's `local`
            statement(record(), subject=OTHER_IMAGE),  # signed about another digest
            statement(record(image=OTHER_IMAGE)),  # predicate about another digest
        ]
    )
    assert read() == []


def test_no_attestation_is_an_answer_and_a_registry_fault_is_an_error(registry_statements: list[Any]) -> None:
    registry_statements.append(
        CosignError(
            "cosign verify-attestation failed (exit 1): none of the attestations matched the predicate type: "
            f"{VERIFICATION_PREDICATE}, found: https://spdx.dev/Document"
        )
    )
    assert read() == []
    registry_statements.append(CosignError("cosign verify-attestation failed (exit 1): connection refused"))
    with pytest.raises(AttestationError, match=r"reading the verification attestations of .*connection refused"):
        read()


@dataclass
class SigningProjectFake:
    secrets: dict[str, str] = field(default_factory=dict)
    backend: str = BACKEND
    directory: Path = PROJECT

    def secret_config(self, stack: str, key: str, /) -> str | None:
        return self.secrets.get(key)


@pytest.fixture
def attested(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any], str, str | None, str | None]]:
    """What cosign attest was asked to push, in place of the registry; no settling wait."""
    pushed: list[tuple[str, dict[str, Any], str, str | None, str | None]] = []

    def attest(self: SigningTools, image_ref: str, predicate: dict[str, Any], *, predicate_type: str) -> None:
        pushed.append((image_ref, predicate, predicate_type, self.private_key, self.key_password))

    monkeypatch.setattr(SigningTools, "attest", attest)
    monkeypatch.setattr(attestations, "SETTLE_SECONDS", 0.0)
    return pushed


KEYS = {"dockyard:cosignPrivateKey": "PRIVATE-KEY", "dockyard:cosignPassword": "key-password"}


def test_publishing_attests_the_record_and_its_backend_with_the_stacks_key(
    attested: list[Any], registry_statements: list[Any]
) -> None:
    registry_statements.append([statement(record(stack="local"))])
    where = publish(SigningProjectFake(KEYS), env("local"), record())
    assert where == f"{REPO}:sha256-{'a' * 64}.att"
    assert attested == [
        (IMAGE, {**record().to_json(), "backend": BACKEND}, VERIFICATION_PREDICATE, "PRIVATE-KEY", "key-password")
    ]
    assert registry_statements == [], "read back once"


def test_a_verification_another_writer_pushed_over_is_attested_again(
    attested: list[Any], registry_statements: list[Any]
) -> None:
    another_teams = statement(record(), backend="file:///another/team")
    registry_statements.extend([[another_teams], [another_teams, statement(record())]])
    publish(SigningProjectFake(KEYS), env("local"), record())
    assert len(attested) == 2, "lost to a concurrent push, so attested again"
    assert registry_statements == []


def test_a_verification_never_read_back_is_an_error_naming_both_causes(
    attested: list[Any], registry_statements: list[Any]
) -> None:
    registry_statements.extend([[]] * attestations.PUBLISH_TRIES)
    with pytest.raises(AttestationError, match=r"never read back.*pushed over it.*signing.publicKeyFile") as raised:
        publish(SigningProjectFake(KEYS), env("local"), record())
    assert len(attested) == attestations.PUBLISH_TRIES
    assert "PRIVATE-KEY" not in str(raised.value)
    assert "key-password" not in str(raised.value)


def test_publishing_without_the_private_key_names_the_key_to_set() -> None:
    with pytest.raises(AttestationError, match=r"local-prod: dockyard:cosignPrivateKey is not set.*--stack local-prod"):
        publish(SigningProjectFake(), env("local-prod"), record("local-prod"))


def test_the_backend_identity_drops_credentials_and_query(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://user:secret@state-bucket/dockyard?region=eu-west-1")
    assert Project(PROJECT).backend == "s3://state-bucket/dockyard"
    monkeypatch.setenv("PULUMI_BACKEND_URL", "file:///root/.cache/dockyard/state")
    assert Project(PROJECT).backend == "file:///root/.cache/dockyard/state"


@dataclass
class PromotionProjectFake:
    directory: Path
    backend: str = BACKEND

    def ledger(self) -> Ledger:
        return Ledger(self.directory, "dockyard")


def test_promotion_reads_the_registry_for_a_trusting_target_and_the_ledger_otherwise(tmp_path: Path) -> None:
    project = PromotionProjectFake(tmp_path)
    in_ledger, in_registry = record(minutes=1), record(minutes=2)
    project.ledger().append(in_ledger)
    asked: list[tuple[Path, str, str, str]] = []

    def attested(directory: Path, backend: str, source: str, target: StackView, image: str) -> list[Any]:
        asked.append((directory, backend, source, image))
        return [in_registry]

    releases = Releases(project, attested=attested)  # type: ignore[arg-type]  # the two members Releases reads here
    assert releases.verifications("local", env("local-staging"), IMAGE) == [in_registry]
    assert asked == [(tmp_path, BACKEND, "local", IMAGE)]
    assert releases.verifications("local", env("local-staging", signing=False), IMAGE) == [in_ledger]
