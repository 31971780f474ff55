"""A separate team's program: every public component of the installed ``dockyard-components`` wheel, under mocks.

Run by tests/unit/test_packaging.py with ``python -I -S`` and a ``sys.path`` of only the wheel's install directory
and the dependencies' site-packages (never the checkout). argv: the build context directory, then ``ok`` (every
component, valid inputs) or ``bad-canary-weight``. Prints one JSON report on stdout.
"""

import json
import sys
from typing import Any

import pulumi

import dockyard_components
from dockyard_components import (
    AppImage,
    Builder,
    CiPipeline,
    ContainerRegistry,
    KubernetesApp,
    RegistryKind,
    SignedImage,
    StrategyType,
    Tier,
)

DIGEST = "sha256:" + "ab" * 32
CANARY_REF = "registry.payments.example:5000/payments/api@sha256:" + "cd" * 32
PASSWORD = "sentinel-registry-password"
APP_SECRET = "sentinel-app-secret"
SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270"


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ == "pulumi-python:dynamic:Resource":
            # What the podman build and the cosign signing report back.
            outputs["digest"] = DIGEST
            if "public_key" in outputs:
                outputs["signature_ref"] = "signed.sig"
                outputs["sbom_attestation_ref"] = "signed.att"
                outputs["sbom_packages"] = 3
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise AssertionError(f"unexpected invoke {args.token}")


def is_secret_wrapper(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


def plaintext(value: Any, sentinel: str) -> bool:
    """Whether ``sentinel`` occurs in ``value`` outside a secret wrapper (as mocks receive inputs)."""
    if is_secret_wrapper(value):
        return False
    if isinstance(value, dict):
        return any(plaintext(item, sentinel) for item in value.values())
    if isinstance(value, list):
        return any(plaintext(item, sentinel) for item in value)
    return isinstance(value, str) and sentinel in value


mocks = Mocks()
pulumi.runtime.set_mocks(mocks, project="payments", stack="dev", preview=False)
report: dict[str, Any] = {"components_file": dockyard_components.__file__}
try:
    import dockyard  # noqa: F401  (the Dockyard CLI is not a dependency of the components)

    report["dockyard_cli_importable"] = True
except ImportError:
    report["dockyard_cli_importable"] = False


@pulumi.runtime.test
async def every_component() -> None:
    registry = ContainerRegistry(
        "registry",
        {
            "kind": RegistryKind.SELF_HOSTED,
            "server": "registry.payments.example:5000",
            "repository": "payments/api",
            "username": "ci",
            "password": pulumi.Output.secret(PASSWORD),
        },
    )
    assert registry.password is not None
    assert registry.docker_config_json is not None
    image = AppImage(
        "image",
        {
            "image_name": registry.image_name,
            "registry_server": registry.server,
            "username": registry.username,
            "password": registry.password,
            "tags": ["v1.2.3", "main"],
            "builder": Builder.PODMAN,
            "context": sys.argv[1],
            "target": "runtime",
            "test_target": "test",
            "build_args": {"BASE": "scratch"},
        },
    )
    signed = SignedImage(
        "signed",
        {
            "image_ref": image.ref,
            "registry_server": registry.server,
            "username": registry.username,
            "password": registry.password,
            "private_key": pulumi.Output.secret("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"),
            "key_password": pulumi.Output.secret("key-password"),
            "public_key": "-----BEGIN PUBLIC KEY-----",
        },
    )
    app = KubernetesApp(
        "payments",
        {
            "namespace": "payments-dev",
            "image": image.ref,
            "tier": Tier.DEV,
            "replicas": 4,
            "strategy": {"type": StrategyType.CANARY, "weight": 25, "canary_image": CANARY_REF},
            "ingress": {"host": "payments.example.com"},
            "app_secrets": {"API_KEY": pulumi.Output.secret(APP_SECRET)},
            "docker_config_json": registry.docker_config_json,
        },
    )
    CiPipeline(
        "ci",
        {
            "repository": "acme/payments",
            "stack": "dev",
            "secrets": {"PULUMI_CONFIG_PASSPHRASE": pulumi.Output.secret("passphrase")},
            "variables": {"NAMESPACE": "payments-dev"},
        },
    )
    report["password_is_secret"] = await registry.password.is_secret()
    report["docker_config_json_is_secret"] = await registry.docker_config_json.is_secret()
    report["image_ref"] = await image.ref.future()
    report["signature_ref"] = await signed.signature_ref.future()
    report["app_url"] = await app.url.future()
    report["tracks"] = sorted(app.deployments)


def bad_canary_weight() -> None:
    @pulumi.runtime.test
    def deploy() -> None:
        KubernetesApp(
            "payments",
            {
                "namespace": "payments-dev",
                "image": CANARY_REF,
                "strategy": {"type": StrategyType.CANARY, "weight": 150},
            },
        )

    try:
        deploy()
    except ValueError as error:
        report["error"] = {"type": type(error).__name__, "message": str(error)}


if sys.argv[2] == "ok":
    every_component()
else:
    bad_canary_weight()

report["resources"] = [
    {
        "type": r.typ,
        "name": r.name,
        "inputs": dict(r.inputs),
        "secret_password_plaintext": plaintext(dict(r.inputs), PASSWORD),
        "secret_app_plaintext": plaintext(dict(r.inputs), APP_SECRET),
    }
    for r in mocks.resources
]
print(json.dumps(report, default=str))
