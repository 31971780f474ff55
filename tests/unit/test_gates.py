"""Promotion gates on plain facts: every refusal through ``gates.evaluate``, no engine, registry or clock."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dockyard.model.config import EnvironmentConfig, parse_environment
from dockyard.releases import gates
from dockyard.releases.gates import PromotionFacts, RegistryAnswer
from dockyard.releases.ledger import Check, Verification
from tests.stacks import dockyard_document

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
IMAGE = "ghcr.io/acme/dockyard-app@sha256:" + "5" * 64
DIGEST = IMAGE.split("@")[1]


def environment(stack: str, **changes: Any) -> EnvironmentConfig:
    document = copy.deepcopy(dockyard_document(stack))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = document
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return parse_environment(stack, document)


def verification(passed: bool) -> Verification:
    checks = (Check("health", passed, "GET /health answered " + ("200" if passed else "503")),)
    return Verification("staging", IMAGE, passed, NOW - timedelta(hours=3), "ci@runner", "cluster", "verify", checks)


def facts(**changes: Any) -> PromotionFacts:
    """staging → prod, everything in order: soaked, verified, in the registry, outside the freeze."""
    good = PromotionFacts(
        source="staging",
        target="prod",
        target_env=environment("prod"),
        now=NOW,
        image=IMAGE,
        last_result="succeeded",
        last_deployed=NOW - timedelta(hours=3),
        registry=RegistryAnswer(True),
        verification=verification(True),
    )
    return dataclasses.replace(good, **changes)


def test_everything_in_order_passes() -> None:
    assert gates.evaluate(facts()) == []


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"source": "dev"}, "prod accepts releases from staging only, not from dev"),
        (
            {"target_env": environment("local")},
            "prod accepts no promotions (dockyard:promotion.upstream is not set)",
        ),
        (
            {"now": datetime(2026, 12, 24, tzinfo=UTC)},
            "prod is frozen from 2026-12-23T00:00:00+00:00 to 2027-01-04T00:00:00+00:00 (year-end change freeze)",
        ),
        ({"last_result": "failed"}, "staging's last update failed; promote only what deployed successfully"),
        ({"last_result": None, "last_deployed": None}, "staging has never been deployed"),
        ({"last_deployed": NOW - timedelta(minutes=30)}, "staging has soaked 30 min of 120; wait 90 min"),
        (
            {"image": None},
            "staging serves no release: it has no image_ref output (promote one into it, or run pulumi up --stack "
            "staging)",
        ),
        ({"image": "ghcr.io/a/b:1.0"}, "staging's image_ref ghcr.io/a/b:1.0 is not digest-pinned"),
        ({"registry": RegistryAnswer(False)}, f"{IMAGE} does not exist in prod's registry ghcr.io"),
        (
            {"registry": RegistryAnswer(None, "ghcr.io refused the credentials of 'acme-ci'")},
            "cannot check prod's registry: ghcr.io refused the credentials of 'acme-ci'",
        ),
        (
            {"verification": None},
            f"prod (tier prod) takes verified releases only: staging's {DIGEST} has never been verified with a "
            "verification attestation signed by a key or identity it trusts (dockyard verify --stack staging)",
        ),
        (
            {"verification": None, "verification_problem": "reading the verification attestations: refused"},
            f"prod (tier prod) takes verified releases only: cannot read staging's verification of {DIGEST}: "
            "reading the verification attestations: refused",
        ),
        (
            {"verification": verification(False)},
            f"prod (tier prod) takes verified releases only: staging's {DIGEST} failed verification at "
            "2026-12-01T09:00:00+00:00 (health: GET /health answered 503)",
        ),
        (
            {"signature": [f"{IMAGE} carries no signature by keys/prod.pub that prod trusts (no signatures found)"]},
            f"prod's trust policy refuses it: {IMAGE} carries no signature by keys/prod.pub that prod trusts "
            "(no signatures found)",
        ),
    ],
    ids=[
        "order",
        "no-upstream",
        "freeze",
        "failed-source",
        "never-deployed",
        "soak",
        "no-image",
        "unpinned",
        "not-in-registry",
        "registry-unreachable",
        "unverified",
        "unreadable-verification",
        "failed-verification",
        "untrusted-signature",
    ],
)
def test_each_refusal(changes: dict[str, Any], problem: str) -> None:
    assert gates.evaluate(facts(**changes)) == [problem]


def test_every_refusal_is_reported_at_once() -> None:
    problems = gates.evaluate(facts(source="dev", last_result="failed", registry=RegistryAnswer(False)))
    assert [p.split(" ")[0] for p in problems] == ["prod", "dev's", IMAGE]


def test_the_freeze_end_is_exclusive_and_no_soak_needs_no_deployment() -> None:
    assert gates.evaluate(facts(now=datetime(2027, 1, 4, tzinfo=UTC))) == []
    unsoaked = environment("prod", promotion__soakMinutes=0)
    assert gates.evaluate(facts(target_env=unsoaked, last_deployed=None)) == []


def test_soak_accepts_the_naive_utc_times_the_engine_reports() -> None:
    naive = (NOW - timedelta(minutes=30)).replace(tzinfo=None)
    assert gates.evaluate(facts(last_deployed=naive)) == ["staging has soaked 30 min of 120; wait 90 min"]


def test_verification_is_required_by_tier_unless_config_says_otherwise() -> None:
    dev = environment("dev", promotion__upstream="staging")
    assert gates.evaluate(facts(target_env=dev, verification=None)) == []
    relaxed = environment("prod", promotion__requireVerification=False)
    assert gates.evaluate(facts(target_env=relaxed, verification=None)) == []
    qa = environment("staging", tier="qa", promotion__upstream="staging")
    assert gates.evaluate(facts(target="qa", target_env=qa, verification=None)) == [
        f"qa (tier qa) takes verified releases only: staging's {DIGEST} has never been verified with a "
        "verification attestation signed by a key or identity it trusts (dockyard verify --stack staging)"
    ]


def test_a_canary_in_progress_on_the_target_is_finished_first() -> None:
    running = environment(
        "staging",
        promotion__upstream="dev",
        kubernetes__strategy={"type": "canary", "weight": 25, "canaryImage": IMAGE},
    )
    (problem,) = gates.evaluate(facts(source="dev", target="staging", target_env=running))
    assert problem.startswith(f"staging runs a canary of {IMAGE} at 25%: finish it (dockyard canary advance")
    assert "dockyard canary abort --stack staging" in problem


def test_an_image_without_a_digest_is_not_judged_by_the_later_gates() -> None:
    assert gates.evaluate(facts(image="ghcr.io/a/b:1.0", verification=None, registry=None)) == [
        "staging's image_ref ghcr.io/a/b:1.0 is not digest-pinned"
    ]


def test_a_trusted_or_unasked_signature_refuses_nothing() -> None:
    assert gates.evaluate(facts(signature=[])) == []
    assert gates.evaluate(facts(signature=None)) == []


def test_a_target_with_a_trust_policy_asks_for_a_verification_signed_by_a_key_it_trusts() -> None:
    trusting = environment("prod", signing={"publicKeyFile": "keys/dockyard-local-cosign.pub"})
    assert gates.verified(facts(target_env=trusting, verification=None)) == [
        f"prod (tier prod) takes verified releases only: staging's {DIGEST} has never been verified with a "
        "verification attestation signed by a key or identity it trusts (dockyard verify --stack staging)"
    ]


def test_a_rollback_is_judged_by_the_same_registry_and_trust_gates() -> None:
    promotion = facts(registry=RegistryAnswer(False), signature=["no signature by keys/prod.pub"])
    rollback = gates.RollbackFacts(
        "prod", environment("prod"), IMAGE, RegistryAnswer(False), ["no signature by keys/prod.pub"]
    )
    refused = gates.evaluate(rollback)
    assert refused == [
        f"{IMAGE} does not exist in prod's registry ghcr.io",
        "prod's trust policy refuses it: no signature by keys/prod.pub",
    ]
    assert all(problem in gates.evaluate(promotion) for problem in refused), "the same words as a promotion's"
    assert gates.evaluate(dataclasses.replace(rollback, registry=RegistryAnswer(True), signature=[])) == []


def test_a_stale_stack_file_is_refused_with_one_line() -> None:
    """A checkout from before a promotion names an older release than the stack serves: moving from it would put
    the old stable track or the other color back."""
    old = "127.0.0.1:5443/dockyard/app@sha256:" + "0" * 64
    served = "127.0.0.1:5443/dockyard/app@sha256:" + "d" * 64
    (line,) = gates.stale_file("local-prod", old, served)
    assert line.startswith(f"Pulumi.local-prod.yaml serves {old} but local-prod serves {served}")
    assert "stale" in line
    # A checkout from before the first release would take the served release away.
    (line,) = gates.stale_file("local-prod", None, served)
    assert line.startswith(f"Pulumi.local-prod.yaml serves no release but local-prod serves {served}")


@pytest.mark.parametrize(
    ("file_serves", "stack_serves", "builds"),
    [
        ("r@sha256:" + "d" * 64, "r@sha256:" + "d" * 64, False),  # the file is what the stack serves
        ("r@sha256:" + "d" * 64, None, False),  # never deployed: nothing to be stale against
        (None, None, False),  # no release in the file, none served
        (None, "r@sha256:" + "d" * 64, True),  # a building stack: its file names no release
    ],
)
def test_a_current_or_undeployed_stack_file_passes(
    file_serves: str | None, stack_serves: str | None, builds: bool
) -> None:
    assert gates.stale_file("local-prod", file_serves, stack_serves, builds=builds) == []


def test_a_release_that_fails_the_targets_scan_now_is_refused_in_one_line() -> None:
    finding = f"{IMAGE} is vulnerable: CVE-2025-30204 (HIGH) in github.com/golang-jwt/jwt/v4 v4.5.1, fixed in 4.5.2"
    assert gates.evaluate(facts(vulnerabilities=[finding])) == [
        f"prod requires a passing vulnerability scan: {finding}"
    ]
    unavailable = "scanner unavailable: trivy failed on it (exit 1): FATAL no DB"
    assert gates.evaluate(facts(vulnerabilities=[unavailable])) == [
        f"prod requires a passing vulnerability scan: {unavailable}"
    ]


def test_a_clean_or_unasked_scan_refuses_nothing() -> None:
    assert gates.evaluate(facts(vulnerabilities=[])) == []
    assert gates.evaluate(facts(vulnerabilities=None)) == []
