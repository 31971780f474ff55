"""The real engine: every committed stack previews, the local stacks deploy, state keeps secrets, bad config stops."""

from __future__ import annotations

import base64
import json
import ssl
import stat
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dockyard.model.config import environment_from_file
from dockyard.model.credentials import RegistryCredentials
from dockyard.model.trust import TrustCache, TrustPolicy
from dockyard.releases.registry_client import MANIFEST_TYPES, manifest_exists
from tests.engine.harness import (
    Workspace,
    accepted_release,
    declared,
    deployment_images,
    kubectl,
    live,
    namespace_of,
    set_stack_config,
)
from tests.k8s_schema import schema_errors
from tests.stacks import STACKS

pytestmark = pytest.mark.engine

APP_SECRET = "sentinel-engine-app-secret"
#: A build secret of local's build (image.build.secrets): given to podman as a file, kept only encrypted in state.
BUILD_SECRET = "sentinel-engine-build-secret"
#: The demo values committed (encrypted) in Pulumi.local.yaml and Pulumi.local-prod.yaml.
COMMITTED_SECRETS = {"local": "demo-local-api-key", "local-prod": "demo-local-prod-api-key"}
EXPECTED_TYPES = {
    "local": {"pulumi-python:dynamic:Resource", "kubernetes:apps/v1:Deployment"},
    # No release yet: no Deployment (nor its autoscaler) until a promotion writes one.
    "local-staging": set(),
    "local-prod": {"kubernetes:policy/v1:PodDisruptionBudget"},
    "dev": {"kubernetes:apps/v1:Deployment", "kubernetes:networking.k8s.io/v1:Ingress"},
    "qa": {"kubernetes:apps/v1:Deployment", "kubernetes:networking.k8s.io/v1:Ingress"},
    "staging": {"kubernetes:apps/v1:Deployment", "kubernetes:networking.k8s.io/v1:Ingress"},
    "prod": {"kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "kubernetes:policy/v1:PodDisruptionBudget"},
}


def step_types(preview: dict[str, Any]) -> list[str]:
    return [step["urn"].split("::")[-2].split("$")[-1] for step in preview.get("steps", [])]


@pytest.mark.parametrize("stack", STACKS)
def test_every_committed_stack_previews_without_credentials_and_passes_the_policies(
    stack: str, workspace: Workspace
) -> None:
    workspace.init(stack)
    # The local cluster's kubeconfig is how the local stacks find their cluster, not a credential of theirs;
    # the real stacks preview against clusters this machine cannot reach.
    secrets = (
        ("DOCKYARD_REGISTRY", "GHCR") if stack.startswith("local") else ("DOCKYARD_REGISTRY", "GHCR", "KUBECONFIG")
    )
    workspace.env = {k: v for k, v in workspace.env.items() if not k.startswith(secrets)}
    # The real stacks trust a keyless identity, which verifies online only (Fulcio, Rekor): their committed digests
    # stand accepted in the trust cache, as an earlier online check leaves them. The check is test_supply_chain's.
    env = environment_from_file(workspace.directory, stack)
    if env.signing is not None and not env.signs_with_key:
        policy = TrustPolicy.of(stack, env.signing, workspace.directory)
        for image in env.running_images.values():
            TrustCache(Path(workspace.env["DOCKYARD_TRUST_CACHE"])).remember(policy, image)
    # The delivery policy pack runs on every preview; a mandatory violation would fail it.
    preview = workspace.pulumi("preview", "--stack", stack, "--json", "--policy-pack", "policies").json()
    types = step_types(preview)
    assert EXPECTED_TYPES[stack] <= set(types), f"{stack} preview lacks {EXPECTED_TYPES[stack] - set(types)}"
    assert {
        "kubernetes:core/v1:Namespace",
        "kubernetes:core/v1:Service",
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
    } <= set(types)
    deployments = types.count("kubernetes:apps/v1:Deployment")
    assert deployments == {"prod": 2, "local-staging": 0, "local-prod": 0}.get(stack, 1)
    errors = [d for d in preview.get("diagnostics", []) if d.get("severity") == "error"]
    assert not errors


def test_the_language_host_names_the_projects_python(workspace: Workspace) -> None:
    """What the engine records of the runtime (``pulumi about``, asked on every update) comes from our language
    host's About: the project's virtualenv Python and its version, from one Python run."""
    workspace.init("local")
    runtime = workspace.pulumi("about", "--json", "--stack", "local").json()["runtime"]
    venv_python = workspace.directory / ".venv" / "bin" / "python"
    assert runtime["language"] == "python"
    assert runtime["languageHost"].startswith("dockyard v")
    assert Path(runtime["executable"]) == venv_python
    assert runtime["version"] == "{}.{}.{}".format(*sys.version_info[:3]), "the .venv's Python runs these tests too"


def test_invalid_config_stops_with_one_clear_error_and_registers_nothing(workspace: Workspace) -> None:
    stack_file = workspace.stack_file("local")
    document = yaml.safe_load(stack_file.read_text())
    document["config"]["dockyard:kubernetes"]["replicas"] = 0
    document["config"]["dockyard:kubernetes"]["replica"] = 2
    document["config"]["dockyard:image"]["build"]["builder"] = "kaniko"
    stack_file.write_text(yaml.safe_dump(document))
    workspace.init("local")
    result = workspace.pulumi("up", "--stack", "local", "--yes", check=False)
    assert result.returncode != 0
    assert "invalid Dockyard configuration (3 problem(s))" in result.output
    assert (
        "local: dockyard:kubernetes.replicas: found 0; allowed: input should be greater than or equal to 1"
        in result.output
    )
    assert "local: dockyard:kubernetes.replica: unknown key; allowed keys:" in result.output
    assert "local: dockyard:image.build.builder: found 'kaniko'; allowed:" in result.output
    assert "Traceback" not in result.output
    resources = workspace.export("local")["deployment"].get("resources") or []
    assert [r["type"] for r in resources if r["type"] != "pulumi:pulumi:Stack"] == []


@pytest.fixture(scope="module")
def deployed(local_workspace: Workspace) -> Workspace:
    """local and local-prod deployed once, with an extra secret set on each (builds are slow); local-prod's blue
    color runs local's signed build (a hand edit its trust policy accepts)."""
    for stack in ("local", "local-prod"):
        if stack == "local-prod":
            built = local_workspace.outputs("local")["image_ref"]
            set_stack_config(local_workspace, stack, ["kubernetes", "strategy", "blueImage"], built)
        local_workspace.init(stack)
        local_workspace.pulumi(
            "config",
            "set",
            "--secret",
            "--path",
            "dockyard:appSecrets.EXTRA_TOKEN",
            "--stack",
            stack,
            stdin=APP_SECRET,
        )
        if stack == "local":
            set_stack_config(local_workspace, stack, ["image", "build", "secrets"], ["engine_token"])
            local_workspace.pulumi(
                "config",
                "set",
                "--secret",
                "--path",
                "dockyard:buildSecrets.engine_token",
                "--stack",
                stack,
                stdin=BUILD_SECRET,
            )
        local_workspace.pulumi("up", "--stack", stack, "--yes", timeout=2400)
    return local_workspace


class TestLocalStacks:
    """`pulumi up` of local and local-prod against the real registry and builder (shared workspace: builds are slow)."""

    def test_local_pushes_the_digest_it_outputs(self, deployed: Workspace) -> None:
        image_ref = deployed.outputs("local")["image_ref"]
        name, digest = image_ref.split("@")
        env = deployed.env
        credentials = RegistryCredentials(
            env["DOCKYARD_REGISTRY_USER"], env["DOCKYARD_REGISTRY_PASSWORD"], env["DOCKYARD_REGISTRY_CA"]
        )
        assert manifest_exists(image_ref, credentials)
        build = next(
            r
            for r in deployed.export("local")["deployment"]["resources"]
            if r["type"] == "pulumi-python:dynamic:Resource" and r["urn"].endswith("image-podman-build")
        )
        tag = build["outputs"]["tags"][0]
        # The test run's JUnit report, beside the build log, is an output of the build.
        assert 'name="TestHealthOK"' in (Path(build["outputs"]["test_reports"]) / "junit.xml").read_text()
        registry, repository = name.split("/", 1)
        response = httpx.head(
            f"https://{registry}/v2/{repository}/manifests/{tag}",
            headers={"Accept": MANIFEST_TYPES},
            auth=(credentials.username, credentials.password or ""),
            verify=ssl.create_default_context(cafile=credentials.ca_file) if credentials.ca_file else True,
            timeout=10,
        )
        assert response.headers["docker-content-digest"] == digest

    @pytest.mark.parametrize("stack", ["local", "local-prod"])
    def test_live_objects_are_valid_and_pinned_to_the_output_digest(self, deployed: Workspace, stack: str) -> None:
        kinds = "deployments,services,secrets,networkpolicies"
        namespace = namespace_of(deployed, stack)
        objects = kubectl(deployed, "get", kinds, "-n", namespace, "-o", "json").json()["items"]
        objects += [kubectl(deployed, "get", "namespace", namespace, "-o", "json").json()]
        assert {o["kind"] for o in objects} >= {"Namespace", "Deployment", "Service", "Secret", "NetworkPolicy"}
        errors = [e for o in objects for e in schema_errors(declared(o))]
        assert not errors
        assert deployment_images(deployed, stack) == {deployed.outputs(stack)["image_ref"]}

    @pytest.mark.parametrize("stack", ["local", "local-prod"])
    def test_state_holds_no_secret_in_plaintext(self, deployed: Workspace, stack: str) -> None:
        exported = deployed.pulumi("stack", "export", "--stack", stack).stdout
        assert APP_SECRET not in exported
        assert BUILD_SECRET not in exported
        assert COMMITTED_SECRETS[stack] not in exported
        assert deployed.env["DOCKYARD_REGISTRY_PASSWORD"] not in exported
        history = deployed.pulumi("stack", "history", "--stack", stack, "--json").stdout
        assert APP_SECRET not in history
        assert BUILD_SECRET not in history
        if stack == "local":  # the build had it: its input is there, encrypted
            build = next(
                r for r in json.loads(exported)["deployment"]["resources"] if r["urn"].endswith("image-podman-build")
            )
            assert build["inputs"]["secret_ids"] == ["engine_token"]
            assert build["inputs"]["secrets"]["4dabf18193072939515e22adb298388d"] == "1b47061264138c4ac30d75fd1eb44270"

    def test_live_secret_holds_the_decrypted_values_only_in_the_cluster(self, deployed: Workspace) -> None:
        (secret,) = [s for s in live(deployed, "local", "secrets").values() if s["type"] == "Opaque"]
        values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert values == {"API_KEY": COMMITTED_SECRETS["local"], "EXTRA_TOKEN": APP_SECRET}


def test_render_mode_writes_private_valid_pinned_manifests(workspace: Workspace) -> None:
    """Render mode stays for teams that hand manifests to GitOps: no cluster, files owner-only, digest-pinned."""
    stack_file = workspace.stack_file("local-prod")
    document = yaml.safe_load(stack_file.read_text())
    kubernetes = document["config"]["dockyard:kubernetes"]
    kubernetes["mode"] = "render"
    del kubernetes["context"], kubernetes["namespace"]
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
    release = accepted_release(workspace, "local-prod", ["kubernetes", "strategy", "blueImage"])
    assert workspace.env["KUBECONFIG"], "rendering works with a KUBECONFIG in the environment"
    workspace.init("local-prod")
    workspace.pulumi("up", "--stack", "local-prod", "--yes")
    directory = workspace.directory / "rendered" / "local-prod"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    manifests = [d for path in sorted(directory.rglob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]
    assert {m["kind"] for m in manifests} >= {"Namespace", "Deployment", "Service", "Secret", "HorizontalPodAutoscaler"}
    assert not [e for m in manifests for e in schema_errors(m)]
    deployments = [m for m in manifests if m["kind"] == "Deployment"]
    images = {c["image"] for m in deployments for c in m["spec"]["template"]["spec"]["containers"]}
    assert images == {workspace.outputs("local-prod")["image_ref"]} == {release}
    ignored = (Path(__file__).resolve().parents[2] / ".gitignore").read_text().splitlines()
    assert "rendered/" in ignored, "rendered Secrets never reach git"
