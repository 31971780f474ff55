"""Drive the real ``pulumi`` CLI against a throw-away copy of the project, with a local file backend."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.stacks import PROJECT

#: The local stacks commit secrets encrypted with this public, local-only passphrase (see README).
PASSPHRASE = "dockyard-local"
#: What gets copied: the program, its components and stack files, the app, the policy pack.
PROJECT_ITEMS = ("Pulumi.yaml", "__main__.py", "components", "app", "policies", "dockyard", "pyproject.toml")


class EngineMissingError(RuntimeError):
    """No pinned ``pulumi`` on PATH: run scripts/bootstrap-engine.sh and source scripts/engine/env.sh."""


def pinned_version() -> str:
    for line in (PROJECT / "scripts" / "engine" / "versions.env").read_text().splitlines():
        if line.startswith("DOCKYARD_PULUMI_VERSION="):
            return line.split("=", 1)[1].strip()
    raise EngineMissingError("scripts/engine/versions.env names no DOCKYARD_PULUMI_VERSION")


def engine_binary() -> str:
    binary = shutil.which("pulumi")
    if binary is None:
        raise EngineMissingError("pulumi is not on PATH: run scripts/bootstrap-engine.sh; source scripts/engine/env.sh")
    version = subprocess.run([binary, "version"], capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    if version.lstrip("v") != pinned_version():
        raise EngineMissingError(f"pulumi on PATH is {version}, the project pins v{pinned_version()}")
    return binary


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Workspace:
    """A copy of the project with its own backend: tests never touch the checkout's stacks."""

    directory: Path
    backend: Path
    env: dict[str, str]

    def pulumi(self, *args: str, check: bool = True, timeout: int = 900, stdin: str | None = None) -> Result:
        completed = subprocess.run(
            [engine_binary(), *args, "--non-interactive"],
            cwd=self.directory,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        result = Result(completed.returncode, completed.stdout, completed.stderr)
        if check and completed.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed ({completed.returncode}):\n{result.output[-6000:]}")
        return result

    def init(self, stack: str) -> None:
        if self.pulumi("stack", "select", stack, check=False).returncode != 0:
            self.pulumi("stack", "init", stack, "--secrets-provider", "passphrase")

    def export(self, stack: str) -> dict[str, Any]:
        result: dict[str, Any] = self.pulumi("stack", "export", "--stack", stack).json()
        return result

    def outputs(self, stack: str) -> dict[str, Any]:
        result: dict[str, Any] = self.pulumi("stack", "output", "--stack", stack, "--json").json()
        return result

    def stack_file(self, stack: str) -> Path:
        return self.directory / f"Pulumi.{stack}.yaml"


def make_workspace(root: Path, extra_env: dict[str, str] | None = None) -> Workspace:
    directory = root / "project"
    directory.mkdir()
    for item in PROJECT_ITEMS:
        source = PROJECT / item
        if source.is_dir():
            shutil.copytree(source, directory / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, directory / item)
    for stack_file in PROJECT.glob("Pulumi.*.yaml"):
        shutil.copy2(stack_file, directory / stack_file.name)
    # The copy runs on the checkout's virtualenv (Pulumi.yaml names .venv relative to the project).
    (directory / ".venv").symlink_to(PROJECT / ".venv")
    backend = root / "state"
    backend.mkdir()
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{backend}",
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        **(extra_env or {}),
    }
    return Workspace(directory, backend, env)


def dockyard(workspace: Workspace, *args: str) -> Result:
    """The ``dockyard`` CLI of the project's virtualenv against ``workspace``, as a user runs it (no stdin)."""
    completed = subprocess.run(
        [str(PROJECT / ".venv" / "bin" / "dockyard"), *args, "--project", str(workspace.directory)],
        env=workspace.env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def rendered(workspace: Workspace, stack: str) -> dict[str, bytes]:
    """The rendered manifests of ``stack`` by relative path, byte for byte."""
    directory = workspace.directory / "rendered" / stack
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*.yaml"))}


def deployment_images(workspace: Workspace, stack: str) -> set[str]:
    images = set()
    for text in rendered(workspace, stack).values():
        for doc in yaml.safe_load_all(text):
            if doc and doc["kind"] == "Deployment":
                images |= {c["image"] for c in doc["spec"]["template"]["spec"]["containers"]}
    return images


def deploy_local_stacks(workspace: Workspace) -> Workspace:
    """``pulumi up`` of local (build, push, render) and local-prod (its placeholder digest)."""
    for stack in ("local", "local-prod"):
        workspace.init(stack)
        workspace.pulumi("up", "--stack", stack, "--yes", timeout=2400)
    return workspace
