"""Drive the real ``pulumi`` CLI against a throw-away copy of the project, with a local file backend."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from dockyard.releases.attestations import predicate
from dockyard.releases.ledger import Check, Verification
from dockyard_components.cosign import VERIFICATION_PREDICATE, SigningTools
from tests.stacks import PROJECT

#: The local stacks commit secrets encrypted with this public, local-only passphrase (see README).
PASSPHRASE = "dockyard-local"
#: What gets copied: the program, its components and stack files, the app, the policy pack.
PROJECT_ITEMS = ("Pulumi.yaml", "__main__.py", "components", "app", "policies", "dockyard", "keys", "pyproject.toml")


class EngineMissingError(RuntimeError):
    """No pinned ``pulumi`` on PATH: run scripts/bootstrap-engine.sh and source scripts/engine/env.sh."""


def pinned_version() -> str:
    for line in (PROJECT / "scripts" / "engine" / "versions.env").read_text().splitlines():
        if line.startswith("DOCKYARD_PULUMI_VERSION="):
            return line.split("=", 1)[1].strip()
    raise EngineMissingError("scripts/engine/versions.env names no DOCKYARD_PULUMI_VERSION")


@functools.cache  # checked once per process: every ``pulumi`` call of the suite goes through here
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


#: The kubeconfig context of the local cluster; stacks that name it deploy there.
LOCAL_CONTEXT = "dockyard-local"
#: Marks this test session's namespaces, so its clean-up never touches a user's own local stacks.
SESSION = f"t{uuid.uuid4().hex[:6]}"


#: The local stacks' image repository in the checkout; each workspace pushes to one of its own (see below).
LOCAL_REPOSITORY = "dockyard/app"


def isolate_namespaces(directory: Path, suffix: str) -> None:
    """Workspaces share one local cluster and registry: give each workspace's local stacks namespaces and an image
    repository of their own.

    The repository matters as much as the namespaces: builds are reproducible, so every workspace pushes the same
    digest, and cosign keeps a digest's signatures and attestations under one tag per repository
    (``sha256-<hex>.att``), written by read-modify-write. Shared, that tag was raced by concurrent workspaces and
    grew by every session's attestations, which each verification downloads whole."""
    for stack_file in directory.glob("Pulumi.*.yaml"):
        document = yaml.safe_load(stack_file.read_text())
        kubernetes = document["config"].get("dockyard:kubernetes") or {}
        if kubernetes.get("context") != LOCAL_CONTEXT:
            continue
        stack = stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
        kubernetes["namespace"] = f"dockyard-app-{stack}-{suffix}"[:63].rstrip("-")
        registry = document["config"].get("dockyard:registry") or {}
        if registry.get("repository") == LOCAL_REPOSITORY:
            registry["repository"] = f"{LOCAL_REPOSITORY}-{suffix}"
        stack_file.write_text(yaml.safe_dump(document, sort_keys=False))


def without_integration_stage(directory: Path) -> None:
    """Turn off ``image.build.integration`` in a workspace's stacks: it runs the same pod for the same digest in every
    build, and most modules are about what comes after the build. The modules that prove it turn it back on
    (:func:`with_integration_stage`); the local pipeline runs build with it from the checkout's stack files."""
    for stack_file in directory.glob("Pulumi.*.yaml"):
        document = yaml.safe_load(stack_file.read_text())
        build = ((document["config"].get("dockyard:image") or {}).get("build")) or {}
        if build.pop("integration", None) is not None:
            stack_file.write_text(yaml.safe_dump(document, sort_keys=False))


def with_integration_stage(workspace: Workspace, stack: str = "local") -> None:
    """``image.build.integration`` of ``stack`` as the checkout's stack file has it."""
    checkout = yaml.safe_load((PROJECT / f"Pulumi.{stack}.yaml").read_text())
    set_stack_config(
        workspace,
        stack,
        ["image", "build", "integration"],
        checkout["config"]["dockyard:image"]["build"]["integration"],
    )


def image_repository(workspace: Workspace, stack: str = "local") -> str:
    """``host/repository`` that ``stack`` of ``workspace`` pushes its images to."""
    registry = yaml.safe_load(workspace.stack_file(stack).read_text())["config"]["dockyard:registry"]
    return f"{registry['server']}/{registry['repository']}"


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
    isolate_namespaces(directory, f"{SESSION}-" + re.sub(r"[^a-z0-9-]", "-", root.name.lower()).strip("-"))
    without_integration_stage(directory)
    # The copy runs on the checkout's virtualenv (Pulumi.yaml names .venv relative to the project).
    (directory / ".venv").symlink_to(PROJECT / ".venv")
    backend = root / "state"
    backend.mkdir()
    env = {
        **os.environ,
        **engine_env(backend),
        # The copy's components, not the checkout's editable install: tests change them in the copy.
        "PYTHONPATH": str(directory / "components"),
        # What the trust policy accepted is remembered per workspace: every test's first check asks cosign.
        "DOCKYARD_TRUST_CACHE": str(root / "trust-cache"),
        **(extra_env or {}),
    }
    return Workspace(directory, backend, env)


def engine_env(backend: Path) -> dict[str, str]:
    """What every test's ``pulumi`` runs with: its own file backend, the local passphrase, no downloads."""
    return {
        "PULUMI_BACKEND_URL": f"file://{backend}",
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    }


def outside_workspace(directory: Path, root: Path, extra_env: dict[str, str]) -> Workspace:
    """Another team's project in ``directory``: a backend of its own under ``root`` and nothing of the checkout's
    Python (no PYTHONPATH or virtualenv of ours, the checkout off PATH)."""
    backend = root / "state"
    backend.mkdir()
    inherited = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not p.startswith(str(PROJECT)))
    return Workspace(directory, backend, {**inherited, **extra_env, "PATH": path, **engine_env(backend)})


def configure_stack(workspace: Workspace, stack: str, settings: dict[str, str], secrets: dict[str, str]) -> None:
    """``pulumi stack init`` and its config; each secret reaches the stack on stdin, never on a command line."""
    workspace.pulumi("stack", "init", stack, "--secrets-provider", "passphrase")
    for key, value in settings.items():
        workspace.pulumi("config", "set", "--path", key, value, "--stack", stack)
    for key, value in secrets.items():
        workspace.pulumi("config", "set", "--secret", key, "--stack", stack, stdin=value)


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


def succeeded(workspace: Workspace, *args: str) -> Result:
    """A ``dockyard`` command that must exit 0 (its output, tail first, when it does not)."""
    result = dockyard(workspace, *args)
    assert result.returncode == 0, result.output[-6000:]
    return result


def ok(workspace: Workspace, *args: str) -> str:
    """What a successful ``dockyard`` command printed (stdout and stderr)."""
    return succeeded(workspace, *args).output


def history(workspace: Workspace, stack: str) -> list[dict[str, Any]]:
    """``dockyard history --json`` of ``stack``: every move, newest first, from the workspace's backend."""
    entries: list[dict[str, Any]] = succeeded(workspace, "history", "--stack", stack, "--json").json()
    return entries


def kubectl(workspace: Workspace, *args: str, check: bool = True) -> Result:
    """The real ``kubectl`` against the local cluster (the workspace's KUBECONFIG)."""
    completed = subprocess.run(
        ["kubectl", "--context", LOCAL_CONTEXT, *args],
        env=workspace.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    result = Result(completed.returncode, completed.stdout, completed.stderr)
    if check and completed.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({completed.returncode}):\n{result.output[-3000:]}")
    return result


def namespace_of(workspace: Workspace, stack: str) -> str:
    return str(workspace.outputs(stack)["namespace"])


def pull_secret_of(workspace: Workspace, stack: str) -> str:
    """The name of the image pull Secret ``stack`` deployed (auto-named: the engine adds a suffix)."""
    (name,) = [n for n, s in live(workspace, stack, "secrets").items() if s["type"] == "kubernetes.io/dockerconfigjson"]
    return name


def live(workspace: Workspace, stack: str, kind: str) -> dict[str, dict[str, Any]]:
    """The live objects of ``kind`` in ``stack``'s namespace, by name."""
    items = kubectl(workspace, "get", kind, "-n", namespace_of(workspace, stack), "-o", "json").json()["items"]
    return {item["metadata"]["name"]: item for item in items}


#: Metadata the API server changes on every write; what is left is what a user declared.
VOLATILE_METADATA = ("resourceVersion", "generation", "managedFields", "uid", "creationTimestamp", "annotations")


def declared(obj: dict[str, Any]) -> dict[str, Any]:
    """A live object without status and server-maintained metadata: comparable across updates."""
    metadata = {k: v for k, v in obj["metadata"].items() if k not in VOLATILE_METADATA}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": metadata}


def live_specs(workspace: Workspace, stack: str) -> dict[str, dict[str, Any]]:
    """The declared spec of each of ``stack``'s live Deployments, by name."""
    return {name: declared(d)["spec"] for name, d in live(workspace, stack, "deployments").items()}


def short(image: str) -> str:
    """The first 12 hex digits of an image's digest, as the moves' reports show it."""
    return image.split("@")[1][:19]


def replicas(workspace: Workspace, stack: str) -> dict[str, int]:
    """Ready pods per live Deployment (what the rollout reached, not only what was asked for)."""
    deployments = live(workspace, stack, "deployments").items()
    return {name: d["status"].get("readyReplicas", 0) for name, d in deployments if d["spec"]["replicas"]}


def images(workspace: Workspace, stack: str) -> dict[str, str]:
    """The image of each live Deployment of ``stack``, by name."""
    deployments = live(workspace, stack, "deployments").items()
    return {name: d["spec"]["template"]["spec"]["containers"][0]["image"] for name, d in deployments}


def objects(workspace: Workspace, stack: str) -> dict[str, dict[str, Any]]:
    """The declared Deployments and Services of a stack, by kind/name."""
    return {
        f"{kind}/{name}": declared(obj)
        for kind in ("deployments", "services")
        for name, obj in live(workspace, stack, kind).items()
    }


#: What a blue-green switch changes on the live objects (:func:`changed`): the Services' selectors, nothing else.
SWITCH_CHANGES = {
    "services/dockyard-app": {"spec.selector.dockyard.dev/track"},
    "services/dockyard-app-preview": {"spec.selector.dockyard.dev/track"},
}


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, set[str]]:
    """Per object, the dotted paths whose values differ."""

    def paths(old: Any, new: Any, prefix: str = "") -> set[str]:
        if isinstance(old, dict) and isinstance(new, dict):
            return {p for key in old.keys() | new.keys() for p in paths(old.get(key), new.get(key), f"{prefix}{key}.")}
        return set() if old == new else {prefix.rstrip(".")}

    return {name: found for name in before.keys() | after.keys() if (found := paths(before.get(name), after.get(name)))}


def deployment_images(workspace: Workspace, stack: str) -> set[str]:
    """The images of ``stack``'s live Deployments."""
    return {
        container["image"]
        for deployment in live(workspace, stack, "deployments").values()
        for container in deployment["spec"]["template"]["spec"]["containers"]
    }


def deploy_local_stacks(workspace: Workspace, *more: str) -> Workspace:
    """``pulumi up`` of local (build, push, deploy), local-staging (no release yet: no Deployment) and ``more`` stacks
    on the local cluster."""
    for stack in ("local", "local-staging", *more):
        workspace.init(stack)
        workspace.pulumi("up", "--stack", stack, "--yes", timeout=2400)
    return workspace


def set_stack_config(workspace: Workspace, stack: str, path: list[str], value: Any) -> None:
    """Set ``dockyard:<path>`` in a workspace's stack file (as a user edits it); ``None`` removes the key."""
    stack_file = workspace.stack_file(stack)
    document = yaml.safe_load(stack_file.read_text())
    *parents, last = [f"dockyard:{path[0]}", *path[1:]]
    node = document["config"]
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))


def release(workspace: Workspace, *, health_fail: bool = False) -> str:
    """Build local (with ``HEALTH_FAIL=true``: a /health that answers 503) and return its digest."""
    set_stack_config(
        workspace, "local", ["image", "build", "buildArgs", "HEALTH_FAIL"], "true" if health_fail else None
    )
    workspace.pulumi("up", "--stack", "local", "--yes", "--skip-preview", timeout=2400)
    image: str = workspace.outputs("local")["image_ref"]
    return image


def commit_sources(workspace: Workspace, committed: datetime) -> None:
    """Make the workspace a git checkout whose sources were committed at ``committed``: a build then labels its
    image with that commit time (org.opencontainers.image.created), which the lead-time metric reads."""
    when = committed.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    env = {**workspace.env, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
    identity = ["-c", "user.name=Dockyard Tests", "-c", "user.email=tests@dockyard.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A", "app"], [*identity, "commit", "-q", "-m", "release"]):
        subprocess.run(["git", *args], cwd=workspace.directory, env=env, check=True, capture_output=True, timeout=60)


def rolling(workspace: Workspace, stack: str) -> None:
    """Give a workspace's promoted stack the rolling strategy: a promotion then writes image.ref, a rollback too."""
    set_stack_config(workspace, stack, ["kubernetes", "strategy"], {"type": "rolling"})


def signing_tools(workspace: Workspace, **keys: str) -> SigningTools:
    """syft and cosign logged in to the workspace's registry; ``keys``: public_key, private_key, key_password."""
    env = workspace.env
    return SigningTools(
        registry_server=env["DOCKYARD_REGISTRY"],
        username=env["DOCKYARD_REGISTRY_USER"],
        password=env["DOCKYARD_REGISTRY_PASSWORD"],
        ca_file=env["DOCKYARD_REGISTRY_CA"],
        **keys,
    )


def attest_verification(workspace: Workspace, record: Verification, *, key_of: str = "local") -> None:
    """Attest ``record`` in the registry as ``dockyard verify`` would, signed with ``key_of``'s key pair, for this
    workspace's backend: a stand-in for a verification that really ran (e.g. a broken digest "healthy at the source")."""
    tools = signing_tools(
        workspace,
        private_key=workspace.pulumi("config", "get", "dockyard:cosignPrivateKey", "--stack", key_of).stdout,
        key_password=workspace.pulumi("config", "get", "dockyard:cosignPassword", "--stack", key_of).stdout.strip(),
    )
    with tools as cosign:
        cosign.attest(
            record.image,
            predicate(record, f"file://{workspace.backend}"),
            predicate_type=VERIFICATION_PREDICATE,
        )


def broken_release(workspace: Workspace) -> str:
    """local rebuilt with ``HEALTH_FAIL=true`` (its /health answers 503), with a passed verification attested by hand
    so the promotion gate lets it go: the stand-in for a release that looked healthy where it was built."""
    image = release(workspace, health_fail=True)
    attest_verification(
        workspace,
        Verification(
            "local", image, True, datetime.now(UTC), "engine-test", "cluster", "test", (Check("stand-in", True, ""),)
        ),
    )
    return image


#: A digest no registry holds, as a release of a stack whose pods never pull (kwok, render mode).
UNPULLED_DIGEST = "sha256:" + "e" * 64


def accepted_release(workspace: Workspace, stack: str, path: list[str], image: str | None = None) -> str:
    """Write ``image`` (default: :data:`UNPULLED_DIGEST` in the stack's repository) at ``dockyard:<path>`` of
    ``stack`` as a release, and remember it as accepted by the stack's trust policy in the workspace's trust cache, as
    an earlier check would have: for tests about something else (render mode, the backend, timings) that need a
    Deployment without a build. The checks themselves (program and admission) are tests/engine/test_supply_chain.py's."""
    from dockyard.model.config import environment_from_file
    from dockyard.model.trust import TrustCache, TrustPolicy

    image = image or f"{image_repository(workspace, stack)}@{UNPULLED_DIGEST}"
    set_stack_config(workspace, stack, path, image)
    env = environment_from_file(workspace.directory, stack)
    if env.signing is not None:
        policy = TrustPolicy.of(stack, env.signing, workspace.directory)
        # The program's cache, and the admission webhook's (its Pods must be admitted on the cluster too).
        for cache in ("DOCKYARD_TRUST_CACHE", "DOCKYARD_ADMISSION_CACHE"):
            TrustCache(Path(workspace.env[cache])).remember(policy, image)
    return image
