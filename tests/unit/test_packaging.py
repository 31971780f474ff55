"""Another team's program uses the components from an installed wheel of this repository, typed (py.typed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.stacks import PROJECT

CONSUMER = textwrap.dedent(
    '''
    """A separate team's program: one KubernetesApp from the installed Dockyard components, under mocks."""
    import pulumi
    import components
    from dockyard.config import KubernetesConfig
    from dockyard_components.kubernetes_app import KubernetesApp


    class Mocks(pulumi.runtime.Mocks):
        created: list[str] = []

        def new_resource(self, args):
            Mocks.created.append(args.typ)
            return f"{args.name}-id", args.inputs

        def call(self, args):
            raise AssertionError(f"unexpected invoke {args.token}")


    pulumi.runtime.set_mocks(Mocks(), project="payments", stack="dev", preview=False)


    @pulumi.runtime.test
    def deploy():
        settings = KubernetesConfig.model_validate({"mode": "render", "replicas": 2})
        KubernetesApp("payments", {"stack": "dev", "tier": "dev", "namespace": "payments-dev", "settings": settings,
                                   "image": "ghcr.io/acme/payments@sha256:" + "a" * 64, "app_secrets": None,
                                   "docker_config_json": None})


    deploy()
    assert "kubernetes:apps/v1:Deployment" in Mocks.created, Mocks.created
    print("from", dockyard_components.__file__)
    '''
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(root / "dist"),
            str(PROJECT),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = (root / "dist").glob("dockyard-*.whl")
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        timeout=300,
    )
    return site


def test_wheel_ships_the_typed_package_and_its_build_script(installed: Path) -> None:
    assert (installed / "components" / "py.typed").is_file()
    assert (installed / "components" / "scripts" / "podman-build.sh").is_file()
    assert not (installed / "tests").exists()


def test_a_separate_program_imports_and_uses_the_installed_components(installed: Path, tmp_path: Path) -> None:
    program = tmp_path / "consumer" / "__main__.py"
    program.parent.mkdir()
    program.write_text(CONSUMER)
    # Only the wheel's copy of `components` is importable: the checkout is neither cwd nor on the path.
    env = {"PYTHONPATH": str(installed), "PATH": str(Path(sys.executable).parent)}
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(installed)!r}); exec(open({str(program)!r}).read())",
        ],
        cwd=program.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"from {installed}/components/__init__.py" in result.stdout
