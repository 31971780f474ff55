"""The integration tests' job (``image.build.integration``): derived from the app's compose file, run before the
build pushes anything, and rendered in each CI system's own way (GitLab ``services``, GitHub job services, CircleCI
secondary containers, Jenkins running the compose file), publishing its JUnit report like the build's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dockyard.model.config import EnvironmentConfig, IntegrationConfig
from dockyard.pipeline import circleci, github, gitlab, jenkins
from dockyard.pipeline.derive import derive_pipeline, read_stack_environments
from dockyard.pipeline.files import pipeline_files
from dockyard.pipeline.model import (
    BUILD_JOB,
    INTEGRATION_JOB,
    INTEGRATION_REPORTS_DIRECTORY,
    Pipeline,
    PipelineConfigError,
    ServiceAddress,
    Stage,
    Tool,
)
from dockyard.pipeline.pins import IMAGES, PINS
from dockyard.pipeline.settings import CiConfig, CiSystem
from tests.unit.test_registry_kinds import PYTHON, RUNNER

ROOT = Path(__file__).resolve().parents[2]
REDIS = IMAGES["redis"].reference
#: The interface the app side implements (app/compose.integration.yaml), as a fixture of its own.
COMPOSE = """\
name: dockyard-app-integration
services:
  cache:
    image: ${DOCKYARD_CACHE_IMAGE:-docker.io/library/redis:7-bookworm}
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 2s
      timeout: 5s
      retries: 30
  tests:
    image: ${DOCKYARD_INTEGRATION_IMAGE:-localhost/dockyard/app-integration:latest}
    build:
      context: .
      target: integration
    environment:
      DOCKYARD_CACHE_ADDR: cache:6379
    depends_on:
      cache:
        condition: service_healthy
"""
SECRETS = ("REGISTRY_PASSWORD", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_BACKEND_URL", "KUBECONFIG", "DOCKYARD_GITHUB_TOKEN")


#: dev's integration config in most tests: every key at its default.
DEFAULT = IntegrationConfig()


def _stacks(integration: IntegrationConfig | None = DEFAULT) -> dict[str, EnvironmentConfig]:
    """The committed stacks, dev's build with (or without) ``integration``."""
    stacks = read_stack_environments(ROOT)
    dev = stacks["dev"]
    assert dev.image.build is not None
    build = dev.image.build.model_copy(update={"integration": integration})
    stacks["dev"] = dev.model_copy(update={"image": dev.image.model_copy(update={"build": build})})
    return stacks


def _project(tmp_path: Path, compose: str = COMPOSE, name: str = "compose.integration.yaml") -> Path:
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / name).write_text(compose, encoding="utf-8")
    return tmp_path


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    return derive_pipeline(_stacks(), project_dir=_project(tmp_path))


# --- derive -----------------------------------------------------------------------------------------------------


def test_the_compose_file_gives_the_services_and_the_tests_environment(pipeline: Pipeline) -> None:
    job = pipeline.job(INTEGRATION_JOB)
    (cache,) = job.services
    assert cache.name == "cache"
    # ${VAR:-default}: the default, pinned by digest; the variable kept for the systems that read one there.
    assert (cache.image, cache.image_variable) == (REDIS, "DOCKYARD_CACHE_IMAGE")
    assert cache.ports == (6379,), "the tests' address names the port"
    assert cache.health is not None
    assert cache.health.command == "redis-cli ping"
    assert (cache.health.interval, cache.health.timeout, cache.health.retries) == ("2s", "5s", 30)
    tests = job.commands[-1]
    assert tests.env["DOCKYARD_CACHE_ADDR"] == ServiceAddress("cache", 6379)
    assert "go test -tags" in tests.script
    assert tests.env["TAGS"] == "integration"
    assert job.compose is not None
    assert (job.compose.file, job.compose.tests) == (
        "app/compose.integration.yaml",
        "tests",
    )
    assert job.tools == (Tool.GO,)


def test_the_build_needs_the_integration_tests_so_a_failure_stops_every_later_job(pipeline: Pipeline) -> None:
    jobs = {job.id: job for job in pipeline.delivery}
    assert next(iter(jobs)) == INTEGRATION_JOB
    assert jobs[INTEGRATION_JOB].stage == Stage.INTEGRATION
    assert jobs[BUILD_JOB].needs == (INTEGRATION_JOB,)
    # Every other job of the chain needs the build, so nothing is pushed, scanned or deployed after a failure.
    assert all(BUILD_JOB in job.needs for job in pipeline.delivery if job.id not in (INTEGRATION_JOB, BUILD_JOB))


def test_the_integration_job_holds_no_secret_and_no_stack(pipeline: Pipeline) -> None:
    job = pipeline.job(INTEGRATION_JOB)
    assert job.secrets == []
    assert job.environment is None
    assert job.stack is None
    assert job.registry is None


def test_without_integration_config_there_is_no_job_and_the_build_needs_nothing(tmp_path: Path) -> None:
    # No compose file either: nothing is read.
    pipeline = derive_pipeline(_stacks(None), project_dir=tmp_path)
    assert INTEGRATION_JOB not in [job.id for job in pipeline.delivery]
    assert pipeline.job(BUILD_JOB).needs == ()


def test_the_config_names_another_file_and_service(tmp_path: Path) -> None:
    compose = COMPOSE.replace("  tests:", "  it:")
    config = IntegrationConfig(compose="it/compose.yaml", service="it")
    (tmp_path / "app" / "it").mkdir(parents=True)
    pipeline = derive_pipeline(_stacks(config), project_dir=_project(tmp_path, compose, "it/compose.yaml"))
    job = pipeline.job(INTEGRATION_JOB)
    assert job.compose is not None
    assert (job.compose.file, job.compose.tests) == ("app/it/compose.yaml", "it")
    assert [service.name for service in job.services] == ["cache"]


BAD = [
    (None, "app/compose.integration.yaml: cannot be read"),
    ("services: [", "app/compose.integration.yaml: not YAML at line 1"),
    ("version: '3'\n", "app/compose.integration.yaml: no services"),
    (COMPOSE.replace("  tests:", "  test:"), "app/compose.integration.yaml: service 'tests': missing"),
    (
        COMPOSE.replace("image: ${DOCKYARD_CACHE_IMAGE:-docker.io/library/redis:7-bookworm}", "build: ."),
        "app/compose.integration.yaml: service 'cache': no image (it has build:)",
    ),
    (
        COMPOSE.replace("${DOCKYARD_CACHE_IMAGE:-docker.io/library/redis:7-bookworm}", "${DOCKYARD_CACHE_IMAGE}"),
        "app/compose.integration.yaml: service 'cache': image '${DOCKYARD_CACHE_IMAGE}'",
    ),
    (
        COMPOSE.replace("redis:7-bookworm}", "redis:7-alpine}"),
        "app/compose.integration.yaml: service 'cache': image 'docker.io/library/redis:7-alpine' is pinned by tag only",
    ),
    (
        COMPOSE.replace("target: integration", "target: test"),
        "app/compose.integration.yaml: service 'tests': build.target 'test'",
    ),
    (
        COMPOSE.replace('["CMD", "redis-cli", "ping"]', '["WHAT"]'),
        "app/compose.integration.yaml: service 'cache': healthcheck.test ['WHAT']",
    ),
    (
        COMPOSE.replace("interval: 2s", "interval: often"),
        "app/compose.integration.yaml: service 'cache': healthcheck.interval 'often'",
    ),
    (
        COMPOSE.replace("      cache:\n        condition", "      db:\n        condition"),
        "app/compose.integration.yaml: service 'tests': depends_on 'db', which the file does not declare",
    ),
    (
        COMPOSE.replace("cache:6379", "${CACHE}"),
        "app/compose.integration.yaml: service 'tests': environment DOCKYARD_CACHE_ADDR interpolates a variable",
    ),
]


@pytest.mark.parametrize(("compose", "message"), BAD)
def test_a_bad_compose_file_is_one_error_naming_the_file_the_service_and_what_is_wrong(
    compose: str | None, message: str, tmp_path: Path
) -> None:
    if compose is not None:
        _project(tmp_path, compose)
    with pytest.raises(PipelineConfigError) as raised:
        derive_pipeline(_stacks(), project_dir=tmp_path)
    assert len(raised.value.problems) == 1, raised.value.problems
    (problem,) = raised.value.problems
    assert problem.startswith(f"dev: image.build.integration.compose: {message}"), problem
    assert "allowed" in problem


def test_every_problem_of_the_file_is_reported_at_once(tmp_path: Path) -> None:
    compose = COMPOSE.replace("interval: 2s", "interval: often").replace("target: integration", "target: test")
    with pytest.raises(PipelineConfigError) as raised:
        derive_pipeline(_stacks(), project_dir=_project(tmp_path, compose))
    assert len(raised.value.problems) == 2, raised.value.problems


def test_the_committed_compose_file_is_the_interface_shape() -> None:
    """The app's file (its services, images, health check and the tests' address) is what the pipelines run."""
    committed = yaml.safe_load((ROOT / "app" / "compose.integration.yaml").read_text(encoding="utf-8"))
    shape = yaml.safe_load(COMPOSE)
    # The health check's timing is the app's to tune; everything else is the interface.
    for service in (committed, shape):
        service["services"]["cache"]["healthcheck"] = {
            k: v for k, v in service["services"]["cache"]["healthcheck"].items() if k == "test"
        }
    assert committed == shape


# --- renderers --------------------------------------------------------------------------------------------------


def _script(steps: list[str]) -> str:
    return "\n".join(steps)


def test_gitlab_runs_the_services_by_their_compose_names(pipeline: Pipeline) -> None:
    document = gitlab.document(pipeline, RUNNER, PYTHON)
    job = document[INTEGRATION_JOB]
    assert job["services"] == [{"name": "$DOCKYARD_CACHE_IMAGE", "alias": "cache"}]
    # The variable defaults to the pinned image; a project CI/CD variable of that name replaces it.
    assert job["variables"] == {"DOCKYARD_CACHE_IMAGE": REDIS}
    assert "export DOCKYARD_CACHE_ADDR=cache:6379" in _script(job["script"])
    assert job["stage"] == "integration"
    assert "integration" in document["stages"]
    assert document["stages"].index("integration") < document["stages"].index("build")
    assert document[BUILD_JOB]["needs"] == [{"job": INTEGRATION_JOB, "artifacts": False}]
    assert "environment" not in job, "no stack's protected variables reach the service containers"


def test_github_publishes_the_service_ports_with_health_options_and_uses_localhost(pipeline: Pipeline) -> None:
    jobs = github.delivery_workflow(pipeline)["jobs"]
    job = jobs[INTEGRATION_JOB]
    cache = job["services"]["cache"]
    assert cache["image"] == REDIS
    assert cache["ports"] == ["6379:6379"]
    assert (
        cache["options"] == '--health-cmd "redis-cli ping" --health-interval 2s --health-timeout 5s --health-retries 30'
    )
    envs = [step.get("env", {}) for step in job["steps"]]
    assert {"DOCKYARD_CACHE_ADDR": "localhost:6379"}.items() <= envs[-2].items()
    setup_go = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/setup-go@"))
    assert setup_go["uses"] == f"actions/setup-go@{PINS['actions/setup-go'].sha}"
    assert setup_go["with"] == {"go-version-file": "app/go.mod", "cache": False}
    assert job["permissions"] == {"contents": "read"}
    assert "environment" not in job
    assert jobs[BUILD_JOB]["needs"] == [INTEGRATION_JOB]


def test_circleci_runs_the_services_as_secondary_containers(pipeline: Pipeline) -> None:
    document = circleci.document(pipeline, RUNNER, PYTHON)
    job = document["jobs"][INTEGRATION_JOB]
    assert job["docker"] == [{"image": RUNNER}, {"image": REDIS, "name": "cache"}]
    scripts = _script([step["run"]["command"] for step in job["steps"] if isinstance(step, dict) and "run" in step])
    assert "export DOCKYARD_CACHE_ADDR=cache:6379" in scripts
    delivery = {name: entry for item in document["workflows"]["delivery"]["jobs"] for name, entry in item.items()}
    assert delivery[BUILD_JOB]["requires"] == [INTEGRATION_JOB]
    assert "context" not in delivery[INTEGRATION_JOB], "no stack context: no secrets beside the service containers"


def test_jenkins_runs_the_compose_file_and_always_takes_it_down(pipeline: Pipeline) -> None:
    text = jenkins.document(pipeline, RUNNER, PYTHON)
    stage = text[text.index("stage('integration')") : text.index("stage('build')")]
    steps, post = stage.split("post {")
    assert "export COMPOSE_FILE=app/compose.integration.yaml" in steps
    assert 'export DOCKYARD_CACHE_IMAGE="${DOCKYARD_CACHE_IMAGE:-' + REDIS + '}"' in steps
    assert 'compose --project-name "$project" up --detach cache' in steps
    assert "run --rm -T tests go test -tags integration -count=1 -json ./..." in steps
    always = post[post.index("always {") :]
    assert 'compose --project-name "$project" down --volumes --remove-orphans' in always
    assert "credentials(" not in stage
    assert text.index("stage('integration')") < text.index("stage('build')")


def _published(system: str, pipeline: Pipeline) -> list[str]:
    """Where each system publishes the integration job's JUnit report, also when a test failed."""
    if system == "gitlab":
        artifacts = gitlab.document(pipeline, RUNNER, PYTHON)[INTEGRATION_JOB]["artifacts"]
        return [artifacts["reports"]["junit"]] if artifacts.get("when") == "always" else []
    if system == "github":
        steps = github.delivery_workflow(pipeline)["jobs"][INTEGRATION_JOB]["steps"]
        uploads = [step for step in steps if step.get("uses", "").startswith("actions/upload-artifact@")]
        return [u["with"]["path"] + "junit.xml" for u in uploads if "cancelled()" in u.get("if", "")]
    if system == "circleci":
        steps = circleci.document(pipeline, RUNNER, PYTHON)["jobs"][INTEGRATION_JOB]["steps"]
        return [s["store_test_results"]["path"] + "/junit.xml" for s in steps if "store_test_results" in s]
    text = jenkins.document(pipeline, RUNNER, PYTHON)
    stage = text[text.index("stage('integration')") : text.index("stage('build')")]
    return re.findall(r"always \{\s*junit allowEmptyResults: true, testResults: '([^']+)'", stage)


@pytest.mark.parametrize("system", ["gitlab", "github", "circleci", "jenkins"])
def test_the_junit_report_is_published_also_when_a_test_failed(system: str, pipeline: Pipeline) -> None:
    assert _published(system, pipeline) == [f"{INTEGRATION_REPORTS_DIRECTORY}/junit.xml"]


def test_github_names_the_integration_reports_apart_from_the_builds(pipeline: Pipeline) -> None:
    jobs = github.delivery_workflow(pipeline)["jobs"]
    names = [
        step["with"]["name"]
        for job in jobs.values()
        for step in job["steps"]
        if step.get("uses", "").startswith("actions/upload-artifact@")
    ]
    assert len(names) == len(set(names)), names


@pytest.mark.parametrize("system", ["gitlab", "github", "circleci", "jenkins"])
def test_no_secret_is_near_the_service_containers(system: str, pipeline: Pipeline) -> None:
    rendered: Any
    if system == "github":
        rendered = github.delivery_workflow(pipeline)["jobs"][INTEGRATION_JOB]
    elif system == "gitlab":
        rendered = gitlab.document(pipeline, RUNNER, PYTHON)[INTEGRATION_JOB]
    elif system == "circleci":
        rendered = circleci.document(pipeline, RUNNER, PYTHON)["jobs"][INTEGRATION_JOB]
    else:
        text = jenkins.document(pipeline, RUNNER, PYTHON)
        rendered = text[text.index("stage('integration')") : text.index("stage('build')")]
    assert not [name for name in SECRETS if name in repr(rendered)]


# --- the local runs ---------------------------------------------------------------------------------------------


def test_the_local_runs_drop_a_job_with_services_and_leave_other_files_as_generated(tmp_path: Path) -> None:
    """gitlab-ci-local and act cannot start service containers here (tests/engine/ci_scratch.py says why): should a
    local stack get integration tests, its local run's files lose that job and the build's need of it, nothing else."""
    from tests.engine.ci_scratch import LOCAL_CHAIN, without_service_jobs

    def with_integration(integration: IntegrationConfig | None) -> dict[str, Any]:
        stacks = read_stack_environments(ROOT)
        local = stacks["local"]
        assert local.image.build is not None
        build = local.image.build.model_copy(update={"integration": integration})
        stacks["local"] = local.model_copy(update={"image": local.image.model_copy(update={"build": build})})
        return stacks

    stacks = with_integration(DEFAULT)
    ci = CiConfig(systems=[CiSystem.GITHUB, CiSystem.GITLAB], runner_image=RUNNER)
    plain = pipeline_files(with_integration(None), ci, LOCAL_CHAIN, ROOT)
    with_services = pipeline_files(stacks, ci, LOCAL_CHAIN, _project(tmp_path))
    for name, files in (("plain", plain), ("services", with_services)):
        for path, text in files.items():
            (tmp_path / name / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name / path).write_text(text)
    assert without_service_jobs(tmp_path / "plain") == []
    assert all((tmp_path / "plain" / path).read_text() == text for path, text in plain.items())
    assert without_service_jobs(tmp_path / "services") == [INTEGRATION_JOB, INTEGRATION_JOB]
    gitlab_document = yaml.safe_load((tmp_path / "services" / ".gitlab-ci.yml").read_text())
    assert INTEGRATION_JOB not in gitlab_document
    assert gitlab_document[BUILD_JOB]["needs"] == []
    assert gitlab_document == {key: value for key, value in yaml.safe_load(plain[".gitlab-ci.yml"]).items()}, (
        "the rest as without integration tests"
    )
    delivery = yaml.safe_load((tmp_path / "services" / ".github" / "workflows" / "delivery.yml").read_text())
    assert delivery["on"] == {"push": {"branches": ["main"]}}
    assert INTEGRATION_JOB not in delivery["jobs"]
    assert "needs" not in delivery["jobs"][BUILD_JOB]
    assert delivery["jobs"] == yaml.safe_load(plain[".github/workflows/delivery.yml"])["jobs"]
