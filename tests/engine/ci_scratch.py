"""A scratch repository and a runner's environment for running a generated pipeline on this machine.

Shared by the GitLab run (:mod:`tests.engine.gitlab_local`) and the GitHub Actions run (:mod:`tests.engine.act_local`):
a clone whose ``origin`` is a local bare repository holds the project's tracked files as they are in the checkout,
with the generator's files for the local chain and namespaces of the test's own; the runner's environment is the
tools on PATH, the registry's CA, and a wheelhouse as the package index; the team's stacks exist in the backend
before the first run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dockyard.pipeline.pins import HADOLINT_REQUIREMENT, UV_REQUIREMENT
from tests.engine.harness import LOCAL_CONTEXT, PASSPHRASE, SESSION, isolate_namespaces
from tests.stacks import PROJECT
from tests.team_postgres import start_postgres

#: The local chain, as the generator is asked for it.
LOCAL_CHAIN = ("local", "local-staging", "local-prod")
IDENTITY = ["-c", "user.name=Dockyard Tests", "-c", "user.email=tests@dockyard.invalid"]
#: What the app's test that :meth:`Scratch.commit_broken_app_test` adds fails with.
BROKEN = "broken on purpose"


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    completed = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if completed.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return completed.stdout


def git(directory: Path, *args: str) -> str:
    return run(["git", *IDENTITY, *args], directory)


def wheelhouse(cache: Path) -> Path:
    """Wheels of the project and every dependency, built once per pyproject pair: the runner's package index, so
    each job installs its virtualenv without the network (``PIP_NO_INDEX``), as a pipeline with a pip mirror does."""
    key = hashlib.sha256(
        (PROJECT / "pyproject.toml").read_bytes()
        + (PROJECT / "components" / "pyproject.toml").read_bytes()
        + HADOLINT_REQUIREMENT.encode()
        + UV_REQUIREMENT.encode()
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
        run(
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
                # Every job installs it into its virtualenv first, then the project with it.
                UV_REQUIREMENT,
                *sorted(build_requires),
            ],
            PROJECT,
        )
        # The project's own wheels are rebuilt from the job's checkout: only the dependencies are kept.
        for own in directory.glob("dockyard*.whl"):
            own.unlink()
        (directory / ".complete").touch()
    return directory


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


def team_backend(name: str) -> Backend:
    """The team's state: the local services' PostgreSQL, in a table of this session's and this test's own."""
    postgres = start_postgres()
    return Backend(
        f"{postgres['DOCKYARD_POSTGRES_URL']}&table={SESSION}_{name}", postgres["DOCKYARD_POSTGRES_PASSFILE"]
    )


def scratch_repository(root: Path, system: str, origin: Path | None = None) -> tuple[Path, Path]:
    """The project's tracked files in a clone of a fresh bare repository (``origin``, default ``root/origin.git``),
    with the generator's files of ``system`` for the local chain and the namespaces of this test's own; uncommitted.
    Returns the clone and its origin."""
    origin = origin or root / "origin.git"
    origin.parent.mkdir(parents=True, exist_ok=True)
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], root)
    directory = root / "clone"
    run(["git", "clone", "-q", str(origin), str(directory)], root)
    for name in run(["git", "ls-files", "-z"], PROJECT).split("\0"):
        source = PROJECT / name
        if name and source.is_file():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, directory / name)
    # This session's mark first: its clean-up (tests/engine/conftest.py) deletes them; the directory tells runs apart.
    isolate_namespaces(directory, f"{SESSION}-ci-" + re.sub(r"[^a-z0-9-]", "-", root.name.lower()).strip("-"))
    python = str(PROJECT / ".venv" / "bin" / "python")
    generator_env = {**os.environ, "PYTHONPATH": f"{PROJECT}{os.pathsep}{PROJECT / 'components'}"}
    run(
        [
            python,
            "-m",
            "scripts.generate_workflows",
            "--project-dir",
            str(directory),
            "--stacks",
            ",".join(LOCAL_CHAIN),
            "--systems",
            system,
            "--out",
            str(directory),
        ],
        PROJECT,
        generator_env,
    )
    without_service_jobs(directory)
    return directory, origin


def without_service_jobs(directory: Path) -> list[str]:
    """Drop every job with service containers (the integration tests, ``image.build.integration``) from the
    generated GitLab pipeline and GitHub workflows in ``directory``, and every need of one; returns the jobs dropped.

    Neither local runner can start a service container here: gitlab-ci-local runs ``docker network create`` and pulls
    the image from docker.io even with ``--force-shell-executor`` (and a shell job on the host could not resolve the
    service's network alias anyway); act's host platform (``-self-hosted``) ignores ``services:`` silently, so the
    tests would find nothing at the address. The local stacks' build runs the compose environment itself. A file
    without such a job is left byte for byte as generated.
    """
    dropped: list[str] = []
    gitlab_file = directory / ".gitlab-ci.yml"
    if gitlab_file.is_file():
        document = yaml.safe_load(gitlab_file.read_text())
        jobs = [name for name, job in document.items() if isinstance(job, dict) and job.get("services")]
        if jobs:
            for name in jobs:
                del document[name]
            for job in document.values():
                if isinstance(job, dict) and isinstance(job.get("needs"), list):
                    job["needs"] = [n for n in job["needs"] if (n["job"] if isinstance(n, dict) else n) not in jobs]
            gitlab_file.write_text(yaml.safe_dump(document, sort_keys=False, width=4096))
            dropped += jobs
    for workflow in sorted((directory / ".github" / "workflows").glob("*.yml")):
        # PyYAML reads the key `on` as true: it is written back as "on".
        document = {
            ("on" if key is True else key): value for key, value in yaml.safe_load(workflow.read_text()).items()
        }
        jobs = [name for name, job in document.get("jobs", {}).items() if job.get("services")]
        if not jobs:
            continue
        for name in jobs:
            del document["jobs"][name]
        for job in document["jobs"].values():
            needs = job.get("needs")
            if needs is not None:
                kept = [need for need in ([needs] if isinstance(needs, str) else needs) if need not in jobs]
                if kept:
                    job["needs"] = kept
                else:
                    del job["needs"]
        workflow.write_text(yaml.safe_dump(document, sort_keys=False, width=4096))
        dropped += jobs
    return dropped


def ignore(directory: Path, *names: str) -> None:
    """Untracked runner files the clone must never commit."""
    gitignore = directory / ".gitignore"
    existing = gitignore.read_text() + "\n" if gitignore.is_file() else ""
    gitignore.write_text(existing + "".join(f"{name}\n" for name in names))


def runner_environment(root: Path, services: dict[str, str], tools: list[Path]) -> dict[str, str]:
    """What a self-hosted runner for the local registry has: ``tools`` on PATH, the registry's CA (in one bundle
    with the system roots, which the Go tools read), the engine's plugins, and the wheelhouse as package index."""
    ca_bundle = root / "runner-ca-bundle.pem"
    system_roots = Path("/etc/ssl/certs/ca-certificates.crt")
    ca_bundle.write_text(
        (system_roots.read_text() if system_roots.is_file() else "")
        + "\n"
        + Path(services["DOCKYARD_REGISTRY_CA"]).read_text()
    )
    # pip and uv (which installs each job's virtualenv) read settings of their own: the same wheelhouse, no index.
    wheels = str(wheelhouse(tool_cache(services)))
    return {
        "PATH": os.pathsep.join([*map(str, tools), "/usr/local/bin", "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8",
        # The runner's own setup (a runner image has these): the engine's plugins, no update checks or downloads.
        "PULUMI_HOME": os.environ["PULUMI_HOME"],
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        # The runner trusts the registry's CA (a self-hosted registry's CA is part of the runner's setup).
        "DOCKYARD_REGISTRY_CA": services["DOCKYARD_REGISTRY_CA"],
        "SSL_CERT_FILE": str(ca_bundle),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": wheels,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        # No bytecode at install time: a job's virtualenv is used once (halves the install).
        "PIP_NO_COMPILE": "1",
        "UV_NO_INDEX": "1",
        "UV_FIND_LINKS": wheels,
    }


def tool_cache(services: dict[str, str]) -> Path:
    """Where the bootstraps keep what they built (``DOCKYARD_CACHE``)."""
    return Path(services.get("DOCKYARD_CACHE", Path.home() / ".cache" / "dockyard"))


def engine_bin() -> Path:
    return Path(shutil.which("pulumi") or "pulumi").parent


def commit(directory: Path, message: str) -> str:
    git(directory, "add", "-A")
    git(directory, "commit", "-q", "-m", message)
    git(directory, "push", "-q", "origin", "HEAD:main")
    return git(directory, "rev-parse", "HEAD").strip()


def _team_env(root: Path, runner_env: dict[str, str], backend: Backend) -> dict[str, str]:
    """A team member's shell outside the pipeline: the engine on PATH, the backend, the passphrase."""
    return {
        **runner_env,
        "PATH": f"{engine_bin()}{os.pathsep}{runner_env['PATH']}",
        "HOME": str(root),
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        **backend.env,
    }


def bootstrap_stacks(directory: Path, root: Path, runner_env: dict[str, str], backend: Backend) -> None:
    """The team's one-time bootstrap: the stacks exist in the backend before any pipeline runs."""
    for stack in LOCAL_CHAIN:
        run(
            ["pulumi", "stack", "init", stack, "--secrets-provider", "passphrase", "--non-interactive"],
            directory,
            _team_env(root, runner_env, backend),
        )
    if git(directory, "status", "--porcelain").strip():
        raise AssertionError(f"pulumi stack init changed the committed stack files:\n{git(directory, 'diff')}")


# --- what a run delivered ---------------------------------------------------------------------------------------


@dataclass
class Scratch:
    """A scratch repository a CI runner runs the pipeline of, its origin, and the runner's environment."""

    directory: Path
    origin: Path
    runner_env: dict[str, str]
    root: Path

    def commit(self, message: str) -> str:
        """Commit everything and push it to main, as a developer's push does."""
        return commit(self.directory, message)

    def commit_broken_app_test(self) -> None:
        """A push on top of what the pipeline committed: the app's test stage now fails with :data:`BROKEN`."""
        git(self.directory, "pull", "-q", "--rebase", "origin", "main")
        test_file = self.directory / "app" / "main_test.go"
        test_file.write_text(
            test_file.read_text() + f'\nfunc TestBrokenOnPurpose(t *testing.T) {{ t.Fatal("{BROKEN}") }}\n'
        )
        self.commit("A broken app test")

    def stack_output(self, backend: Backend, stack: str, key: str) -> str:
        """``pulumi stack output`` of a stack the run updated, read from the team's backend."""
        command = ["pulumi", "stack", "output", key, "--stack", stack, "--non-interactive"]
        return run(command, self.directory, _team_env(self.root, self.runner_env, backend), timeout=120).strip()


def served_images(services: dict[str, str], namespace: str) -> set[str]:
    """What the cluster routes to: the images of the Deployments that the app's Service in ``namespace`` selects."""

    def items(kind: str) -> list[dict[str, Any]]:
        kubectl = ["kubectl", "--kubeconfig", services["KUBECONFIG"], "--context", LOCAL_CONTEXT]
        listed: list[dict[str, Any]] = json.loads(run([*kubectl, "get", kind, "-n", namespace, "-o", "json"], PROJECT))[
            "items"
        ]
        return listed

    service = next(s for s in items("services") if s["metadata"]["name"] == "dockyard-app")
    selected = [
        d
        for d in items("deployments")
        if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in service["spec"]["selector"].items())
    ]
    assert selected, "the Service selects a Deployment"
    return {c["image"] for d in selected for c in d["spec"]["template"]["spec"]["containers"]}
