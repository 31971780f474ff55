"""The components as their own distribution: the ``dockyard-components`` wheel, and a separate team's program that
uses every public component from an install of it (never from the checkout), with plain Pulumi Inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path
from typing import Any

import pytest

from tests.stacks import PROJECT

COMPONENTS = PROJECT / "components"
#: The consumer programs (plain files, so they read as what another team would write).
ADOPTION = PROJECT / "tests" / "adoption"
#: The dependencies of the installed wheel: the virtualenv's site-packages (its .pth files are not processed, so
#: the editable installs of the checkout stay out of reach).
DEPENDENCIES = Path(sysconfig.get_paths()["purelib"])
#: Importable from the checkout's virtualenv but not dependencies of the components (the dockyard program's own).
UNDECLARED = {"kubernetes", "typer", "matplotlib", "prometheus_client", "pulumi_docker", "pulumi_policy", "dockyard"}
#: Runs the consumer with ``sys.path`` = the standard library, the wheel's install directory and the dependencies;
#: the checkout's virtualenv also holds what only the dockyard program depends on: refused here, as in an environment
#: with nothing but the wheel's declared dependencies.
BOOTSTRAP = """
import runpy
import sys


class Undeclared:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in {undeclared!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}: not a declared dependency of dockyard-components")
        return None


sys.path[:0] = {path!r}
sys.meta_path.insert(0, Undeclared)
sys.argv = {argv!r}
runpy.run_path(sys.argv[0], run_name="__main__")
"""
REGISTRY_PASSWORD = "sentinel-registry-password"
APP_SECRET = "sentinel-app-secret"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
DYNAMIC = "pulumi-python:dynamic:Resource"


def build_components_wheel(directory: Path) -> Path:
    """``pip wheel`` of a copy of ``components/`` (the checkout gets no build/ or egg-info from the test)."""
    source = directory / "src"
    shutil.copytree(
        COMPONENTS, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "*.pyc", "dist")
    )
    dist = directory / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = dist.glob("dockyard_components-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_components_wheel(tmp_path_factory.mktemp("components-wheel"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("installed") / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    return site


def metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(archive.read(name).decode())


def requirement_name(requirement: str) -> str:
    name = requirement.split(";")[0].strip()
    for separator in "<>=!~[ (":
        name = name.split(separator)[0]
    return name.lower().replace("_", "-")


# --- the wheel --------------------------------------------------------------------------------------------------


def test_wheel_ships_the_typed_package_and_its_build_script_only(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "dockyard_components/py.typed" in names
    assert "dockyard_components/scripts/podman-build.sh" in names
    assert "dockyard_components/scripts/build_guard.py" in names
    top_level = {n.split("/")[0] for n in names}
    assert top_level == {"dockyard_components", wheel.name.split("-py3")[0] + ".dist-info"}, top_level
    assert not [n for n in names if "test" in n.split("/")[0] or "/tests/" in n or n.startswith("tests/")]
    assert not [n for n in names if n.startswith("dockyard/")], "the dockyard CLI package belongs to dockyard"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_metadata_declares_an_uncapped_python_and_only_the_components_dependencies(wheel: Path) -> None:
    meta = metadata(wheel)
    assert meta["Name"] == "dockyard-components"
    assert meta["Requires-Python"] == ">=3.11"
    requirements = meta.get_all("Requires-Dist") or []
    unconditional = {requirement_name(r) for r in requirements if "extra ==" not in r}
    # docker: docker-py's .dockerignore matcher decides what a build sends (and so when it rebuilds).
    assert unconditional == {"pulumi", "pulumi-kubernetes", "pydantic", "httpx", "semver", "docker"}
    assert not unconditional & {"matplotlib", "typer", "kubernetes", "pulumi-docker", "pulumi-github", "dockyard"}
    extras = {requirement_name(r): r.split(";", 1)[1].strip() for r in requirements if "extra ==" in r}
    assert extras == {"pulumi-docker": 'extra == "docker"', "pulumi-github": 'extra == "github"'}
    assert meta.get_all("Provides-Extra") == ["docker", "github"]


# --- a separate program, from the install ----------------------------------------------------------------------


def run_consumer(installed: Path, tmp_path: Path, mode: str) -> dict[str, Any]:
    """tests/adoption/mocked_program.py copied outside the repository, run isolated (``-I -S``): ``sys.path`` is
    the standard library, the wheel's install directory and the dependencies, nothing else."""
    program = tmp_path / "payments" / "__main__.py"
    program.parent.mkdir()
    shutil.copy(ADOPTION / "mocked_program.py", program)
    context = tmp_path / "payments" / "app"
    context.mkdir()
    (context / "Dockerfile").write_text("ARG BASE\nFROM ${BASE} AS test\nFROM ${BASE} AS runtime\nCOPY main.go /\n")
    (context / "main.go").write_text("package main\n")
    bootstrap = tmp_path / "bootstrap.py"
    bootstrap.write_text(
        BOOTSTRAP.format(
            path=[str(installed), str(DEPENDENCIES)],
            undeclared=sorted(UNDECLARED),
            argv=[str(program), str(context), mode],
        )
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(bootstrap)],
        cwd=program.parent,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-6000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def of_type(report: dict[str, Any], typ: str) -> list[dict[str, Any]]:
    return [r for r in report["resources"] if r["type"] == typ]


def is_secret(value: Any) -> bool:
    return (
        isinstance(value, dict) and value.get("4dabf18193072939515e22adb298388d") == "1b47061264138c4ac30d75fd1eb44270"
    )


@pytest.fixture(scope="module")
def consumer(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_consumer(installed, tmp_path_factory.mktemp("consumer"), "ok")


def test_the_consumer_imports_the_installed_components_not_the_checkout(
    consumer: dict[str, Any], installed: Path
) -> None:
    assert consumer["components_file"] == str(installed / "dockyard_components" / "__init__.py")
    assert consumer["dockyard_cli_importable"] is False


def test_every_public_component_creates_its_resources(consumer: dict[str, Any]) -> None:
    types = {r["type"] for r in consumer["resources"]}
    assert {
        "dockyard:index:ContainerRegistry",
        "dockyard:index:AppImage",
        "dockyard:index:SignedImage",
        "dockyard:index:KubernetesApp",
        "dockyard:index:CiPipeline",
        DYNAMIC,
        "kubernetes:core/v1:Namespace",
        DEPLOYMENT,
        "kubernetes:core/v1:Service",
        "kubernetes:networking.k8s.io/v1:Ingress",
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "kubernetes:policy/v1:PodDisruptionBudget",
        "github:index/repositoryEnvironment:RepositoryEnvironment",
        "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret",
        "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable",
    } <= types, types
    # The podman builder is the dynamic resource; no pulumi-docker resource without the docker extra.
    assert not [t for t in types if t.startswith("docker:")]
    assert {r["name"] for r in of_type(consumer, DYNAMIC)} == {"image-podman-build", "signed-cosign"}


def test_the_canary_runs_digest_pinned_images_on_two_tracks(consumer: dict[str, Any]) -> None:
    release = consumer["image_ref"]
    assert release == "registry.payments.example:5000/payments/api@sha256:" + "ab" * 32
    assert consumer["tracks"] == ["canary", "stable"]
    images = {
        d["name"]: [c["image"] for c in d["inputs"]["spec"]["template"]["spec"]["containers"]]
        for d in of_type(consumer, DEPLOYMENT)
    }
    assert images == {
        "payments-stable": [release],
        "payments-canary": ["registry.payments.example:5000/payments/api@sha256:" + "cd" * 32],
    }
    replicas = {d["name"]: d["inputs"]["spec"]["replicas"] for d in of_type(consumer, DEPLOYMENT)}
    assert replicas == {"payments-stable": 3, "payments-canary": 1}
    canary_ingresses = [
        i["inputs"]["metadata"].get("annotations") or {}
        for i in of_type(consumer, "kubernetes:networking.k8s.io/v1:Ingress")
    ]
    assert {"nginx.ingress.kubernetes.io/canary": "true", "nginx.ingress.kubernetes.io/canary-weight": "25"} in (
        canary_ingresses
    )
    assert consumer["signature_ref"] == "signed.sig"


def test_credentials_stay_secret_from_the_registry_to_the_cluster(consumer: dict[str, Any]) -> None:
    assert consumer["password_is_secret"] is True
    assert consumer["docker_config_json_is_secret"] is True
    assert not [r["name"] for r in consumer["resources"] if r["secret_password_plaintext"]]
    assert not [r["name"] for r in consumer["resources"] if r["secret_app_plaintext"]]
    (pull_secret,) = [
        s
        for s in of_type(consumer, "kubernetes:core/v1:Secret")
        if s["inputs"]["type"] == "kubernetes.io/dockerconfigjson"
    ]
    string_data = pull_secret["inputs"]["stringData"]
    # The whole stringData, or its one key, travels as a secret.
    assert is_secret(string_data) or is_secret(string_data[".dockerconfigjson"]), string_data
    (build,) = [r for r in of_type(consumer, DYNAMIC) if r["name"] == "image-podman-build"]
    assert is_secret(build["inputs"]["password"])
    assert build["inputs"]["target"] == "runtime"
    assert build["inputs"]["test_target"] == "test"
    assert build["inputs"]["build_args"] == {"BASE": "scratch"}


def test_an_out_of_range_canary_weight_is_one_clear_error(installed: Path, tmp_path: Path) -> None:
    report = run_consumer(installed, tmp_path, "bad-canary-weight")
    error = report.get("error")
    assert error is not None, "KubernetesApp accepted strategy.weight 150"
    assert error["type"] == "ValueError"
    message = error["message"]
    assert message.startswith("KubernetesApp payments: invalid arguments: "), message
    problems = message.removeprefix("KubernetesApp payments: invalid arguments: ").split("; ")
    assert len(problems) == 1, problems
    assert problems[0].startswith("strategy.canary.weight") or problems[0].startswith("strategy.weight"), problems
    assert "100" in problems[0]
    # Refused before anything of the app was registered.
    assert not [r for r in report["resources"] if r["type"].startswith("kubernetes:")]
