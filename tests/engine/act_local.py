"""Run the generator's GitHub Actions delivery workflow for the local chain on this machine with act.

A scratch repository (:mod:`tests.engine.ci_scratch`) holds the project as committed, with the generator's
``.github/workflows/`` for ``local,local-staging,local-prod``. act (pinned in scripts/act/versions.env, built by
scripts/bootstrap-act.sh) runs ``delivery.yml`` for a push to ``main`` in one call, every job on the host
(``-P ubuntu-24.04=-self-hosted``) in a copy of the clone, under ``env -i`` with a fresh ``HOME``: what a self-hosted
runner has (podman, git, Go with its caches, the registry's CA, a wheelhouse as package index), not the engine or
the supply-chain tools, which the workflow's own steps must install. Secrets and variables come from act's
``--secret-file`` and ``--var-file`` (untracked, mode 600): the registry password, the passphrase, the backend URL
with its password, the kubeconfig.

Remote actions cannot be fetched here. act replaces ``actions/checkout`` with a copy of the workspace; every other
action in the workflow must have a local stand-in under ``tests/engine/act_actions/<owner>/<repo>/`` (see its
README), handed to act with ``--local-repository`` for the SHA the generator pinned: setup-python, pulumi/actions,
cosign-installer and setup-trivy put this machine's pinned builds on PATH; trivy-action runs the real trivy;
docker/login-action is ``skopeo login``; upload/download-artifact use a local directory (act's artifact server
fails with upload-artifact v7, nektos/act#6022); attest-build-provenance attests nothing (GitHub only).
A promotion pushes to ``https://x-access-token:<token>@github.com/<repository>.git``: the runner's git config
points that address at the local origin (``url.<origin>.insteadOf``), as a mirror would.

Not modelled by act, said plainly: environments' required reviewers and wait timers (prod's job runs at once),
``concurrency`` groups, ``permissions`` and the OIDC token, environment-scoped secrets (one set for every job).
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from tests.engine.ci_scratch import (
    Backend,
    Scratch,
    bootstrap_stacks,
    ignore,
    run,
    runner_environment,
    scratch_repository,
    tool_cache,
)
from tests.engine.harness import PASSPHRASE
from tests.stacks import PROJECT

DELIVERY = ".github/workflows/delivery.yml"
STANDINS = Path(__file__).parent / "act_actions"
#: What act's host runner stands in for (the runner label the generator writes).
RUNNER_LABEL = "ubuntu-24.04"
#: The repository act reports as ``github.repository`` (act cannot read it from a local origin).
REPOSITORY = "dockyard-tests/dockyard"
#: Untracked files act reads; never committed.
SECRETS_FILE = "act-secrets.yml"
VARS_FILE = "act-vars.yml"
_USES = re.compile(r"^\s*(?:-\s*)?uses:\s*([\w.-]+/[\w.-]+)@([0-9a-f]{40})\b", re.MULTILINE)


def act_binary(services: dict[str, str]) -> Path:
    """``scripts/bootstrap-act.sh``: the pinned act (built once into the cache; a version check when warm)."""
    run([str(PROJECT / "scripts" / "bootstrap-act.sh")], PROJECT, timeout=1200)
    return tool_cache(services) / "act" / "bin" / "act"


def standin_options(workflow: str) -> list[str]:
    """``--local-repository`` for every pinned action of ``workflow`` but checkout (act copies the workspace);
    fails naming each action that has no stand-in."""
    options, missing = [], []
    for action, sha in sorted(set(_USES.findall(workflow))):
        if action == "actions/checkout":
            continue
        directory = STANDINS / action
        if not (directory / "action.yml").is_file():
            missing.append(action)
        options += ["--local-repository", f"{action}@{sha}={directory}"]
    assert not missing, f"no stand-in under {STANDINS} for {', '.join(missing)}"
    return options


@dataclass
class ActRun:
    """One act call: its exit code, time, the readable log, and each job's result."""

    returncode: int
    seconds: float
    log: str
    events: list[dict[str, Any]]

    @property
    def results(self) -> dict[str, str]:
        """Job id → ``success`` / ``failure``, in the order the jobs finished."""
        return {e["jobID"]: e["jobResult"] for e in self.events if "jobResult" in e and "jobID" in e}

    def job_log(self, job: str) -> str:
        return "\n".join(str(e.get("msg", "")) for e in self.events if e.get("jobID") == job)

    def started(self, job: str) -> float:
        """When the job's first line was logged (act's RFC 3339 time, as seconds since the run's first line)."""
        return self._seconds(next(e for e in self.events if e.get("jobID") == job))

    def finished(self, job: str) -> float:
        return self._seconds(next(e for e in self.events if e.get("jobID") == job and "jobResult" in e))

    def _seconds(self, event: dict[str, Any]) -> float:
        first = datetime.fromisoformat(self.events[0]["time"])
        return (datetime.fromisoformat(event["time"]) - first).total_seconds()


@dataclass
class ActWorkflow(Scratch):
    """A scratch repository whose delivery workflow act runs, and what the runner has."""

    act: Path

    def run(self, timeout: int = 3000) -> ActRun:
        """``delivery.yml`` for a push to main, every job, in one act call; never raises on a failed job."""
        home = self.root / "runner-home"
        workflow = (self.directory / DELIVERY).read_text()
        args = [
            str(self.act),
            "push",
            "--workflows",
            DELIVERY,
            "--platform",
            f"{RUNNER_LABEL}=-self-hosted",
            "--secret-file",
            str(self.root / SECRETS_FILE),
            "--var-file",
            str(self.root / VARS_FILE),
            "--env",
            f"GITHUB_REPOSITORY={REPOSITORY}",
            "--defaultbranch",
            "main",
            "--action-cache-path",
            str(home / "act-cache"),
            "--no-cache-server",
            "--json",
            *standin_options(workflow),
        ]
        started = time.monotonic()
        completed = subprocess.run(
            args,
            cwd=self.directory,
            env={**self.runner_env, "HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        events = []
        for line in completed.stdout.splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        log = "\n".join(f"[{e.get('jobID', '-')}] {e.get('msg', '')}".rstrip() for e in events)
        return ActRun(completed.returncode, time.monotonic() - started, log + completed.stderr, events)


def scratch_workflow(root: Path, services: dict[str, str], backend: Backend) -> ActWorkflow:
    """The project's tracked files in a clone of a fresh bare repository, with the generator's workflows for the
    local chain, the namespaces of this test's own, the secrets and variables, and a runner's git config whose
    GitHub push address is the local origin."""
    directory, origin = scratch_repository(root, "github")
    ignore(directory, SECRETS_FILE, VARS_FILE)
    cache = tool_cache(services)
    # Go and its caches as a runner image with setup-go's cache has them: the workflow `go install`s syft.
    tools = [Path("/usr/local/go/bin")]
    runner_env = {
        **runner_environment(root, services, tools),
        "GOCACHE": str(Path.home() / ".cache" / "go-build"),
        "GOMODCACHE": str(Path.home() / "go" / "pkg" / "mod"),
        "GOTOOLCHAIN": "local",
        # Where the stand-ins find this machine's pinned builds, and keep artifacts between jobs.
        "DOCKYARD_TOOL_CACHE": str(cache),
        "DOCKYARD_ACT_ARTIFACTS": str(root / "artifacts"),
    }
    token = secrets.token_hex(20)  # the job token act hands the workflow: a fake one, per run
    _write_settings(root, services, backend, token)
    home = root / "runner-home"
    home.mkdir()
    # The promotion's push address, with this run's token, is the local origin on this runner.
    run(
        [
            "git",
            "config",
            "--file",
            str(home / ".gitconfig"),
            f"url.{origin}.insteadOf",
            f"https://x-access-token:{token}@github.com/{REPOSITORY}.git",
        ],
        root,
    )
    workflow = ActWorkflow(directory, origin, runner_env, root, act_binary(services))
    workflow.commit("The local chain's workflows")
    bootstrap_stacks(directory, root, runner_env, backend)
    return workflow


def _write_settings(root: Path, services: dict[str, str], backend: Backend, token: str) -> None:
    """Secrets and variables as the repository's settings hold them (never in the repository)."""
    url = backend.url
    if backend.passfile:
        # GitHub keeps the backend URL as a secret, so it may hold the database password (libpq reads it there).
        url = re.sub(r"^(postgres(?:ql)?://[^:@/]+)@", lambda m: f"{m[1]}:{quote(backend.password, safe='')}@", url)
    settings = {
        SECRETS_FILE: {
            "REGISTRY_PASSWORD": services["DOCKYARD_REGISTRY_PASSWORD"],
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_BACKEND_URL": url,
            "KUBECONFIG": Path(services["KUBECONFIG"]).read_text(),
            "GITHUB_TOKEN": token,
        },
        VARS_FILE: {
            "REGISTRY_HOST": services["DOCKYARD_REGISTRY"],
            "REGISTRY_USERNAME": services["DOCKYARD_REGISTRY_USER"],
        },
    }
    for name, values in settings.items():
        path = root / name
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(values, sort_keys=False))
