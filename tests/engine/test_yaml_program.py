"""Cross-language: the Pulumi YAML program in examples/yaml-app adds Dockyard's components with
``pulumi package add`` (the component provider in components/, PulumiPlugin.yaml), previews the components and
their children, builds the app with podman, pushes it to the local registry and deploys it to the local cluster;
a second preview shows no change. The YAML language host is the one scripts/bootstrap-engine.sh builds."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.engine.harness import LOCAL_CONTEXT, SESSION, Workspace, configure_stack, kubectl, outside_workspace
from tests.stacks import PROJECT

pytestmark = pytest.mark.engine

STACK = "dev"
EXAMPLE = PROJECT / "examples" / "yaml-app"
#: The local base-image stand-ins the local stacks build with (Pulumi.local.yaml, dockyard:image.build.buildArgs).
BUILD_ARGS = yaml.safe_load((PROJECT / "Pulumi.local.yaml").read_text())["config"]["dockyard:image"]["build"][
    "buildArgs"
]


def copy_tree(source: Path, target: Path) -> None:
    ignored = shutil.ignore_patterns("venv", "build", "*.egg-info", "__pycache__", "sdks")
    shutil.copytree(source, target, ignore=ignored)


@pytest.fixture(scope="module")
def program(engine: str, local_services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The example as a team checks it out: components/, app/ and examples/yaml-app/ side by side, with the
    ``packages:`` entry removed so that ``pulumi package add`` has to write it."""
    root = tmp_path_factory.mktemp("yaml")
    copy_tree(PROJECT / "components", root / "components")
    copy_tree(PROJECT / "app", root / "app")
    directory = root / "examples" / "yaml-app"
    copy_tree(EXAMPLE, directory)
    project = yaml.safe_load((directory / "Pulumi.yaml").read_text())
    assert project.pop("packages") == {"dockyard": "../../components"}
    (directory / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))

    # Nothing of the checkout's Python: the components run in the provider's own venv, made by the engine.
    workspace = outside_workspace(directory, root, local_services)
    workspace.pulumi("package", "add", "../../components", timeout=900)
    settings = {
        "registryServer": local_services["DOCKYARD_REGISTRY"],
        "registryUser": local_services["DOCKYARD_REGISTRY_USER"],
        "kubeContext": LOCAL_CONTEXT,
        "namespace": f"yaml-app-{SESSION}-yaml",
        "builderImage": BUILD_ARGS["BUILDER_IMAGE"],
        "runtimeImage": BUILD_ARGS["RUNTIME_IMAGE"],
    }
    configure_stack(workspace, STACK, settings, {"registryPassword": local_services["DOCKYARD_REGISTRY_PASSWORD"]})
    return workspace


def test_package_add_resolves_the_components_into_their_own_venv(program: Workspace) -> None:
    project = yaml.safe_load((program.directory / "Pulumi.yaml").read_text())
    assert project["packages"] == {"dockyard": "../../components"}
    python = program.directory.parents[1] / "components" / "venv" / "bin" / "python"
    imported = subprocess.run(
        [str(python), "-I", "-c", "import dockyard_components, pulumi_kubernetes; print(dockyard_components.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "components/dockyard_components/__init__.py" in imported.stdout
    for absent in ("dockyard", "pulumi_github", "pulumi_docker"):
        missing = subprocess.run([str(python), "-I", "-c", f"import {absent}"], capture_output=True, timeout=60)
        assert missing.returncode != 0, f"{absent} is not a dependency of what the YAML program uses"


@pytest.fixture(scope="module")
def previewed(program: Workspace) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = program.pulumi("preview", "--stack", STACK, "--json", timeout=900).json()["steps"]
    return steps


def test_preview_shows_the_components_and_their_children(previewed: list[dict[str, Any]]) -> None:
    by_name = {step["urn"].split("::")[-1]: step for step in previewed}
    for name, token in (
        ("registry", "dockyard:index:ContainerRegistry"),
        ("image", "dockyard:index:AppImage"),
        ("app", "dockyard:index:KubernetesApp"),
    ):
        assert by_name[name]["newState"]["type"] == token
    app_urn = by_name["app"]["urn"]
    assert by_name["app-stable"]["newState"]["type"] == "kubernetes:apps/v1:Deployment"
    assert by_name["app-stable"]["newState"]["parent"] == app_urn
    assert by_name["image-podman-build"]["newState"]["parent"] == by_name["image"]["urn"]
    # The explicit provider of the program reaches the component's Kubernetes children.
    assert "::cluster::" in by_name["app-stable"]["newState"]["provider"]


@pytest.fixture(scope="module")
def deployed(program: Workspace, previewed: list[dict[str, Any]]) -> Workspace:
    program.pulumi("up", "--yes", "--stack", STACK, timeout=1200)
    return program


def test_up_deploys_the_digest_pinned_build_to_the_cluster(deployed: Workspace) -> None:
    image_ref = deployed.outputs(STACK)["imageRef"]
    assert image_ref.startswith(f"{deployed.env['DOCKYARD_REGISTRY']}/examples/yaml-app@sha256:")
    namespace = f"yaml-app-{SESSION}-yaml"
    deployment = kubectl(deployed, "get", "deployment", "yaml-app-stable", "-n", namespace, "-o", "json").json()
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image_ref
    assert deployment["status"].get("readyReplicas") == 2


def test_the_registry_password_stays_secret_in_state(deployed: Workspace) -> None:
    state = deployed.pulumi("stack", "export", "--stack", STACK).output
    assert deployed.env["DOCKYARD_REGISTRY_PASSWORD"] not in state


def test_a_second_preview_shows_no_change(deployed: Workspace) -> None:
    deployed.pulumi("preview", "--stack", STACK, "--expect-no-changes", timeout=900)
