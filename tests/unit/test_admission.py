"""The admission webhook's decisions (pure), its namespace policy document, its registration and its server path,
with fakes for the API server and cosign. The live webhook on the local cluster: tests/engine/test_supply_chain.py."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client import ApiException

from dockyard.admission.namespace import NamespacePolicy
from dockyard.admission.policy_controller import cluster_image_policy
from dockyard.admission.registration import BREAK_GLASS_LABEL, webhook_configuration
from dockyard.admission.review import Decision, decide, images, pod_spec, response
from dockyard.admission.server import Webhook
from dockyard.model.config import SigningConfig, TrustedIdentity
from dockyard.model.trust import SBOM, Signer, TrustCache, TrustPolicy, TrustPolicyError
from dockyard_components.cosign import KeylessIdentity
from dockyard_components.k8s_specs import ADMISSION_LABEL, TIER_LABEL, TRUST_POLICY_ANNOTATION

SIGNED = "127.0.0.1:5443/dockyard/app@sha256:" + "a" * 64
UNSIGNED = "127.0.0.1:5443/dockyard/app@sha256:" + "b" * 64
KEY = "-----BEGIN PUBLIC KEY-----\nMFk...\n-----END PUBLIC KEY-----\n"
POLICY = TrustPolicy("local-prod", (Signer("keys/local.pub", public_key=KEY),), (SBOM,))
NAMESPACE = NamespacePolicy(POLICY, registry_ca="-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n")


def pod(*images_: str, pull: str | None = "pull") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images_)]}
    if pull:
        spec["imagePullSecrets"] = [{"name": pull}]
    return {"metadata": {"name": "web"}, "spec": spec}


def request(obj: dict[str, Any], kind: str = "Pod", operation: str = "CREATE", old: Any = None) -> dict[str, Any]:
    return {"uid": "u-1", "kind": {"kind": kind}, "operation": operation, "name": "web", "object": obj,
            "oldObject": old, "namespace": "shop-prod"}  # fmt: skip


def only_signed(_: NamespacePolicy, pinned: dict[str, str], __: list[str]) -> dict[str, list[str]]:
    return {what: [f"{image} carries no signature"] for what, image in pinned.items() if image != SIGNED}


def test_the_policy_document_round_trips_keys_identities_and_the_sbom_rule() -> None:
    identity = TrustedIdentity(issuer="https://token.actions.githubusercontent.com", identity_regexp="^https://x/.*$")
    signing = SigningConfig(public_key_file="keys/dockyard-local-cosign.pub", identities=[identity])
    policy = TrustPolicy.of("local-prod", signing, Path(__file__).resolve().parents[2])
    again = TrustPolicy.from_document(json.loads(json.dumps(policy.document())))
    assert again == policy
    assert again.fingerprint(SIGNED) == policy.fingerprint(SIGNED), "the webhook's cache keys match the program's"


@pytest.mark.parametrize(
    "annotation",
    ["not json", json.dumps({"policy": {"keys": [], "identities": [], "requireSbom": True, "stack": "s"}}), "{}"],
)
def test_a_namespace_whose_policy_cannot_be_read_is_an_error_never_no_policy(annotation: str) -> None:
    with pytest.raises(TrustPolicyError):
        NamespacePolicy.read({TRUST_POLICY_ANNOTATION: annotation})


def test_a_namespace_without_the_annotation_has_no_policy_and_the_annotation_round_trips() -> None:
    assert NamespacePolicy.read({"other": "x"}) is None
    assert NamespacePolicy.read({TRUST_POLICY_ANNOTATION: NAMESPACE.annotation()}) == NAMESPACE


@pytest.mark.parametrize(
    ("kind", "obj"),
    [
        ("Pod", pod(SIGNED)),
        ("Deployment", {"spec": {"template": pod(SIGNED)}}),
        ("CronJob", {"spec": {"jobTemplate": {"spec": {"template": pod(SIGNED)}}}}),
    ],
)
def test_each_kind_yields_its_pod_spec(kind: str, obj: dict[str, Any]) -> None:
    assert images(pod_spec(kind, obj)) == {"containers[c0]": SIGNED}


def test_init_and_ephemeral_containers_are_checked_too() -> None:
    spec = {"initContainers": [{"name": "i", "image": "a"}], "ephemeralContainers": [{"name": "e", "image": "b"}]}
    assert images(spec) == {"initContainers[i]": "a", "ephemeralContainers[e]": "b"}


def test_a_signed_pinned_pod_is_admitted() -> None:
    assert decide(request(pod(SIGNED)), NAMESPACE, only_signed) == Decision(True)


def test_an_unsigned_or_unpinned_image_is_refused_with_every_reason_on_one_line() -> None:
    decision = decide(request(pod(UNSIGNED, "127.0.0.1:5443/dockyard/app:latest")), NAMESPACE, only_signed)
    assert not decision.allowed
    assert decision.message == (
        f"local-prod's trust policy refuses Pod web: containers[c0]: {UNSIGNED} carries no signature; containers[c1]: "
        "127.0.0.1:5443/dockyard/app:latest is not pinned by digest (allowed: registry/repository@sha256:<64 hex "
        "digits>)"
    )
    assert "\n" not in (decision.message or "")


def test_a_namespace_without_a_policy_admits_anything_without_a_check() -> None:
    def never(*_: Any) -> dict[str, list[str]]:
        raise AssertionError("no check without a policy")

    assert decide(request(pod("nginx")), None, never).allowed


def test_an_update_that_keeps_the_images_is_admitted_without_a_check() -> None:
    def never(*_: Any) -> dict[str, list[str]]:
        raise AssertionError("a scale or relabel must not wait on a registry")

    old = pod(UNSIGNED)
    assert decide(request(pod(UNSIGNED), operation="UPDATE", old=old), NAMESPACE, never).allowed
    assert not decide(request(pod(UNSIGNED), operation="UPDATE", old=pod(SIGNED)), NAMESPACE, only_signed).allowed


def test_the_response_is_an_admission_review_with_a_403_on_refusal() -> None:
    answer = response("u-1", Decision(False, "no"))
    assert answer["response"] == {
        "uid": "u-1",
        "allowed": False,
        "status": {"code": 403, "reason": "Forbidden", "message": "no"},
    }
    assert response("u-2", Decision(True))["response"] == {"uid": "u-2", "allowed": True}


def test_prod_fails_closed_others_fail_open_and_break_glass_is_excluded_from_both() -> None:
    config = webhook_configuration("https://127.0.0.1:10443/validate", "PEM")
    closed, open_ = config["webhooks"]
    assert (closed["failurePolicy"], open_["failurePolicy"]) == ("Fail", "Ignore")
    for webhook, operator in ((closed, "In"), (open_, "NotIn")):
        expressions = {e["key"]: e for e in webhook["namespaceSelector"]["matchExpressions"]}
        assert expressions[ADMISSION_LABEL]["values"] == ["enforce"]
        assert expressions[TIER_LABEL] == {"key": TIER_LABEL, "operator": operator, "values": ["prod"]}
        assert expressions[BREAK_GLASS_LABEL]["operator"] == "DoesNotExist"
        assert base64.b64decode(webhook["clientConfig"]["caBundle"]) == b"PEM"
        resources = {r for rule in webhook["rules"] for r in rule["resources"]}
        assert resources == {"pods", "deployments", "replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs"}


class FakeApi:
    """The API server's namespaces and Secrets, as the webhook reads them."""

    def __init__(self, annotations: dict[str, str] | None, secrets: dict[str, dict[str, str]]) -> None:
        self.annotations, self.secrets, self.namespace_reads = annotations, secrets, 0

    def read_namespace(self, name: str) -> Any:
        self.namespace_reads += 1
        return SimpleNamespace(metadata=SimpleNamespace(annotations=self.annotations))

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        if name not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(data=self.secrets[name])


def docker_config(host: str, user: str, password: str) -> dict[str, str]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {".dockerconfigjson": base64.b64encode(json.dumps({"auths": {host: {"auth": auth}}}).encode()).decode()}


def test_the_webhook_logs_in_with_the_pods_pull_secret_and_trusts_the_namespaces_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = FakeApi(
        {TRUST_POLICY_ANNOTATION: NAMESPACE.annotation()}, {"pull": docker_config("127.0.0.1:5443", "u", "p")}
    )
    seen: list[Any] = []

    def check(policy: TrustPolicy, group: dict[str, str], tools: Any, cache: TrustCache) -> dict[str, list[str]]:
        seen.append(tools.args)
        return {}

    monkeypatch.setattr("dockyard.admission.server.check_images", check)
    webhook = Webhook(api, tmp_path)  # type: ignore[arg-type]
    answer = webhook.review({"request": request(pod(SIGNED))})
    assert answer["response"]["allowed"] is True
    ((host, credentials, policy),) = seen
    assert (host, credentials.username, credentials.password) == ("127.0.0.1:5443", "u", "p")
    assert Path(credentials.ca_file).read_text() == NAMESPACE.registry_ca
    assert policy == POLICY
    webhook.review({"request": request(pod(SIGNED))})
    assert api.namespace_reads == 1, "a burst of Pods reads the namespace once"


def test_a_namespace_the_webhook_cannot_read_refuses_with_the_reason(tmp_path: Path) -> None:
    class Down(FakeApi):
        def read_namespace(self, name: str) -> Any:
            raise ApiException(status=503, reason="Service Unavailable")

    answer = Webhook(Down(None, {}), tmp_path).review({"request": request(pod(SIGNED))})  # type: ignore[arg-type]
    assert answer["response"]["allowed"] is False
    assert "cannot read the trust policy of namespace shop-prod: Service Unavailable" in str(answer)


def test_the_cluster_image_policy_has_one_authority_per_signer_and_the_sbom_rule() -> None:
    identity = KeylessIdentity("https://token.actions.githubusercontent.com", identity_regexp="^https://x/.*$")
    policy = TrustPolicy("prod", (POLICY.signers[0], Signer(str(identity), identity=identity)), (SBOM,))
    document = cluster_image_policy(policy, "ghcr.io/acme/app")
    assert document["spec"]["images"] == [{"glob": "ghcr.io/acme/app*"}]
    key, keyless = document["spec"]["authorities"]
    assert key["key"] == {"data": KEY, "hashAlgorithm": "sha256"}
    assert keyless["keyless"]["identities"] == [
        {"issuer": "https://token.actions.githubusercontent.com", "subjectRegExp": "^https://x/.*$"}
    ]
    assert key["attestations"] == keyless["attestations"] == [{"name": "sbom", "predicateType": "spdxjson"}]
    without_sbom = cluster_image_policy(TrustPolicy("dev", POLICY.signers, ()), "ghcr.io/acme/app")
    assert "attestations" not in without_sbom["spec"]["authorities"][0]
