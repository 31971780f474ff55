"""The stack config loader: every committed stack validates, every rule is enforced, errors are clear."""

from __future__ import annotations

import copy
from typing import Any

import pulumi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.model.config import ConfigError, EnvironmentConfig, Tier, parse_environment
from dockyard.program.stack_config import load
from tests.stacks import STACKS, dockyard_document, stack_config
from tests.unit.conftest import RecordingMocks, set_stack_config

DIGEST_REF = "ghcr.io/acme/app@sha256:" + "1" * 64


def problems_of(stack: str, document: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_environment(stack, document)
    return caught.value.problems


def prod_document() -> dict[str, Any]:
    return copy.deepcopy(dockyard_document("prod"))


def test_committed_stacks_are_the_expected_environments() -> None:
    assert STACKS == ["dev", "local", "local-prod", "local-staging", "prod", "qa", "staging"]


@pytest.mark.parametrize("stack", STACKS)
def test_every_committed_stack_validates(stack: str) -> None:
    env = parse_environment(stack, dockyard_document(stack))
    assert isinstance(env, EnvironmentConfig)


@pytest.mark.parametrize("stack", ["qa", "staging", "prod", "local-staging", "local-prod"])
def test_promoted_stacks_never_build(stack: str) -> None:
    env = parse_environment(stack, dockyard_document(stack))
    assert env.image.build is None
    assert env.tier in (Tier.QA, Tier.STAGING, Tier.PROD)


def test_staging_refuses_a_build_section() -> None:
    document = copy.deepcopy(dockyard_document("staging"))
    document["image"] = {"build": {"builder": "podman"}}
    assert problems_of("staging", document) == [
        "staging: dockyard:image.build: set in tier staging; allowed: only image.ref, staging never builds"
    ]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("ghcr.io/acme/app:1.2.3", "is not digest-pinned"),
        ("ghcr.io/acme/app:latest", "never 'latest'"),
        ("ghcr.io/acme/app@sha256:1234", "is not an image reference"),
        ("GHCR.io/Acme/App@sha256:" + "1" * 64, "is not an image reference"),
    ],
)
def test_staging_requires_a_digest_pinned_reference(ref: str, expected: str) -> None:
    document = copy.deepcopy(dockyard_document("staging"))
    document["image"] = {"ref": ref}
    (problem,) = problems_of("staging", document)
    assert problem.startswith("staging: dockyard:image.ref: ")
    assert expected in problem


def test_latest_is_refused_even_in_dev() -> None:
    document = copy.deepcopy(dockyard_document("dev"))
    document["image"] = {"ref": "ghcr.io/acme/app:latest"}
    (problem,) = problems_of("dev", document)
    assert "dockyard:image.ref: found 'ghcr.io/acme/app:latest'" in problem


def test_prod_rules_are_reported_together() -> None:
    document = prod_document()
    document["kubernetes"]["replicas"] = 1
    document["kubernetes"].pop("autoscaling")
    document["kubernetes"]["resources"].pop("limits")
    document["github"]["reviewers"] = []
    assert problems_of("prod", document) == [
        "prod: dockyard:kubernetes.replicas: 1; allowed in prod: 2 or more",
        "prod: dockyard:kubernetes.resources.limits: missing; allowed in prod: cpu and memory limits",
        "prod: dockyard:github.reviewers: empty; allowed in prod: at least one required reviewer",
    ]


def test_prod_applied_by_dockyard_needs_the_github_approval_gate() -> None:
    document = prod_document()
    document["github"] = {"enabled": False}
    (problem,) = problems_of("prod", document)
    assert problem.startswith("prod: dockyard:github.enabled: false; allowed in prod with kubernetes.mode=cluster")


def test_prod_autoscaling_floor_is_two() -> None:
    document = prod_document()
    document["kubernetes"]["autoscaling"]["minReplicas"] = 1
    (problem,) = problems_of("prod", document)
    assert problem == "prod: dockyard:kubernetes.autoscaling.minReplicas: 1; allowed in prod: 2 or more"


@pytest.mark.parametrize("weight", [-1, 101, 1000])
def test_canary_weight_is_a_percentage(weight: int) -> None:
    document = copy.deepcopy(dockyard_document("staging"))
    document["kubernetes"]["strategy"]["weight"] = weight
    (problem,) = problems_of("staging", document)
    assert problem.startswith(f"staging: dockyard:kubernetes.strategy.weight: found {weight}; allowed: ")


def test_blue_green_needs_an_active_color() -> None:
    document = prod_document()
    del document["kubernetes"]["strategy"]["activeColor"]
    assert problems_of("prod", document) == [
        "prod: dockyard:kubernetes.strategy.activeColor: missing; allowed: blue or green"
    ]


def test_a_stack_without_a_release_runs_no_pods_for_it() -> None:
    """No placeholder digests: a color (or image.ref) that names no image has no release yet and runs nothing."""
    document = prod_document()
    strategy = document["kubernetes"]["strategy"]
    del strategy["blueImage"]
    env = parse_environment("prod", document)
    assert env.served_image is None, "the Service selects blue, which runs nothing yet"
    assert [track.name for track in env.kubernetes.tracks] == ["green"]
    del strategy["greenImage"]
    assert parse_environment("prod", document).kubernetes.tracks == []
    staging = copy.deepcopy(dockyard_document("staging"))
    staging["image"] = {}
    assert parse_environment("staging", staging).served_image is None


def test_unknown_keys_name_the_allowed_ones() -> None:
    document = copy.deepcopy(dockyard_document("local"))
    document["kubernetes"]["replica"] = 2
    document["registy"] = {}
    problems = problems_of("local", document)
    assert (
        "local: dockyard:registy: unknown key; allowed keys: github, image, kubernetes, mergeRequest, notifications, promotion, registry, signing, tier"
        in (problems)
    )
    assert any(
        p.startswith("local: dockyard:kubernetes.replica: unknown key; allowed keys: appName, autoscaling,")
        for p in problems
    )


def test_unknown_key_inside_a_strategy_names_that_strategy_keys() -> None:
    document = copy.deepcopy(dockyard_document("staging"))
    document["kubernetes"]["strategy"]["wieght"] = 5
    (problem,) = problems_of("staging", document)
    assert problem == (
        "staging: dockyard:kubernetes.strategy.wieght: unknown key; allowed keys: canaryImage, stepSoakSeconds, steps, "
        "type, weight"
    )


def test_wrong_types_and_ranges() -> None:
    document = copy.deepcopy(dockyard_document("local"))
    document["kubernetes"]["port"] = "http"
    document["kubernetes"]["resources"]["limits"]["memory"] = "lots"
    document["tier"] = "uat"
    problems = problems_of("local", document)
    assert len(problems) == 3
    assert any(p.startswith("local: dockyard:kubernetes.port: found 'http'; allowed: ") for p in problems)
    assert "local: dockyard:kubernetes.resources.limits.memory: found 'lots'; allowed: a memory quantity" in (
        " ".join(problems)
    )
    assert any(p.startswith("local: dockyard:tier: found 'uat'; allowed: ") and "'qa'" in p for p in problems)


def test_freeze_window_must_be_ordered_and_zoned() -> None:
    document = prod_document()
    document["promotion"]["freezeWindows"] = [
        {"start": "2026-12-24T00:00:00Z", "end": "2026-12-23T00:00:00Z", "reason": "x"},
        {"start": "2026-12-24T00:00:00", "end": "2026-12-25T00:00:00", "reason": "y"},
    ]
    problems = problems_of("prod", document)
    assert len(problems) == 2
    assert all(p.startswith("prod: dockyard:promotion.freezeWindows[") for p in problems)


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"local: dockyard: found \[1, 2\]; allowed: a mapping of keys"):
        parse_environment("local", [1, 2])  # type: ignore[arg-type]


# --- loading through the Pulumi config API ------------------------------------------------------------------


def dev_without_password_env() -> dict[str, Any]:
    values = copy.deepcopy(stack_config("dev"))
    values["dockyard:registry"].pop("passwordEnv")
    return values


@pulumi.runtime.test
async def test_load_keeps_secrets_as_secret_outputs(mocks: RecordingMocks) -> None:
    values = {**dev_without_password_env(), "dockyard:registryPassword": "hunter2-registry"}
    values["dockyard:appSecrets"] = {"API_KEY": "hunter2-app"}
    set_stack_config(values, secret_keys=["dockyard:registryPassword", "dockyard:appSecrets"])
    loaded = load("dev")
    assert loaded.secrets.registry_password is not None
    assert loaded.secrets.app_secrets is not None
    assert "hunter2" not in repr(loaded.env.model_dump())
    assert await loaded.secrets.registry_password.is_secret()
    assert await loaded.secrets.app_secrets.is_secret()
    assert await loaded.secrets.registry_password.future() == "hunter2-registry"


def test_load_refuses_plaintext_secrets_and_encrypted_settings(mocks: RecordingMocks) -> None:
    values = {**stack_config("dev"), "dockyard:kubeconfig": "apiVersion: v1"}
    set_stack_config(values, secret_keys=["dockyard:kubernetes"])
    with pytest.raises(ConfigError) as caught:
        load("dev")
    assert sorted(caught.value.problems) == [
        "dev: dockyard:kubeconfig: stored in plaintext; allowed: an encrypted value "
        "(pulumi config set --secret dockyard:kubeconfig ...)",
        "dev: dockyard:kubernetes: stored as a secret; allowed: secrets only under appSecrets, buildSecrets, "
        "ciPulumiPassphrase, cosignPassword, cosignPrivateKey, kubeconfig, registryPassword",
    ]


def test_load_reports_unknown_top_level_keys_with_the_rest(mocks: RecordingMocks) -> None:
    values = {**stack_config("local"), "dockyard:replicas": 3}
    values["dockyard:kubernetes"] = {**values["dockyard:kubernetes"], "replicas": 0}
    set_stack_config(values)
    with pytest.raises(ConfigError) as caught:
        load("local")
    assert len(caught.value.problems) == 2
    assert str(caught.value).startswith("invalid Dockyard configuration (2 problem(s)):\nlocal: dockyard:")


def test_a_building_stack_needs_registry_credentials(mocks: RecordingMocks) -> None:
    set_stack_config(dev_without_password_env())
    with pytest.raises(ConfigError) as caught:
        load("dev")
    assert caught.value.problems == [
        "dev: dockyard:registryPassword: missing on a building stack; allowed: pulumi config set --secret "
        "dockyard:registryPassword, or registry.passwordEnv"
    ]


def test_password_env_must_be_exported_for_an_update(mocks: RecordingMocks, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GHCR_TOKEN", raising=False)
    set_stack_config(stack_config("dev"))
    with pytest.raises(ConfigError, match="environment variable GHCR_TOKEN is not set"):
        load("dev")


def test_config_error_is_a_run_error_so_the_engine_prints_no_traceback() -> None:
    assert issubclass(ConfigError, pulumi.RunError)


# --- fuzzing: the loader only ever raises its own error -------------------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 200), st.text(max_size=12), st.floats(allow_nan=False))
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def _mutated_stack(draw: st.DrawFn) -> dict[str, Any]:
    document = copy.deepcopy(dockyard_document(draw(st.sampled_from(STACKS))))
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(sorted(document)))
        node = document
        key: Any = section
        while isinstance(node.get(key), dict) and node[key] and draw(st.booleans()):
            node = node[key]
            key = draw(st.sampled_from(sorted(node)))
        node[key] = draw(_values)
    return document


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=st.one_of(st.composite(_mutated_stack)(), st.dictionaries(st.text(max_size=10), _values)))
def test_random_documents_only_raise_config_error(document: dict[str, Any]) -> None:
    problems: list[str] = []
    try:
        parse_environment("fuzz", document)
    except ConfigError as error:  # any other exception type fails the test
        problems = error.problems or ["<empty>"]
    assert all(line.startswith("fuzz: dockyard:") for line in problems)


def _build_problems(build: dict[str, Any]) -> list[str]:
    """The problems of the local stack with ``build`` merged into its ``dockyard:image.build``."""
    document = copy.deepcopy(dockyard_document("local"))
    document["image"]["build"].update(build)
    with pytest.raises(ConfigError) as caught:
        parse_environment("local", document)
    return caught.value.problems


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (
            {"builder": "docker", "secrets": ["npm_token"]},
            "local: dockyard:image.build.secrets: set with builder docker; allowed: builder podman (pulumi-docker takes no secrets)",
        ),
        (
            {"builder": "podman", "secrets": ["npm,token"]},
            "local: dockyard:image.build.secrets[0]: found 'npm,token'; allowed: a build secret id: letters, digits, '_', "
            "'.', '-' (at most 128)",
        ),
    ],
)
def test_build_secret_ids_need_podman_and_a_plain_id(build: dict[str, Any], problem: str) -> None:
    assert _build_problems(build) == [problem]


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (
            {"platforms": ["linux/amd64", "linux/arm"]},
            "local: dockyard:image.build.platforms[1]: found 'linux/arm'; allowed: one of linux/amd64, linux/arm64, "
            "linux/ppc64le, linux/s390x, linux/riscv64",
        ),
        (
            {"platform": "amd64"},
            "local: dockyard:image.build.platform: found 'amd64'; allowed: one of linux/amd64, linux/arm64, "
            "linux/ppc64le, linux/s390x, linux/riscv64",
        ),
        (
            {"platform": "linux/arm64", "platforms": ["linux/arm64"]},
            "local: dockyard:image.build.platform: set with platforms; allowed: one of them (platform is platforms: "
            "[<one>])",
        ),
        (
            {"platforms": ["linux/arm64", "linux/arm64"]},
            "local: dockyard:image.build.platforms: found ['linux/arm64', 'linux/arm64'] with a platform twice; "
            "allowed: each platform once",
        ),
        (
            {
                "builder": "docker",
                "testReportsTarget": None,
                "integration": None,
                "platforms": ["linux/amd64", "linux/arm64"],
            },
            "local: dockyard:image.build.platforms: 2 with builder docker; allowed: builder podman (pulumi-docker's "
            "Image builds one platform)",
        ),
    ],
)
def test_a_bad_platform_is_one_error_naming_the_stack_the_key_and_what_is_allowed(
    build: dict[str, Any], problem: str
) -> None:
    assert _build_problems(build) == [problem]


@pytest.mark.parametrize(
    ("build", "platforms"),
    [
        ({}, ["linux/amd64"]),
        ({"platform": "linux/arm64"}, ["linux/arm64"]),
        ({"platforms": ["linux/amd64", "linux/arm64"]}, ["linux/amd64", "linux/arm64"]),
    ],
)
def test_platform_is_the_shorthand_of_one_platform(build: dict[str, Any], platforms: list[str]) -> None:
    document = copy.deepcopy(dockyard_document("local"))
    document["image"]["build"].update(build)
    image_build = parse_environment("local", document).image.build
    assert image_build is not None
    assert image_build.target_platforms == platforms
