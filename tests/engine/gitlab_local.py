"""Run the generator's GitLab pipeline for the local chain on this machine with gitlab-ci-local.

A scratch repository (a clone whose ``origin`` is a local bare repository) holds the project as committed, with the
generator's ``.gitlab-ci.yml`` for ``local,local-staging,local-prod``. Jobs run in bash on the host
(``--force-shell-executor --shell-isolation``: each job gets its own copy of the tracked files), one job per
gitlab-ci-local call, each with a fresh empty ``HOME`` and only the environment a runner would have (``env -i``):
the runner's tools on PATH (the engine, cosign and syft, podman), the registry's CA, and a wheelhouse as the runner's
package index. Secrets and settings are the CI/CD variables of ``.gitlab-ci-local-variables.yml`` (untracked),
scoped like GitLab's: the registry password, the passphrase, the backend (the team's PostgreSQL: its URL, and its
password as a masked variable), the kubeconfig as a File variable.

The scan job runs the real trivy (scripts/bootstrap-supply-chain.sh) against the local registry's vulnerability DB,
as the program does; the runner trusts the registry's CA through ``SSL_CERT_FILE`` (part of a runner's setup for a
self-hosted registry). Not modelled by gitlab-ci-local, said plainly: ``id_tokens``, protected variables,
``timeout`` and ``resource_group``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.engine.ci_scratch import (
    Backend,
    Scratch,
    bootstrap_stacks,
    engine_bin,
    ignore,
    run,
    runner_environment,
    scratch_repository,
    tool_cache,
)
from tests.engine.harness import PASSPHRASE
from tests.stacks import PROJECT

#: The push pipeline's jobs in order; the last one is manual (prod's approval).
PUSH_JOBS = ("build", "scan", "supply-chain", "deploy-local", "promote-local-staging", "promote-local-prod")
#: Untracked, read by gitlab-ci-local from the repository's root: the CI/CD variables.
VARIABLES_FILE = ".gitlab-ci-local-variables.yml"


def ci_local_bin() -> Path:
    """``scripts/install-ci-local.sh``: the pinned gitlab-ci-local and Node (installed once into the cache)."""
    return Path(run([str(PROJECT / "scripts" / "install-ci-local.sh")], PROJECT, timeout=900).strip())


@dataclass
class JobRun:
    job: str
    returncode: int
    seconds: float
    log: str


@dataclass
class LocalPipeline(Scratch):
    """A scratch repository whose pipeline gitlab-ci-local runs, job by job."""

    runs: list[JobRun] = field(default_factory=list)

    def run(self, job: str, *, manual: bool = False, options: list[str] | None = None, timeout: int = 1800) -> JobRun:
        """One job (its needs' artifacts from earlier calls), in a fresh HOME; never raises on a failed job.
        ``options``: more gitlab-ci-local options (e.g. ``--variable`` for a merge-request pipeline)."""
        return self._call([job], [*(["--manual", job] if manual else []), *(options or [])], job, timeout)

    def run_pipeline(self, timeout: int = 2400) -> JobRun:
        """The whole pipeline in one call, as gitlab-ci-local orders it by ``needs`` (manual jobs wait)."""
        return self._call([], [], "pipeline", timeout)

    def _call(self, jobs: list[str], options: list[str], name: str, timeout: int) -> JobRun:
        home = self.root / "homes" / f"{len(self.runs):02d}-{name}"
        home.mkdir(parents=True)
        env = {**self.runner_env, "HOME": str(home)}
        # --no-artifacts-to-source: artifacts travel between jobs through .gitlab-ci-local/artifacts, as on GitLab; copied
        # back into the clone they would overwrite its files (a promoted stack file) as no runner does.
        args = [
            "gitlab-ci-local",
            "--force-shell-executor",
            "--shell-isolation",
            "--no-artifacts-to-source",
            "--no-color",
            *options,
        ]
        started = time.monotonic()
        completed = subprocess.run(
            [*args, *jobs],
            cwd=self.directory,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        run = JobRun(name, completed.returncode, time.monotonic() - started, completed.stdout + completed.stderr)
        self.runs.append(run)
        return run


def scratch_pipeline(root: Path, services: dict[str, str], backend: Backend) -> LocalPipeline:
    """The project's tracked files (as they are in the checkout) in a clone of a fresh bare repository, with the
    generator's pipeline for the local chain, the namespaces of this test's own, and the CI/CD variables."""
    directory, origin = scratch_repository(root, "gitlab")
    ignore(directory, VARIABLES_FILE, ".gitlab-ci-local/")
    _write_variables(directory / VARIABLES_FILE, services, backend)
    bin_dir = root / "runner-bin"
    bin_dir.mkdir()
    # The runner image's Python 3.11 answers to `python`, as the official python image's does.
    (bin_dir / "python").symlink_to(shutil.which("python3.11") or "/usr/bin/python3")
    tools = [ci_local_bin(), engine_bin(), tool_cache(services) / "supply-chain" / "bin", bin_dir]
    runner_env = runner_environment(root, services, tools)
    pipeline = LocalPipeline(directory, origin, runner_env, root)
    pipeline.commit("The local chain's pipeline")
    bootstrap_stacks(directory, root, runner_env, backend)
    return pipeline


def _write_variables(path: Path, services: dict[str, str], backend: Backend) -> None:
    """The CI/CD variables, as a project's settings hold them (secrets never in the repository)."""
    variables = {
        "REGISTRY_PASSWORD": services["DOCKYARD_REGISTRY_PASSWORD"],
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_BACKEND_URL": backend.url,
        # The database password as a masked variable libpq reads (PGPASSWORD), never in the URL or a command line. (A
        # File variable with pgpass would do on GitLab; gitlab-ci-local writes it world-readable, which libpq ignores.)
        **({"PGPASSWORD": backend.password} if backend.passfile else {}),
        # A File variable: the job sees a path to a copy of the kubeconfig.
        "KUBECONFIG": {"type": "file", "values": {"*": Path(services["KUBECONFIG"]).read_text()}},
    }
    path.write_text(yaml.safe_dump(variables, sort_keys=False))
    path.chmod(0o600)
