"""The trust policy without a registry: whom a stack trusts, what a digest must carry, the cosign arguments a key and
a keyless identity give, what is remembered, and the program stopping before it registers anything.

Keyless verification needs Fulcio's roots and Rekor, which this machine cannot reach: its cosign arguments are what
is proven here (a stand-in cosign records them), never a real keyless signature.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pulumi
import pytest

from dockyard.model.config import ConfigError, SigningConfig, parse_environment
from dockyard.model.trust import (
    Requirement,
    Statement,
    TrustCache,
    TrustPolicy,
    TrustPolicyError,
    Verifier,
    check_images,
    refusals,
)
from dockyard.program.trust_check import TrustRefusal
from dockyard_components.cosign import CosignError, KeylessIdentity, SigningTools, ToolUnavailableError
from tests.stacks import PROJECT, dockyard_document, stack_config
from tests.unit.conftest import RecordingMocks, set_stack_config

REPO = "127.0.0.1:5443/dockyard/app"
IMAGE = f"{REPO}@sha256:{'a' * 64}"
OTHER = f"{REPO}@sha256:{'c' * 64}"
KEY_FILE = "keys/dockyard-local-cosign.pub"
WORKFLOW = "https://github.com/acme/dockyard/.github/workflows/delivery.yml@refs/heads/main"
GITHUB = "https://token.actions.githubusercontent.com"
NO_SIGNATURES = "cosign verify failed (exit 1): Error: no signatures found\nmain.go:74: error during command execution"


def policy(**signing: Any) -> TrustPolicy:
    config = SigningConfig.model_validate(signing or {"publicKeyFile": KEY_FILE}, by_alias=True)
    return TrustPolicy.of("local-prod", config, PROJECT)


class FakeCosign:
    """cosign against a registry that holds, per digest, the signers that signed it and the attestations they made."""

    def __init__(self, signed: dict[str, set[str]], attested: dict[tuple[str, str], list[Statement]] | None = None):
        self.signed, self.attested, self.calls = signed, attested or {}, 0

    @staticmethod
    def signer(identity: KeylessIdentity | None) -> str:
        return "key" if identity is None else str(identity.identity or identity.identity_regexp)

    def verify(self, image_ref: str, *, identity: KeylessIdentity | None = None) -> None:
        self.calls += 1
        if self.signer(identity) not in self.signed.get(image_ref, set()):
            raise CosignError(NO_SIGNATURES)

    def verify_attestation(
        self, image_ref: str, *, predicate_type: str, identity: KeylessIdentity | None = None
    ) -> list[Statement]:
        self.calls += 1
        found = self.attested.get((image_ref, self.signer(identity)), [])
        mine = [s for s in found if s["type"] == predicate_type]
        if not mine:
            raise CosignError(
                f"cosign verify-attestation failed (exit 1): none of the attestations matched {predicate_type}"
            )
        return mine

    @contextmanager
    def opened(self) -> Iterator[Verifier]:
        yield self


SBOM_STATEMENT = {"type": "spdxjson"}


# --- the policy ---------------------------------------------------------------------------------------------------


def test_a_policy_names_a_key_identities_or_both() -> None:
    with pytest.raises(ConfigError, match=r"signing: .*allowed: publicKeyFile, identities, or both"):
        parse_environment("staging", {**dockyard_document("staging"), "signing": {"requireSbom": True}})
    both = {"identity": WORKFLOW, "identityRegexp": "^https://github.com/acme/.+$", "issuer": GITHUB}
    with pytest.raises(ConfigError, match=r"signing.identities\[0\]: .*exactly one of identity or identityRegexp"):
        parse_environment("staging", {**dockyard_document("staging"), "signing": {"identities": [both]}})
    bad = {"identityRegexp": "^(unclosed", "issuer": GITHUB}
    with pytest.raises(ConfigError, match=r"identityRegexp: .*not a regular expression"):
        parse_environment("staging", {**dockyard_document("staging"), "signing": {"identities": [bad]}})


def test_a_building_stack_signs_with_a_key_so_its_policy_names_one() -> None:
    keyless = {"identities": [{"identity": WORKFLOW, "issuer": GITHUB}]}
    with pytest.raises(ConfigError, match=r"signing\.publicKeyFile: missing on a building stack"):
        parse_environment("local", {**dockyard_document("local"), "signing": keyless})


def test_the_committed_real_stacks_trust_the_delivery_workflow_keyless() -> None:
    for stack in ("staging", "prod"):
        env = parse_environment(stack, dockyard_document(stack))
        assert env.signing is not None
        assert env.signing.public_key_file is None
        (identity,) = env.signing.identities
        assert (identity.identity, identity.issuer) == (WORKFLOW, GITHUB)
        assert env.signing.require_sbom
        assert not env.signs_with_key, "CI signs for them; they hold no key pair"
    workflow = (PROJECT / ".github" / "workflows" / "delivery.yml").read_text()
    assert f"IDENTITY: {WORKFLOW}" in workflow, "the identity the delivery workflow signs and checks with"


def test_a_policy_reads_its_key_and_says_whom_it_trusts() -> None:
    both = policy(publicKeyFile=KEY_FILE, identities=[{"identity": WORKFLOW, "issuer": GITHUB}], requireSbom=False)
    assert both.public_key == (PROJECT / KEY_FILE).read_text()
    assert both.trusted == f"{KEY_FILE} or {WORKFLOW} (issuer {GITHUB})"
    assert both.requirements == ()
    with pytest.raises(
        TrustPolicyError, match=r"local-prod.s trust policy names keys/missing\.pub, which does not exist"
    ):
        policy(publicKeyFile="keys/missing.pub")


# --- the cosign arguments -----------------------------------------------------------------------------------------


def argv(record: Path) -> list[list[str]]:
    return [json.loads(line)["argv"] for line in record.read_text().splitlines()]


def test_keyless_identities_become_cosigns_certificate_flags_and_keys_skip_the_log(tools_on_path: Path) -> None:
    exact = KeylessIdentity(GITHUB, identity=WORKFLOW)
    pattern = KeylessIdentity(GITHUB, identity_regexp="^https://github.com/acme/")
    tools = SigningTools("127.0.0.1:5443", None, None, None, public_key="PEM")
    # The digest carries an SBOM attestation (the stand-in's registry; see tests/unit/conftest.py).
    Path(f"{tools_on_path}.attested").write_text(json.dumps([{"predicateType": "https://spdx.dev/Document"}]))
    with tools:
        tools.verify(IMAGE, identity=exact)
        tools.verify_attestation(IMAGE, predicate_type="spdxjson", identity=pattern)
        tools.verify(IMAGE)
        key = str(tools.directory / "cosign.pub")
    assert argv(tools_on_path) == [
        ["verify", "--certificate-identity", WORKFLOW, "--certificate-oidc-issuer", GITHUB, IMAGE],
        [
            "verify-attestation",
            "--certificate-identity-regexp",
            "^https://github.com/acme/",
            "--certificate-oidc-issuer",
            GITHUB,
            "--type",
            "spdxjson",
            IMAGE,
        ],
        # Offline, a key pair of our own has no transparency log entry to check; a keyless signature always does.
        ["verify", "--key", key, "--insecure-ignore-tlog", IMAGE],
    ]
    with pytest.raises(ValueError, match="exactly one of identity or identity_regexp"):
        KeylessIdentity(GITHUB)


# --- the decision ---------------------------------------------------------------------------------------------------


def test_an_unsigned_digest_is_refused_in_one_line_naming_the_image_and_the_signers() -> None:
    (problem,) = refusals(policy(), IMAGE, FakeCosign({}))
    assert problem == (
        f"{IMAGE} carries no signature by {KEY_FILE} that local-prod trusts (main.go:74: error during command execution)"
    )
    assert "\n" not in problem


def test_a_cosign_that_cannot_answer_is_a_refusal_that_says_so_never_a_pass() -> None:
    class Missing(FakeCosign):
        def verify(self, image_ref: str, *, identity: KeylessIdentity | None = None) -> None:
            raise ToolUnavailableError("cosign is not installed: run scripts/bootstrap-supply-chain.sh")

    (problem,) = refusals(policy(), IMAGE, Missing({IMAGE: {"key"}}))
    assert problem == (
        f"cannot check {IMAGE} against local-prod's trust policy: cosign is not installed: run "
        "scripts/bootstrap-supply-chain.sh"
    )


def test_a_signature_by_any_trusted_signer_is_enough_and_the_sbom_may_be_by_another() -> None:
    trusting = policy(publicKeyFile=KEY_FILE, identities=[{"identity": WORKFLOW, "issuer": GITHUB}])
    cosign = FakeCosign({IMAGE: {WORKFLOW}}, {(IMAGE, "key"): [SBOM_STATEMENT]})
    assert refusals(trusting, IMAGE, cosign) == []


def test_a_signed_digest_without_its_sbom_attestation_is_refused_unless_the_policy_waives_it() -> None:
    cosign = FakeCosign({IMAGE: {"key"}})
    (problem,) = refusals(policy(), IMAGE, cosign)
    assert problem.startswith(f"{IMAGE} has no SBOM attestation signed by {KEY_FILE} (")
    assert refusals(policy(publicKeyFile=KEY_FILE, requireSbom=False), IMAGE, cosign) == []


def test_a_signature_by_an_untrusted_signer_is_refused() -> None:
    keyless = policy(identities=[{"identity": WORKFLOW, "issuer": GITHUB}])
    (problem,) = refusals(keyless, IMAGE, FakeCosign({IMAGE: {"key"}}, {(IMAGE, "key"): [SBOM_STATEMENT]}))
    assert f"carries no signature by {WORKFLOW} (issuer {GITHUB})" in problem


def test_a_judged_requirement_plugs_in_beside_the_sbom() -> None:
    """Where a passing scan will go: an attestation whose statements are judged, remembered for a while only."""
    scan = Requirement(
        "vulnerability scan",
        "vuln",
        accept=lambda statements: None if statements[-1]["passed"] else "its latest scan found HIGH findings",
        max_age=timedelta(hours=24),
    )
    strict = TrustPolicy("local-prod", policy().signers, (*policy().requirements, scan))
    failing = FakeCosign({IMAGE: {"key"}}, {(IMAGE, "key"): [SBOM_STATEMENT, {"type": "vuln", "passed": False}]})
    assert refusals(strict, IMAGE, failing) == [f"{IMAGE}: its latest scan found HIGH findings"]
    passing = FakeCosign({IMAGE: {"key"}}, {(IMAGE, "key"): [SBOM_STATEMENT, {"type": "vuln", "passed": True}]})
    assert refusals(strict, IMAGE, passing) == []
    assert strict.max_age == timedelta(hours=24)
    assert strict.fingerprint(IMAGE) != policy().fingerprint(IMAGE), "a new requirement asks again"


# --- what is remembered ---------------------------------------------------------------------------------------------


def test_an_acceptance_is_remembered_per_digest_and_policy_and_a_refusal_never(tmp_path: Path) -> None:
    cache = TrustCache(tmp_path)
    cosign = FakeCosign({IMAGE: {"key"}}, {(IMAGE, "key"): [SBOM_STATEMENT]})
    images = {"blue": IMAGE, "green": OTHER}
    first = check_images(policy(), images, cosign.opened, cache)
    assert list(first) == ["green"]
    assert first["green"][0].startswith(f"{OTHER} carries no signature")
    asked = cosign.calls
    again = check_images(policy(), images, cosign.opened, cache)
    assert again == first
    assert cosign.calls == asked + 1, "only the refused digest is asked again"
    cosign.signed[OTHER] = {"key"}
    cosign.attested[(OTHER, "key")] = [SBOM_STATEMENT]
    assert check_images(policy(), images, cosign.opened, cache) == {}, "signed since: accepted"
    asked = cosign.calls
    assert check_images(policy(), images, cosign.opened, cache) == {}
    assert cosign.calls == asked, "an unchanged stack asks cosign nothing"
    waived = policy(publicKeyFile=KEY_FILE, requireSbom=False)
    assert not cache.accepted(waived, IMAGE), "another policy is asked again"


def test_a_remembered_acceptance_with_a_max_age_expires(tmp_path: Path) -> None:
    cache = TrustCache(tmp_path)
    scan = Requirement("vulnerability scan", "vuln", max_age=timedelta(hours=1))
    judged = TrustPolicy("local-prod", policy().signers, (scan,))
    then = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    cache.remember(judged, IMAGE, now=then)
    assert cache.accepted(judged, IMAGE, now=then + timedelta(minutes=59))
    assert not cache.accepted(judged, IMAGE, now=then + timedelta(minutes=61))


def test_the_cache_is_keyed_by_the_keys_content_not_its_file_name(tmp_path: Path) -> None:
    original = policy()
    rotated = TrustPolicy(
        "local-prod", (type(original.signers[0])(KEY_FILE, public_key="another PEM"),), original.requirements
    )
    TrustCache(tmp_path).remember(original, IMAGE)
    assert TrustCache(tmp_path).accepted(original, IMAGE)
    assert not TrustCache(tmp_path).accepted(rotated, IMAGE), "a rotated key asks again"


# --- the program --------------------------------------------------------------------------------------------------


def run_program(stack: str, extra: dict[str, Any]) -> None:
    signing = {"dockyard:cosignPrivateKey": "sentinel-key", "dockyard:cosignPassword": "sentinel-password"}
    pulumi.runtime.settings._set_stack(stack)
    set_stack_config({**stack_config(stack), **signing, **extra}, list(signing))
    runpy.run_path(str(PROJECT / "__main__.py"), run_name="__main__")


def released(image: str) -> dict[str, Any]:
    """local-prod's config with ``image`` promoted onto its idle color (green), as a hand edit could write it."""
    strategy = {"type": "blueGreen", "activeColor": "blue", "greenImage": image}
    return {"dockyard:kubernetes": {**dockyard_document("local-prod")["kubernetes"], "strategy": strategy}}


@pulumi.runtime.test
def _program(mocks: RecordingMocks, extra: dict[str, Any]) -> None:
    run_program("local-prod", extra)


def test_the_program_refuses_an_unsigned_digest_before_it_registers_anything(
    mocks: RecordingMocks, workdir: Path, tools_on_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIL_ON", "verify")  # the stand-in cosign finds no signature
    with pytest.raises(TrustRefusal) as refused:
        _program(mocks, released(IMAGE))
    (line,) = str(refused.value).splitlines()
    assert line.startswith(
        f"local-prod's trust policy refuses the green track's image, nothing is deployed: {IMAGE} carries no "
        f"signature by {KEY_FILE} that local-prod trusts ("
    )
    assert mocks.resources == [], "nothing registered: no provider, no Deployment"
    (verify,) = argv(tools_on_path)
    assert verify[0] == "verify"
    assert verify[-1] == IMAGE
    entry = json.loads(tools_on_path.read_text().splitlines()[0])
    assert entry["auth"]["auths"]["127.0.0.1:5443"], "cosign logged in with the stack's registry credentials"


def test_the_program_deploys_a_remembered_digest_without_asking_cosign(
    mocks: RecordingMocks, workdir: Path, tools_on_path: Path
) -> None:
    env = parse_environment(
        "local-prod", {**dockyard_document("local-prod"), "kubernetes": released(IMAGE)["dockyard:kubernetes"]}
    )
    assert env.signing is not None
    TrustCache().remember(TrustPolicy.of("local-prod", env.signing, PROJECT), IMAGE)
    _program(mocks, released(IMAGE))
    assert not tools_on_path.exists(), "cosign never ran"
    (deployment,) = mocks.of_type("kubernetes:apps/v1:Deployment")
    assert deployment.inputs["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE


def test_the_check_asks_the_strategy_which_images_run() -> None:
    def running(document: dict[str, Any]) -> dict[str, str]:
        return parse_environment("x", document).running_images

    staging = dockyard_document("local-staging")
    assert running(staging) == {}, "no release yet"
    canary = {**staging["kubernetes"]["strategy"], "canaryImage": OTHER, "weight": 10}
    both = {**staging, "image": {"ref": IMAGE}, "kubernetes": {**staging["kubernetes"], "strategy": canary}}
    assert running(both) == {"stable": IMAGE, "canary": OTHER}
    prod = dockyard_document("local-prod")
    colors = {**prod["kubernetes"]["strategy"], "blueImage": IMAGE, "greenImage": OTHER}
    assert running({**prod, "kubernetes": {**prod["kubernetes"], "strategy": colors}}) == {
        "blue": IMAGE,
        "green": OTHER,
    }
    assert running(dockyard_document("local")) == {}, "a building stack's release is checked by its signing step"
