"""Another team adopts the components: a fresh virtualenv outside the repository with only the
``dockyard-components`` wheel (and its dependencies) installed, and a Pulumi program of its own that builds the app
with podman, pushes it to the local registry and deploys it to the local cluster on the real engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.engine.harness import LOCAL_CONTEXT, SESSION, Workspace, configure_stack, kubectl, outside_workspace
from tests.stacks import PROJECT
from tests.unit.test_packaging import build_components_wheel

pytestmark = pytest.mark.engine

STACK = "dev"
#: The local base-image stand-ins the local stacks build with (Pulumi.local.yaml, dockyard:image.build.buildArgs).
BUILD_ARGS = yaml.safe_load((PROJECT / "Pulumi.local.yaml").read_text())["config"]["dockyard:image"]["build"][
    "buildArgs"
]


def run(
    *command: str | Path, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    assert completed.returncode == 0, f"{command} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    return completed


@pytest.fixture(scope="module")
def consumer_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with the built wheel installed; dependencies resolved by pip (PyPI or its cache), held to
    the versions CI tests (the checkout's virtualenv) so the engine's provider plugins match."""
    root = tmp_path_factory.mktemp("adoption-venv")
    wheel = build_components_wheel(root / "wheel")
    venv = root / "venv"
    run(sys.executable, "-m", "venv", venv)
    constraints = root / "constraints.txt"
    frozen = run(sys.executable, "-m", "pip", "freeze", "--exclude-editable").stdout
    constraints.write_text("\n".join(line for line in frozen.splitlines() if "==" in line) + "\n")
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", "-c", constraints, wheel, timeout=900, env=clean)
    return venv


def test_the_fresh_virtualenv_holds_the_components_and_not_the_cli(consumer_venv: Path) -> None:
    python = consumer_venv / "bin" / "python"
    shown = run(python, "-m", "pip", "show", "dockyard-components").stdout
    assert "Name: dockyard-components" in shown
    assert "Version: 0.2.0" in shown
    where = run(python, "-I", "-c", "import dockyard_components; print(dockyard_components.__file__)").stdout.strip()
    assert Path(where).is_relative_to(consumer_venv), where
    cli = subprocess.run(
        [str(python), "-I", "-c", "import dockyard"], capture_output=True, text=True, timeout=60, check=False
    )
    assert cli.returncode != 0
    assert "No module named 'dockyard'" in cli.stderr
    docker = subprocess.run(
        [str(python), "-I", "-c", "import pulumi_docker"], capture_output=True, text=True, timeout=60, check=False
    )
    assert docker.returncode != 0, "pulumi-docker is only the docker extra's"


@pytest.fixture(scope="module")
def program(
    engine: str, local_services: dict[str, str], consumer_venv: Path, tmp_path_factory: pytest.TempPathFactory
) -> Workspace:
    """The team's project: Pulumi.yaml naming the fresh virtualenv, the app's sources, a file backend of its own."""
    root = tmp_path_factory.mktemp("adoption")
    directory = root / "payments"
    directory.mkdir()
    shutil.copy(PROJECT / "examples" / "python-app" / "__main__.py", directory / "__main__.py")
    shutil.copytree(PROJECT / "app", directory / "app", ignore=shutil.ignore_patterns("bin", "tmp", "*.test"))
    (directory / "Pulumi.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "payments",
                "runtime": {"name": "python", "options": {"toolchain": "pip", "virtualenv": str(consumer_venv)}},
            },
            sort_keys=False,
        )
    )
    workspace = outside_workspace(directory, root, local_services)
    settings = {
        "registryServer": local_services["DOCKYARD_REGISTRY"],
        "registryUser": local_services["DOCKYARD_REGISTRY_USER"],
        "repository": "adoption/payments",
        "tag": f"adoption-{SESSION}",
        "kubeContext": LOCAL_CONTEXT,
        "namespace": f"payments-{SESSION}-adoption",
        **{f"buildArgs.{name}": value for name, value in BUILD_ARGS.items()},
    }
    configure_stack(workspace, STACK, settings, {"registryPassword": local_services["DOCKYARD_REGISTRY_PASSWORD"]})
    return workspace


@pytest.fixture(scope="module")
def deployed(program: Workspace) -> Workspace:
    program.pulumi("up", "--yes", "--stack", STACK, timeout=1200)
    return program


def test_up_deploys_the_digest_pinned_image(deployed: Workspace) -> None:
    outputs = deployed.outputs(STACK)
    image_ref = outputs["image_ref"]
    name, digest = image_ref.split("@")
    assert name == f"{deployed.env['DOCKYARD_REGISTRY']}/adoption/payments"
    assert digest.startswith("sha256:")
    assert len(digest) == len("sha256:") + 64
    namespace = outputs["namespace"]
    assert namespace == f"payments-{SESSION}-adoption"
    items = kubectl(deployed, "get", "deployments", "-n", namespace, "-o", "json").json()["items"]
    assert {d["metadata"]["name"] for d in items} == set(outputs["deployments"].values())
    images = {c["image"] for d in items for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {image_ref}
    assert all(d["status"].get("readyReplicas") == 1 for d in items), [d["status"] for d in items]
    assert deployed.env["DOCKYARD_REGISTRY_PASSWORD"] not in deployed.pulumi("stack", "export", "--stack", STACK).stdout


def test_a_second_run_changes_nothing(deployed: Workspace) -> None:
    deployed.pulumi("preview", "--expect-no-changes", "--stack", STACK, timeout=600)
