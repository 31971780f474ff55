"""Upgrading across the rename: a stack deployed by the release before ``dockyard_components`` existed (the
components were the ``components`` package) previews with no replacement, and no change but the namespace's trust
policy for admission (new in this release), on this release."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.engine.harness import SESSION, Workspace, isolate_namespaces, make_workspace, set_stack_config
from tests.stacks import PROJECT

#: The last commit before the components became the ``dockyard-components`` distribution (Dockyard 0.1.0).
BEFORE_RENAME = "ef8eefd21c8f006d19da647fc25be49e613c1c57"
#: What a release of the program consists of; the stack files come along (their config is the release's).
PROGRAM = ("__main__.py", "components", "dockyard", "Pulumi.yaml", "Pulumi.local.yaml", "pyproject.toml")
#: Steps that would take something down or recreate it.
REPLACING = {"replace", "create-replacement", "delete-replaced", "delete"}


def check_out(workspace: Workspace, commit: str | None) -> None:
    """Put the program of ``commit`` (None: this checkout) in the workspace, with its namespaces isolated again."""
    for item in PROGRAM:
        target = workspace.directory / item
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    if commit is None:
        for item in PROGRAM:
            source = PROJECT / item
            if source.is_dir():
                shutil.copytree(source, workspace.directory / item, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, workspace.directory / item)
    else:
        archive = subprocess.run(
            ["git", "-C", str(PROJECT), "archive", "--format=tar", commit, "--", *PROGRAM],
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(workspace.directory, filter="data")
    # This session's own namespace: the engine conftest deletes it at the end, and no earlier run's objects linger.
    isolate_namespaces(workspace.directory, f"{SESSION}-upgrade")


@pytest.fixture(scope="module")
def upgraded(engine: str, local_services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    workspace = make_workspace(tmp_path_factory.mktemp("upgrade"), local_services)
    old = Path(workspace.directory)
    check_out(workspace, BEFORE_RENAME)
    assert (old / "components" / "config.py").is_file(), "the old release keeps its components in components/"
    # The old program imports `components` from its own directory, as it did when it was released.
    workspace.env["PYTHONPATH"] = ""
    workspace.init("local")
    workspace.pulumi("up", "--stack", "local", "--yes", timeout=2400)
    check_out(workspace, None)
    # The rename is what is upgraded here; the scan and the integration stage that came later are features a stack
    # turns on by itself (each is a new build input: turned on, it rebuilds).
    set_stack_config(workspace, "local", ["signing", "scan"], None)
    set_stack_config(workspace, "local", ["image", "build", "integration"], None)
    workspace.env["PYTHONPATH"] = str(workspace.directory / "components")
    return workspace


def test_the_old_release_deployed_with_the_old_type_tokens(upgraded: Workspace) -> None:
    resources = upgraded.export("local")["deployment"]["resources"]
    types = {r["type"] for r in resources}
    assert {"dockyard:index:AppImage", "dockyard:index:KubernetesApp", "dockyard:index:ContainerRegistry"} <= types


def test_the_upgrade_previews_no_replacement_and_no_change(upgraded: Workspace) -> None:
    preview = upgraded.pulumi("preview", "--stack", "local", "--json", timeout=900).json()
    steps = preview.get("steps", [])
    ops = {step["urn"].split("::")[-1]: step["op"] for step in steps}
    # What changed, property by property, for the failure message.
    diffs = {step["urn"].split("::")[-1]: step.get("detailedDiff") or step.get("diffs") for step in steps}
    assert not {name: op for name, op in ops.items() if op in REPLACING}, (ops, diffs)
    # What this release adds on purpose, each an in-place update: the namespace carries the stack's trust policy for
    # the admission webhook; the app container drains before it is stopped (lifecycle.preStop). Nothing else changes.
    changed = {name: op for name, op in ops.items() if op != "same"}
    assert changed == {"app-namespace": "update", "app-stable": "update"}, (ops, diffs)
    admission = ('metadata.labels["dockyard.dev/admission"]', "metadata.annotations")
    assert all(key.startswith(admission) for key in diffs["app-namespace"]), diffs
    assert all(".lifecycle" in key for key in diffs["app-stable"]), diffs
    upgraded.pulumi("up", "--stack", "local", "--yes", timeout=900)
    upgraded.pulumi("preview", "--stack", "local", "--expect-no-changes", timeout=900)
