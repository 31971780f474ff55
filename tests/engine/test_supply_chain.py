"""The chain of custody with the real engine, registry, trivy, syft and cosign: what `up --stack local` builds is
scanned, then signed; a vulnerable build is signed and deployed nowhere; a promotion re-scans against the DB as it is.

A second key pair is made here with the real cosign to prove that verification is by key, not by presence. The
vulnerability DB is the one scripts/local-vuln-db.sh builds from scripts/vuln-db; a test that adds a record
publishes its own copy under a repository of its own, so the shared DB never changes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dockyard.admission.namespace import NamespacePolicy
from dockyard.admission.registration import BREAK_GLASS_LABEL, webhook_configuration
from dockyard.model.stack import StackView
from dockyard.model.trust import TrustPolicy
from dockyard.releases.attestations import attested_verifications
from dockyard.releases.ledger import Check, Verification
from dockyard_components.cosign import VERIFICATION_PREDICATE, CosignError, SigningTools, tool
from dockyard_components.k8s_specs import ADMISSION_ENFORCED, ADMISSION_LABEL, TIER_LABEL, TRUST_POLICY_ANNOTATION
from tests.engine.admission_objects import apply, deployment, pod
from tests.engine.harness import (
    SESSION,
    Result,
    Workspace,
    attest_verification,
    deployment_images,
    dockyard,
    image_repository,
    kubectl,
    live,
    namespace_of,
    pull_secret_of,
    set_stack_config,
    signing_tools,
)
from tests.stacks import PROJECT

pytestmark = pytest.mark.engine

PUBLIC_KEY = PROJECT / "keys" / "dockyard-local-cosign.pub"


def tools(workspace: Workspace, public_key: Path = PUBLIC_KEY) -> SigningTools:
    return signing_tools(workspace, public_key=public_key.read_text())


def another_key_pair(directory: Path) -> None:
    """cosign.key (password "another") and cosign.pub in ``directory``, made by the real cosign."""
    subprocess.run(
        [tool("cosign"), "generate-key-pair"],
        cwd=directory,
        env={**os.environ, "COSIGN_PASSWORD": "another"},
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def signed(local_workspace: Workspace) -> Workspace:
    local_workspace.init("local")
    local_workspace.pulumi("up", "--stack", "local", "--yes", timeout=2400)
    return local_workspace


def test_up_signs_and_attests_the_digest_it_deploys(signed: Workspace) -> None:
    outputs = signed.outputs("local")
    image = outputs["image_ref"]
    repository, digest = image.split("@")
    assert outputs["signature_ref"] == f"{repository}:{digest.replace(':', '-')}.sig"
    assert outputs["sbom_attestation_ref"] == f"{repository}:{digest.replace(':', '-')}.att"
    (deployment,) = live(signed, "local", "deployments").values()
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image, "the signed digest is served"
    with tools(signed) as cosign:
        cosign.verify(image)
        statements = cosign.verify_attestation(image, predicate_type="spdxjson")
    # Builds are reproducible: a digest built (and attested) before carries each earlier attestation too.
    assert statements, "no SBOM attestation verifies"
    statement = statements[-1]
    packages = statement["predicate"]["packages"]
    locators = {ref["referenceLocator"] for p in packages for ref in p.get("externalRefs") or []}
    assert any(loc.startswith("pkg:golang/example.com/dockyard-app") for loc in locators), "the app's Go module"
    assert any(c.startswith("Tool: syft-") for c in statement["predicate"]["creationInfo"]["creators"])


def test_the_clean_build_carries_a_signed_scan_attestation(signed: Workspace) -> None:
    outputs = signed.outputs("local")
    assert outputs["vulnerability_attested"] is True
    with tools(signed) as cosign:
        statements = cosign.verify_attestation(outputs["image_ref"], predicate_type="vuln")
    assert statements, "no vulnerability attestation verifies with local's key"
    predicate = statements[-1]["predicate"]
    assert predicate["scanner"]["uri"] == "pkg:github/aquasecurity/trivy@0.74.0"
    assert predicate["scanner"]["db"]["uri"] == f"{signed.env['DOCKYARD_REGISTRY']}/dockyard/trivy-db:2"
    result = predicate["scanner"]["result"]
    assert result["ArtifactName"] == outputs["image_ref"]
    vulnerabilities = [v for r in result.get("Results") or [] for v in r.get("Vulnerabilities") or []]
    assert vulnerabilities == [], "the clean build (jwt/v4 v4.5.2) has no HIGH or CRITICAL finding"
    assert predicate["invocation"]["parameters"]["severities"] == ["HIGH", "CRITICAL"]


def failed_up_changes_nothing(workspace: Workspace, change: Callable[[], None]) -> tuple[str, dict[str, Any]]:
    """Apply ``change`` to the workspace's files, run a failing ``up --stack local``, restore the files; return the
    output and local's deployments before (asserted unchanged after)."""
    stack_file = workspace.stack_file("local")
    original = stack_file.read_bytes()
    before = live(workspace, "local", "deployments")
    change()
    try:
        failed = workspace.pulumi("up", "--stack", "local", "--yes", check=False, timeout=2400)
    finally:
        stack_file.write_bytes(original)
    assert failed.returncode != 0, failed.output
    after = live(workspace, "local", "deployments")
    assert {n: d["spec"] for n, d in after.items()} == {n: d["spec"] for n, d in before.items()}, "nothing deployed"
    return failed.output, before


def pushed_digest(workspace: Workspace) -> str:
    """The digest local's build pushed last (from the state: a failed update keeps what it created)."""
    build = next(
        r
        for r in workspace.export("local")["deployment"]["resources"]
        if r["type"] == "pulumi-python:dynamic:Resource" and r["urn"].endswith("image-podman-build")
    )
    return f"{image_repository(workspace)}@{build['outputs']['digest']}"


def test_a_vulnerable_build_fails_before_signing_and_deploys_nothing(signed: Workspace) -> None:
    clean = signed.outputs("local")["image_ref"]
    output, _ = failed_up_changes_nothing(
        signed, lambda: set_stack_config(signed, "local", ["image", "build", "buildArgs", "JWT_VERSION"], "v4.5.1")
    )
    vulnerable = pushed_digest(signed)
    assert vulnerable != clean, "the vulnerable build was pushed (scanned by digest)"
    line = next(line for line in output.splitlines() if "is vulnerable:" in line)
    assert f"{vulnerable} is vulnerable: CVE-2025-30204 (HIGH) in github.com/golang-jwt/jwt/v4 v4.5.1, " in line
    assert "fixed in 4.5.2" in line
    with tools(signed) as cosign, pytest.raises(CosignError, match="cosign verify failed"):
        cosign.verify(vulnerable)  # nothing signed
    assert vulnerable not in deployment_images(signed, "local")
    signed.pulumi("up", "--stack", "local", "--yes", timeout=2400)
    assert signed.outputs("local")["image_ref"] == clean, "the clean build again (reproducible), signed as before"


def test_no_vulnerability_db_is_scanner_unavailable_never_a_pass(signed: Workspace) -> None:
    missing = f"{signed.env['DOCKYARD_REGISTRY']}/dockyard-test/no-such-db-{SESSION}:2"
    output, _ = failed_up_changes_nothing(
        signed, lambda: set_stack_config(signed, "local", ["signing", "scan", "dbRepository"], missing)
    )
    assert "scanner unavailable: trivy failed on" in output
    assert "is vulnerable" not in output
    signed.pulumi("up", "--stack", "local", "--yes", timeout=2400)


def test_another_key_does_not_verify_the_signature(signed: Workspace, tmp_path: Path) -> None:
    another_key_pair(tmp_path)
    with tools(signed, tmp_path / "cosign.pub") as cosign, pytest.raises(CosignError, match="cosign verify failed"):
        cosign.verify(signed.outputs("local")["image_ref"])


def test_second_up_signs_nothing_again(signed: Workspace) -> None:
    signed.pulumi("up", "--stack", "local", "--yes", "--expect-no-changes")


def test_a_wrong_key_password_fails_the_update_before_anything_is_deployed(signed: Workspace) -> None:
    wrong = "sentinel-wrong-key-password"
    before = live(signed, "local", "deployments")
    main_go, stack_file = signed.directory / "app" / "main.go", signed.stack_file("local")
    originals = main_go.read_bytes(), stack_file.read_bytes()
    main_go.write_text(originals[0].decode() + "\n// a release signed with a wrong password\n")
    signed.pulumi("config", "set", "--secret", "dockyard:cosignPassword", "--stack", "local", stdin=wrong)
    try:
        failed = signed.pulumi("up", "--stack", "local", "--yes", check=False, timeout=2400)
    finally:
        main_go.write_bytes(originals[0])
        stack_file.write_bytes(originals[1])
    assert failed.returncode != 0
    assert "cosign sign failed" in failed.output
    assert wrong not in failed.output
    after = live(signed, "local", "deployments")
    assert {n: d["spec"] for n, d in after.items()} == {n: d["spec"] for n, d in before.items()}, "nothing deployed"
    signed.pulumi("up", "--stack", "local", "--yes", timeout=2400)
    signed.pulumi("up", "--stack", "local", "--yes", "--expect-no-changes")


def push_by_hand(workspace: Workspace, tag: str, tmp_path: Path) -> str:
    """Push a base image under ``tag`` of the app's repository, as someone with registry access could."""
    digest_file = tmp_path / f"{tag}.digest"
    env = workspace.env
    subprocess.run(
        [
            "podman",
            "push",
            "--authfile",
            env["DOCKYARD_REGISTRY_AUTHFILE"],
            "--digestfile",
            str(digest_file),
            "localhost/dockyard/static-nonroot:local",
            f"{image_repository(workspace)}:{tag}",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return f"{image_repository(workspace)}@{digest_file.read_text().strip()}"


@pytest.fixture(scope="module")
def promoted(signed: Workspace) -> Workspace:
    """The signed release verified on local and promoted to local-staging, whose trust policy names the same key.

    The gate reads local's verification from the registry: the ledger beside the state is moved away meanwhile, as
    if the promotion ran on another machine against a shared backend."""
    verified = dockyard(signed, "verify", "--stack", "local")
    assert verified.returncode == 0, verified.output
    signed.init("local-staging")
    ledger = signed.backend / ".dockyard"
    assert (ledger / "dockyard" / "local.jsonl").is_file(), "the ledger still records every outcome"
    ledger.rename(signed.backend / "ledger-elsewhere")
    try:
        result = dockyard(signed, "promote", "--from", "local", "--to", "local-staging", "--yes")
    finally:
        shutil.rmtree(ledger, ignore_errors=True)
        (signed.backend / "ledger-elsewhere").rename(ledger)
    assert result.returncode == 0, result.output
    # A canary target takes the release on its canary track first.
    assert signed.outputs("local")["image_ref"] in deployment_images(signed, "local-staging")
    return signed


def refused_untouched(workspace: Workspace, image: str, why: str) -> None:
    before = live(workspace, "local-staging", "deployments"), workspace.stack_file("local-staging").read_bytes()
    result = dockyard(workspace, "rollback", "--stack", "local-staging", "--to", image.split("@")[1], "--yes")
    assert result.returncode == 1, result.output
    assert "local-staging's trust policy refuses it" in result.output
    assert why in result.output
    after = live(workspace, "local-staging", "deployments"), workspace.stack_file("local-staging").read_bytes()
    assert after == before, "nothing written, nothing deployed"


def test_an_unsigned_digest_is_refused(promoted: Workspace, tmp_path: Path) -> None:
    unsigned = push_by_hand(promoted, "pushed-by-hand", tmp_path)
    refused_untouched(promoted, unsigned, "carries no signature by keys/dockyard-local-cosign.pub")


def signed_by_another_key(workspace: Workspace, tag: str, tmp_path: Path) -> str:
    """A digest pushed by hand under ``tag`` and signed by a key pair made here, which no stack trusts."""
    image = push_by_hand(workspace, tag, tmp_path)
    another_key_pair(tmp_path)
    other = tools(workspace, tmp_path / "cosign.pub")
    other.private_key, other.key_password = (tmp_path / "cosign.key").read_text(), "another"
    with other as cosign:
        cosign.sign(image)
        cosign.verify(image)  # a valid signature, by a key local-staging does not trust
    return image


def test_a_digest_signed_by_another_key_is_refused(promoted: Workspace, tmp_path: Path) -> None:
    image = signed_by_another_key(promoted, "signed-elsewhere", tmp_path)
    refused_untouched(promoted, image, "carries no signature by keys/dockyard-local-cosign.pub")


def hand_edit_is_refused_by_the_program(workspace: Workspace, image: str, why: str) -> None:
    """local-staging's stack file names ``image`` as its stable release, edited by hand past every gate: `preview` and
    `up` both refuse in one line naming the image and what it lacks, and no live object changes."""
    stack_file = workspace.stack_file("local-staging")
    original = stack_file.read_bytes()
    before = {kind: live(workspace, "local-staging", kind) for kind in ("deployments", "services")}
    set_stack_config(workspace, "local-staging", ["image", "ref"], image)
    try:
        for command in (["preview"], ["up", "--yes"]):
            result = workspace.pulumi(*command, "--stack", "local-staging", check=False)
            assert result.returncode != 0, result.output
            # One line, however often the engine repeats it (as the run goes, and in the diagnostics).
            start = "local-staging's trust policy refuses"
            refusals = {line[line.index(start) :] for line in result.output.splitlines() if start in line}
            assert len(refusals) == 1, result.output
            (refusal,) = refusals
            assert refusal.startswith(f"{start} the stable track's image, nothing is deployed: {image} {why} (")
            assert refusal.endswith(")"), "the reason ends on the same line"
            assert "Traceback" not in result.output
    finally:
        stack_file.write_bytes(original)
    after = {kind: live(workspace, "local-staging", kind) for kind in ("deployments", "services")}
    assert after == before, "nothing deployed: the live objects are those of before"


def test_the_program_refuses_a_hand_edited_unsigned_digest(promoted: Workspace, tmp_path: Path) -> None:
    unsigned = push_by_hand(promoted, "edited-in-by-hand", tmp_path)
    hand_edit_is_refused_by_the_program(
        promoted, unsigned, "carries no signature by keys/dockyard-local-cosign.pub that local-staging trusts"
    )


def test_the_program_refuses_a_hand_edited_digest_signed_by_another_key(promoted: Workspace, tmp_path: Path) -> None:
    image = signed_by_another_key(promoted, "edited-in-signed-elsewhere", tmp_path)
    hand_edit_is_refused_by_the_program(
        promoted, image, "carries no signature by keys/dockyard-local-cosign.pub that local-staging trusts"
    )


def test_a_release_tag_pushed_again_with_other_content_is_refused(promoted: Workspace, tmp_path: Path) -> None:
    build = next(
        r
        for r in promoted.export("local")["deployment"]["resources"]
        if r["type"] == "pulumi-python:dynamic:Resource" and r["urn"].endswith("image-podman-build")
    )
    tag = build["outputs"]["tags"][0]
    repushed = push_by_hand(promoted, tag, tmp_path)
    assert repushed != promoted.outputs("local")["image_ref"], "the tag now names other content"
    refused_untouched(promoted, repushed, "carries no signature")


def test_the_verification_is_a_signed_attestation_on_the_digest(promoted: Workspace) -> None:
    image = promoted.outputs("local")["image_ref"]
    with tools(promoted) as cosign:
        statements = cosign.verify_attestation(image, predicate_type=VERIFICATION_PREDICATE)
    mine = [s["predicate"] for s in statements if s["predicate"]["backend"] == f"file://{promoted.backend}"]
    assert mine, "local's verification is attested in the registry with the key local-staging trusts"
    predicate = mine[-1]
    assert (predicate["stack"], predicate["image"], predicate["outcome"]) == ("local", image, "passed")
    assert {"update", "rollout", "pods", "endpoints", "health"} <= {check["name"] for check in predicate["checks"]}


def test_only_verifications_signed_by_the_trusted_key_count(promoted: Workspace, tmp_path: Path) -> None:
    image = push_by_hand(promoted, "verified-elsewhere", tmp_path)
    backend = f"file://{promoted.backend}"
    claim = Verification(
        "local",
        image,
        True,
        datetime.now(UTC),
        "someone@else",
        "cluster",
        "verify",
        (Check("health", True, "claimed"),),
    )
    predicate = {**claim.to_json(), "backend": backend}
    staging = StackView.read(promoted.directory, "local-staging")
    another_key_pair(tmp_path)
    forger = tools(promoted, tmp_path / "cosign.pub")
    forger.private_key, forger.key_password = (tmp_path / "cosign.key").read_text(), "another"
    with forger as cosign:
        cosign.attest(image, predicate, predicate_type=VERIFICATION_PREDICATE)
    assert attested_verifications(promoted.directory, backend, "local", staging, image) == [], "another key's claim"
    attest_verification(promoted, claim)  # signed with local's key, which local-staging trusts
    (read_back,) = attested_verifications(promoted.directory, backend, "local", staging, image)
    assert (read_back.stack, read_back.image, read_back.passed) == ("local", image, True)


#: A record published after the release was built: test-only (an ID no advisory database has), against the version
#: the clean build links.
LATE_ADVISORY = {
    "schema_version": "1.4.0",
    "id": "GHSA-9999-dock-yard",
    "modified": "2099-01-01T00:00:00Z",
    "published": "2099-01-01T00:00:00Z",
    "aliases": ["CVE-2099-0001"],
    "summary": "Dockyard test record: published after the release was built",
    "affected": [
        {
            "package": {"ecosystem": "Go", "name": "github.com/golang-jwt/jwt/v4"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "4.5.3"}]}],
        }
    ],
    "database_specific": {"severity": "CRITICAL", "github_reviewed": True},
}


def test_an_advisory_published_after_the_build_blocks_the_promotion(promoted: Workspace, tmp_path: Path) -> None:
    records = tmp_path / "vuln-db"
    shutil.copytree(PROJECT / "scripts" / "vuln-db", records)
    late = records / "ghsa" / "advisories" / "github-reviewed" / "2099" / "01" / "GHSA-9999-dock-yard"
    late.mkdir(parents=True)
    (late / "GHSA-9999-dock-yard.json").write_text(json.dumps(LATE_ADVISORY))
    db = f"{promoted.env['DOCKYARD_REGISTRY']}/dockyard-test/trivy-db-{SESSION}:2"
    subprocess.run(
        [str(PROJECT / "scripts" / "local-vuln-db.sh"), "publish"],
        env={**promoted.env, "DOCKYARD_VULN_DB_RECORDS": str(records), "DOCKYARD_VULN_DB_REF": db},
        check=True,
        capture_output=True,
        timeout=300,
    )
    set_stack_config(promoted, "local-staging", ["signing", "scan", "dbRepository"], db)
    before = live(promoted, "local-staging", "deployments"), promoted.stack_file("local-staging").read_bytes()
    image = promoted.outputs("local")["image_ref"]
    result = dockyard(promoted, "promote", "--from", "local", "--to", "local-staging", "--yes")
    assert result.returncode == 1, result.output
    (line,) = [line for line in result.output.splitlines() if "requires a passing vulnerability scan" in line]
    assert (
        f"{image} is vulnerable: CVE-2099-0001 (CRITICAL) in github.com/golang-jwt/jwt/v4 v4.5.2, fixed in 4.5.3"
        in line
    )
    after = live(promoted, "local-staging", "deployments"), promoted.stack_file("local-staging").read_bytes()
    assert after == before, "nothing written, nothing deployed"


# --- The cluster's admission: the same trust policy, enforced on what any client applies ---------------------------


def refused_by_admission(result: Result, refusal: str) -> None:
    assert result.returncode != 0, result.output
    assert "denied the request" in result.output, result.output
    assert refusal in result.output, result.output


def test_the_cluster_admits_only_signed_pinned_digests_into_a_stacks_namespace(
    promoted: Workspace, tmp_path: Path
) -> None:
    """kubectl, not the program: local-staging's namespace carries its trust policy, and the webhook enforces it."""
    namespace = namespace_of(promoted, "local-staging")
    labels = json.loads(kubectl(promoted, "get", "namespace", namespace, "-o", "json").stdout)["metadata"]["labels"]
    assert labels[ADMISSION_LABEL] == ADMISSION_ENFORCED, "the program labelled its namespace for admission"
    pull = pull_secret_of(promoted, "local-staging")
    unsigned = push_by_hand(promoted, "applied-by-hand", tmp_path)
    refused_by_admission(
        apply(promoted, pod("unsigned", namespace, unsigned, pull)),
        f"local-staging's trust policy refuses Pod unsigned: containers[app]: {unsigned} carries no signature by "
        "keys/dockyard-local-cosign.pub that local-staging trusts",
    )
    refused_by_admission(
        apply(promoted, deployment("unsigned", namespace, unsigned, pull)),
        f"local-staging's trust policy refuses Deployment unsigned: containers[app]: {unsigned} carries no signature",
    )
    tagged = unsigned.split("@")[0] + ":applied-by-hand"
    refused_by_admission(apply(promoted, pod("tagged", namespace, tagged, pull)), f"{tagged} is not pinned by digest")
    signed = promoted.outputs("local")["image_ref"]
    admitted = apply(promoted, pod("signed", namespace, signed, pull))
    assert admitted.returncode == 0, admitted.output
    kubectl(promoted, "delete", "pod", "signed", "-n", namespace, "--wait=false")
    for name in ("unsigned", "tagged"):
        assert kubectl(promoted, "get", "pod", name, "-n", namespace, check=False).returncode != 0, "never created"


def test_a_prod_namespace_fails_closed_without_the_webhook_and_break_glass_opens_it(promoted: Workspace) -> None:
    """A second registration of the same configuration, at a URL nothing serves, for this test's namespaces only:
    the prod-tier one refuses even the chain's signed digest; the dev-tier one admits it; a break-glass label
    admits it in prod too."""
    env = promoted.env
    signing = StackView.read(promoted.directory, "local-prod").env.signing
    assert signing is not None, "local-prod has a trust policy"
    policy = TrustPolicy.of("local-prod", signing, promoted.directory)
    annotation = NamespacePolicy.of(policy, env["DOCKYARD_REGISTRY_CA"]).annotation()
    marker = {"dockyard.dev/admission-test": SESSION}
    names = {tier: f"admission-{tier}-{SESSION}" for tier in ("prod", "dev")}
    cluster_ca = (Path(env["KUBECONFIG"]).parent / "pki" / "ca.crt").read_text()
    unreachable = webhook_configuration(
        "https://127.0.0.1:9/validate", cluster_ca, name=f"dockyard-down-{SESSION}", only_labelled=marker
    )
    signed = promoted.outputs("local")["image_ref"]
    try:
        for tier, name in names.items():
            labels = {ADMISSION_LABEL: ADMISSION_ENFORCED, TIER_LABEL: tier, **marker}
            labels["pod-security.kubernetes.io/enforce"] = "restricted"
            metadata = {"name": name, "labels": labels, "annotations": {TRUST_POLICY_ANNOTATION: annotation}}
            assert apply(promoted, {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}).returncode == 0
            kubectl(
                promoted,
                "create",
                "secret",
                "docker-registry",
                "pull",
                "-n",
                name,
                f"--docker-server={env['DOCKYARD_REGISTRY']}",
                f"--docker-username={env['DOCKYARD_REGISTRY_USER']}",
                f"--docker-password={env['DOCKYARD_REGISTRY_PASSWORD']}",
            )
        assert apply(promoted, unreachable).returncode == 0
        refused = apply(promoted, pod("signed", names["prod"], signed, "pull"))
        assert refused.returncode != 0, refused.output
        assert "failed calling webhook" in refused.output, refused.output
        assert f"fail-closed.dockyard-down-{SESSION}.dockyard.dev" in refused.output
        admitted = apply(promoted, pod("signed", names["dev"], signed, "pull"))
        assert admitted.returncode == 0, admitted.output
        kubectl(promoted, "label", "namespace", names["prod"], f"{BREAK_GLASS_LABEL}=INC-0001")
        broken_glass = apply(promoted, pod("signed", names["prod"], signed, "pull"))
        assert broken_glass.returncode == 0, broken_glass.output
    finally:
        kubectl(promoted, "delete", "validatingwebhookconfiguration", unreachable["metadata"]["name"], check=False)
        kubectl(promoted, "delete", "namespace", *names.values(), "--wait=false", check=False)
