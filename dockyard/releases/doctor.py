"""``dockyard doctor``: what is wrong with a stack after an interrupted run, and the safe way out.

Facts first (:func:`gather`: the engine lock and who holds it, pending operations in the checkpoint, the stack file's
image against the deployed one, the local services' health), then a pure judgement (:func:`diagnose`) that turns them
into findings, each with the next steps as commands a user can run as printed. Reads a file backend's files or a
PostgreSQL backend's rows (:mod:`dockyard.releases.backend_state`) directly: no engine run, so it works while the stack is
locked; a PostgreSQL backend is also a service that must answer.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import ssl
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from dockyard.model.config import (
    LOCAL_CLUSTER_CONTEXT,
    NAMESPACE,
    ConfigError,
    EnvironmentConfig,
    environment_from_file,
)
from dockyard.model.registry import local_start_command
from dockyard.model.strategies import IMAGE_REF
from dockyard.releases import backend, backend_state
from dockyard_components.scripts.build_guard import command_line

PROBE_TIMEOUT_SECONDS = 5.0
LOCAL_ENV = "scripts/local-env.sh"


@dataclass(frozen=True)
class EngineLock:
    """One engine lock of the stack, and what is known of its holder."""

    path: Path | str
    """The lock's file in a file backend, or its key in a PostgreSQL backend's table."""
    pid: int | None
    host: str
    user: str
    alive: bool | None
    """True/False for a holder on this host (its process is/is not there); None for another host."""
    command: str = ""


@dataclass(frozen=True)
class PendingOperation:
    kind: str
    """creating, updating, deleting, reading, importing."""
    urn: str

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    @property
    def resource_type(self) -> str:
        return self.urn.rsplit("::", 2)[-2].rsplit("$", 1)[-1]


@dataclass(frozen=True)
class Service:
    """A service the stack needs, and whether it answers."""

    name: str
    address: str
    healthy: bool
    detail: str
    fix: str | None
    """The command that mends it (starts a local service, or loads the local environment), if any."""


@dataclass
class Facts:
    stack: str
    project: str
    mode: str
    """render or cluster."""
    locks: list[EngineLock] = field(default_factory=list)
    pending: list[PendingOperation] = field(default_factory=list)
    deployed: bool = False
    configured_image: str | None = None
    """The image the stack file says the stack serves, as its strategy reads it."""
    configured_key: str = IMAGE_REF
    """Where the stack file names that image (``image.ref``, or the active color's image)."""
    deployed_image: str | None = None
    services: list[Service] = field(default_factory=list)
    backend_note: str | None = None
    config_problems: list[str] = field(default_factory=list)
    mover: str | None = None
    """Who holds the stack's Dockyard lock on a PostgreSQL backend (a move in progress), if anyone."""


@dataclass(frozen=True)
class Finding:
    part: str
    problem: str
    steps: list[str]
    """What to do, in order; a line starting with ``$ `` is a command to run as printed."""


def _cluster(facts: Facts) -> Service | None:
    return next((s for s in facts.services if s.name == "cluster"), None)


def _lock_findings(facts: Facts) -> list[Finding]:
    findings = []
    for lock in facts.locks:
        holder = f"pid {lock.pid} on {lock.host}" + (f" ({lock.command})" if lock.command else "")
        if lock.alive:
            findings.append(
                Finding(
                    "engine lock",
                    f"held by a live update: {holder}",
                    [
                        f"wait for it to finish, or stop it: $ kill -INT {lock.pid} (it releases the lock)",
                        "never pulumi cancel or remove the lock while it runs: both updates would write the state",
                    ],
                )
            )
        elif lock.alive is False:
            findings.append(
                Finding(
                    "engine lock",
                    f"left by {holder}, which is gone (interrupted run)",
                    ["remove the stale lock:", f"$ {_removal(facts.stack, lock)}"],
                )
            )
        else:
            findings.append(
                Finding(
                    "engine lock",
                    f"held by {lock.user} from {holder}",
                    [f"ask {lock.user}; only once that run is known to be dead: $ {_removal(facts.stack, lock)}"],
                )
            )
    return findings


def _removal(stack: str, lock: EngineLock) -> str:
    """The command that removes a stale lock: its files, or (a row in a database) the engine's own cancel."""
    if isinstance(lock.path, Path):
        return f"rm -f {lock.path} {lock.path}.attrs"
    return f"pulumi cancel --stack {stack} --yes"


def _pending_findings(facts: Facts) -> list[Finding]:
    if not facts.pending:
        return []
    listed = ", ".join(f"{op.kind} {op.resource_type} {op.name}" for op in facts.pending)
    creates_only = all(op.kind == "creating" for op in facts.pending)
    note = "an interrupted build pushed at most an unrecorded image: the next build pushes the same digest"
    cluster = _cluster(facts)
    stack = facts.stack
    if facts.mode == "cluster" and cluster is not None and cluster.healthy:
        refresh = f"$ pulumi refresh --stack {stack} --yes" + (" --clear-pending-creates" if creates_only else "")
        steps = [
            "read back what the interrupted run did (the cluster answers):",
            refresh,
            f"$ pulumi up --stack {stack} --yes",
        ]
    else:
        why = (
            f"{facts.mode} mode: nothing live to read back, the next up writes the manifests again"
            if facts.mode != "cluster"
            else f"the cluster does not answer ({cluster.detail if cluster else 'unknown'}): start it first "
            f"({cluster.fix if cluster and cluster.fix else 'see dockyard:kubernetes.context'}) and run "
            "dockyard doctor again, or drop the pending operations from the state"
        )
        steps = [
            why + ":",
            f"$ pulumi stack export --stack {stack} --file {stack}-state.json",
            f"remove the entries of checkpoint.latest.pending_operations in {stack}-state.json, then",
            f"$ pulumi stack import --stack {stack} --file {stack}-state.json",
            f"$ pulumi up --stack {stack} --yes",
        ]
        if facts.mode == "cluster":
            steps.insert(
                -1,
                "an object a pending create made may already exist: the up then names it; "
                "delete it (kubectl delete KIND NAME -n NAMESPACE) or import it (pulumi import)",
            )
    return [Finding("pending operations", f"the state records unfinished work: {listed}; {note}", steps)]


def _config_findings(facts: Facts) -> list[Finding]:
    if not facts.deployed or facts.configured_image is None or facts.deployed_image is None:
        return []
    if facts.configured_image == facts.deployed_image:
        return []
    file = f"Pulumi.{facts.stack}.yaml"
    return [
        Finding(
            "stack file",
            f"{file} names {NAMESPACE}:{facts.configured_key} {facts.configured_image}, the stack last deployed "
            f"{facts.deployed_image}: an aborted promotion may have left it (a plain up would ship it unapproved)",
            [
                "see what changed, and restore the file unless the change is wanted:",
                f"$ git diff -- {file}",
                f"$ git checkout -- {file}",
                f"or promote it with its checks: dockyard promote --from <upstream> --to {facts.stack}",
            ],
        )
    ]


def _invalid_config_findings(facts: Facts) -> list[Finding]:
    if not facts.config_problems:
        return []
    file = f"Pulumi.{facts.stack}.yaml"
    return [Finding("stack file", f"{file} does not validate", [*facts.config_problems, f"$ git diff -- {file}"])]


def _service_findings(facts: Facts) -> list[Finding]:
    return [
        Finding(
            service.name,
            f"{service.address} cannot be used from here: {service.detail}",
            [f"$ {service.fix}"] if service.fix else ["check that it runs and that this machine reaches it"],
        )
        for service in facts.services
        if not service.healthy
    ]


def diagnose(facts: Facts) -> list[Finding]:
    """Every problem the facts show, each with its way out; empty when the stack is ready for an update."""
    findings = (
        _lock_findings(facts) + _pending_findings(facts) + _config_findings(facts) + _invalid_config_findings(facts)
    )
    if facts.mover:
        findings.append(
            Finding(
                "dockyard lock",
                f"held by {facts.mover}: a move on {facts.stack} is in progress",
                ["wait for it to finish (the database releases the lock when that process ends, however it ends)"],
            )
        )
    findings += _service_findings(facts)
    if facts.backend_note:
        findings.append(Finding("backend", facts.backend_note, []))
    return findings


def render(facts: Facts, findings: list[Finding]) -> str:
    lines = [f"dockyard doctor: stack {facts.stack} ({facts.mode} mode)"]
    for service in facts.services:
        lines.append(f"  {service.name} {service.address}: {'ok' if service.healthy else 'DOWN'} ({service.detail})")
    if not findings:
        deployed = "the stack file matches what is deployed" if facts.deployed else "nothing deployed yet"
        lines.append(f"nothing to fix: no lock, no pending operations, {deployed}")
    for number, finding in enumerate(findings, 1):
        lines.append(f"{number}. {finding.part}: {finding.problem}")
        lines += [f"   {step}" for step in finding.steps]
    return "\n".join(lines)


# --- facts ----------------------------------------------------------------------------------------------------


def read_lock(path: Path, this_host: str) -> EngineLock:
    try:
        document: Mapping[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        document = {}
    return lock_of(path, document, this_host)


def lock_of(path: Path | str, document: Mapping[str, Any], this_host: str) -> EngineLock:
    """The lock described by ``document`` (the engine's lock JSON), kept at ``path``."""
    pid = document.get("pid")
    host = str(document.get("hostname") or "?")
    user = str(document.get("username") or "?")
    if not isinstance(pid, int) or host != this_host:
        return EngineLock(path, pid if isinstance(pid, int) else None, host, user, None)
    command = command_line(pid)
    # A recycled pid runs something else: only a pulumi process still holds the lock.
    alive = "pulumi" in command
    return EngineLock(path, pid, host, user, alive, command if alive else "")


def read_checkpoint(state: Path, project: str, stack: str) -> dict[str, Any] | None:
    for path in (state / "stacks" / project / f"{stack}.json", state / "stacks" / project / f"{stack}.json.gz"):
        if path.exists():
            data = path.read_bytes()
            document: dict[str, Any] = json.loads(gzip.decompress(data) if path.suffix == ".gz" else data)
            return document
    return None


def _probe_registry(server: str, ca_file: str | None) -> Service:
    start = local_start_command(server)
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
    try:
        response = httpx.get(f"https://{server}/v2/", verify=verify, timeout=PROBE_TIMEOUT_SECONDS, trust_env=False)
    except httpx.HTTPError as error:
        detail = str(error) or type(error).__name__
        if start and "CERTIFICATE_VERIFY_FAILED" in detail:
            start = f"source {LOCAL_ENV}  # exports DOCKYARD_REGISTRY_CA, the local registry's CA"
        return Service("registry", server, False, detail, start)
    healthy = response.status_code in (200, 401)
    return Service("registry", server, healthy, f"GET /v2/ answered {response.status_code}", start)


def _probe_cluster(context: str) -> Service:
    start = "scripts/local-cluster.sh start" if context == LOCAL_CLUSTER_CONTEXT else None
    try:
        answer = subprocess.run(
            ["kubectl", "--context", context, "--request-timeout=5s", "get", "--raw", "/readyz"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS + 5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return Service("cluster", context, False, str(error), start)
    detail = (answer.stdout.strip() or answer.stderr.strip() or "no answer").splitlines()[-1]
    if start and "does not exist" in detail:
        start = f"source {LOCAL_ENV}  # exports KUBECONFIG, the local cluster's kubeconfig"
    return Service("cluster", f"context {context}", answer.returncode == 0, f"/readyz: {detail}", start)


def gather(project_dir: Path, stack: str, backend_url: str | None = None) -> Facts:
    """The facts of ``stack`` in the project at ``project_dir`` (file backend: ``PULUMI_BACKEND_URL``)."""
    project = str(yaml.safe_load((project_dir / "Pulumi.yaml").read_text())["name"])
    try:
        env: EnvironmentConfig | None = environment_from_file(project_dir, stack)
        problems: list[str] = []
    except ConfigError as error:
        env, problems = None, error.problems
    facts = Facts(stack=stack, project=project, mode=env.kubernetes.mode if env else "render", config_problems=problems)
    if env is not None:
        # The strategy says what the stack serves and where its file names it (a color's image on blue-green).
        facts.configured_image = env.served_image
        facts.configured_key = env.kubernetes.strategy.served_key

    url = backend_url or os.environ.get("PULUMI_BACKEND_URL") or ""
    this_host = socket.gethostname()
    if url.startswith("file://"):
        state = Path(urlsplit(url).path) / ".pulumi"
        facts.locks = [read_lock(path, this_host) for path in sorted(state.glob(f"locks/**/{stack}/*.json"))]
        _checkpoint_facts(facts, read_checkpoint(state, project, stack))
    elif backend.is_postgres(url):
        rows = backend_state.read(url, project, stack)
        fix = backend.LOCAL_START if backend.is_local(url) else None
        detail = rows.problem or f"answers; {len(rows.locks)} engine lock(s) on {stack}"
        facts.services.append(Service("backend", backend.redact(url), rows.reachable, detail, fix))
        facts.locks = [lock_of(key, document, this_host) for key, document in rows.locks]
        facts.mover = rows.mover
        _checkpoint_facts(facts, rows.checkpoint)
    else:
        facts.backend_note = (
            f"backend {backend.redact(url) if url else '(PULUMI_BACKEND_URL not set)'}: locks and pending operations "
            f"are read from a file:// or postgres:// backend only; source {LOCAL_ENV}, or see pulumi stack export"
        )

    if env is not None and env.registry.server:
        facts.services.append(_probe_registry(env.registry.server, env.registry.ca_bundle))
    if env is not None and env.kubernetes.mode == "cluster" and env.kubernetes.context:
        facts.services.append(_probe_cluster(env.kubernetes.context))
    return facts


def _checkpoint_facts(facts: Facts, checkpoint: Mapping[str, Any] | None) -> None:
    """Pending operations and what is deployed, from the stack's checkpoint (its state document)."""
    latest = ((checkpoint or {}).get("checkpoint") or {}).get("latest") or {}
    facts.pending = [
        PendingOperation(str(op.get("type")), str((op.get("resource") or {}).get("urn")))
        for op in latest.get("pending_operations") or []
    ]
    resources = latest.get("resources") or []
    facts.deployed = bool(resources)
    root: dict[str, Any] = next((r for r in resources if r.get("type") == "pulumi:pulumi:Stack"), {})
    deployed = (root.get("outputs") or {}).get("image_ref")
    facts.deployed_image = deployed if isinstance(deployed, str) else None


def run(project_dir: Path, stack: str) -> tuple[str, int]:
    """The report for ``stack`` and the exit code: 0 when nothing needs fixing, 1 otherwise."""
    facts = gather(project_dir, stack)
    findings = diagnose(facts)
    return render(facts, findings), 1 if findings else 0
