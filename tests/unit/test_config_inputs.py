"""Config that the API server or git would otherwise catch is refused by the loader, in the one-error format.

Secret maps are encrypted value by value, requests do not exceed limits, and the build context and its Dockerfile
exist, all reported before any resource is registered.
"""

from __future__ import annotations

import copy
import runpy
from pathlib import Path
from typing import Any

import pulumi
import pytest

from dockyard.model.config import ConfigError, parse_environment
from dockyard.program.stack_config import load
from tests.stacks import PROJECT, dockyard_document, stack_config
from tests.unit.conftest import RecordingMocks, set_stack_config
from tests.unit.test_config import problems_of

ENCRYPTED = "v1:uNHL/ARNO1qEq9da:m+VpmYQ6o9ALbpoLJox7XIKh9oL2RNFn6NqJ70e9EMj1z/PkSrd9"


def local_with_resources(resources: dict[str, Any]) -> dict[str, Any]:
    document = copy.deepcopy(dockyard_document("local"))
    document["kubernetes"]["resources"] = resources
    return document


# --- requests ≤ limits -------------------------------------------------------------------------------------------


def test_requests_above_limits_are_refused_for_cpu_and_memory_at_once() -> None:
    document = local_with_resources(
        {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "500m", "memory": "512Mi"}}
    )
    assert problems_of("local", document) == [
        "local: dockyard:kubernetes.resources.requests.cpu: '1' is more than limits.cpu '500m'; "
        "allowed: a request at most its limit",
        "local: dockyard:kubernetes.resources.requests.memory: '1Gi' is more than limits.memory '512Mi'; "
        "allowed: a request at most its limit",
    ]


def test_quantities_are_compared_by_value_not_by_text() -> None:
    # As text, "1" < "999m" and "1Gi" < "999Mi"; as quantities both requests are within their limits.
    document = local_with_resources(
        {"requests": {"cpu": "999m", "memory": "999Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    )
    assert parse_environment("local", document).kubernetes.resources.limits is not None
    equal = local_with_resources(
        {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1024Mi"}}
    )
    assert parse_environment("local", equal).kubernetes.resources.requests.cpu == "1"
    above = local_with_resources(
        {"requests": {"cpu": "1001m", "memory": "1M"}, "limits": {"cpu": "1", "memory": "1Mi"}}
    )
    (problem,) = problems_of("local", above)
    assert problem.startswith("local: dockyard:kubernetes.resources.requests.cpu: '1001m' is more than")


def test_a_default_request_above_a_low_limit_says_it_is_the_default() -> None:
    document = local_with_resources({"limits": {"cpu": "20m", "memory": "64Mi"}})
    assert problems_of("local", document) == [
        "local: dockyard:kubernetes.resources.requests.cpu: '50m' (the default) is more than limits.cpu '20m'; "
        "allowed: a request at most its limit"
    ]


def test_the_limit_rule_is_reported_with_the_other_problems() -> None:
    document = local_with_resources(
        {"requests": {"cpu": "2", "memory": "32Mi"}, "limits": {"cpu": "1", "memory": "64Mi"}}
    )
    document["kubernetes"]["replicas"] = 0
    assert len(problems_of("local", document)) == 2


# --- every value of a secret map is encrypted --------------------------------------------------------------------


def write_stack_file(directory: Path, stack: str, app_secrets: dict[str, Any]) -> None:
    text = "config:\n  dockyard:appSecrets:\n"
    for name, value in app_secrets.items():
        text += (
            f"    {name}: {value}\n" if isinstance(value, str) else f"    {name}:\n      secure: {value['secure']}\n"
        )
    (directory / f"Pulumi.{stack}.yaml").write_text(text)


def engine_config_with_app_secrets(names: list[str]) -> None:
    """As the engine passes a key with any encrypted value inside: decrypted, and flagged secret as a whole."""
    values = {**stack_config("dev"), "dockyard:appSecrets": {name: f"value-of-{name}" for name in names}}
    set_stack_config(values, secret_keys=["dockyard:appSecrets"])


def test_a_plaintext_value_beside_encrypted_app_secrets_is_refused(mocks: RecordingMocks, workdir: Path) -> None:
    write_stack_file(workdir, "dev", {"API_KEY": {"secure": ENCRYPTED}, "DEBUG_TOKEN": "hunter2"})
    engine_config_with_app_secrets(["API_KEY", "DEBUG_TOKEN"])
    with pytest.raises(ConfigError) as caught:
        load("dev", workdir)
    assert caught.value.problems == [
        "dev: dockyard:appSecrets.DEBUG_TOKEN: stored in plaintext beside encrypted values; allowed: an encrypted "
        "value (pulumi config set --secret --path 'dockyard:appSecrets.DEBUG_TOKEN' ...)"
    ]
    assert "hunter2" not in str(caught.value)


@pulumi.runtime.test
async def test_app_secrets_encrypted_value_by_value_load(mocks: RecordingMocks, workdir: Path) -> None:
    write_stack_file(workdir, "dev", {"API_KEY": {"secure": ENCRYPTED}, "OTHER": {"secure": ENCRYPTED}})
    engine_config_with_app_secrets(["API_KEY", "OTHER"])
    loaded = load("dev", workdir)
    assert loaded.secrets.app_secrets is not None
    assert await loaded.secrets.app_secrets.is_secret()


# --- the build context and its Dockerfile exist ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remove", "expected"),
    [
        (
            "app",
            "dev: dockyard:image.build.context: found 'app', no such directory in {dir}; allowed: the build "
            "context directory, relative to the project",
        ),
        (
            "app/Dockerfile",
            "dev: dockyard:image.build.dockerfile: found 'Dockerfile', no such file in {dir}/app; "
            "allowed: the Dockerfile's path inside image.build.context",
        ),
    ],
)
def test_a_missing_build_context_or_dockerfile_is_a_config_error(
    mocks: RecordingMocks, workdir: Path, remove: str, expected: str
) -> None:
    target = workdir / remove
    if target.is_dir():
        for child in target.iterdir():
            child.unlink()
        target.rmdir()
    else:
        target.unlink()
    set_stack_config(stack_config("dev"))
    with pytest.raises(ConfigError) as caught:
        load("dev", workdir)
    assert caught.value.problems == [expected.format(dir=workdir)]


def test_a_missing_build_context_stops_the_program_before_any_resource(mocks: RecordingMocks, workdir: Path) -> None:
    (workdir / "app" / "Dockerfile").unlink()
    (workdir / "app" / "main.go").unlink()
    (workdir / "app").rmdir()
    pulumi.runtime.settings._set_stack("local")
    set_stack_config(stack_config("local"))
    with pytest.raises(ConfigError, match=r"local: dockyard:image.build.context: found 'app', no such directory"):
        runpy.run_path(str(PROJECT / "__main__.py"), run_name="__main__")
    assert mocks.resources == []


# --- signing: a public key that exists, and the private key on every signing stack ------------------------------------


def test_a_signing_building_stack_without_its_key_pair_or_public_key_is_refused(
    mocks: RecordingMocks, workdir: Path
) -> None:
    set_stack_config(
        {**stack_config("local"), "dockyard:signing": {"publicKeyFile": "keys/missing.pub"}}, secret_keys=[]
    )
    with pytest.raises(ConfigError) as caught:
        load("local", workdir)
    assert caught.value.problems == [
        f"local: dockyard:signing.publicKeyFile: found 'keys/missing.pub', no such file in {workdir}; allowed: a "
        "cosign public key (PEM) in the project, e.g. from cosign generate-key-pair",
        "local: dockyard:cosignPrivateKey: missing on a stack that signs (builds and verifications); allowed: pulumi config set "
        "--secret dockyard:cosignPrivateKey ... (cosign generate-key-pair)",
        "local: dockyard:cosignPassword: missing on a stack that signs (builds and verifications); allowed: pulumi config set "
        "--secret dockyard:cosignPassword ... (cosign generate-key-pair)",
    ]


def test_a_promotion_target_that_signs_nothing_it_verifies_is_refused(mocks: RecordingMocks, workdir: Path) -> None:
    """A stack that deploys promoted digests still attests its verifications, which the next stack's gate reads."""
    document = {k: v for k, v in stack_config("local-prod").items() if not k.startswith("dockyard:cosign")}
    set_stack_config(document, secret_keys=[])
    with pytest.raises(ConfigError) as caught:
        load("local-prod", workdir)
    assert caught.value.problems == [
        f"local-prod: dockyard:{key}: missing on a stack that signs (builds and verifications); allowed: pulumi "
        f"config set --secret dockyard:{key} ... (cosign generate-key-pair)"
        for key in ("cosignPrivateKey", "cosignPassword")
    ]


def test_a_cosign_key_without_a_signing_section_is_refused(mocks: RecordingMocks, workdir: Path) -> None:
    document = {k: v for k, v in stack_config("local").items() if k != "dockyard:signing"}
    set_stack_config({**document, "dockyard:cosignPrivateKey": "x"}, secret_keys=["dockyard:cosignPrivateKey"])
    with pytest.raises(ConfigError) as caught:
        load("local", workdir)
    assert caught.value.problems == [
        "local: dockyard:cosignPrivateKey: set without dockyard:signing; allowed: signing.publicKeyFile beside it"
    ]
