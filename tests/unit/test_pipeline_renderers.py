"""Every renderer's documents keep the chain: one build per commit, the scan before anything signs or deploys, prod
behind an approval, promotion and verification present, only the digest between jobs, every third-party image,
orb and action pinned, no secret in the file or echoed. Each renderer is read back into one neutral shape (jobs in
order, what each needs, whether a person approves it, the shell it runs) and the same checks run on all four."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from dockyard.model.config import EnvironmentConfig
from dockyard.pipeline import circleci, github, gitlab, jenkins
from dockyard.pipeline.derive import derive_pipeline, read_stack_environments
from dockyard.pipeline.files import pipeline_files
from dockyard.pipeline.model import (
    JUNIT_REPORT,
    MR_ENV_JOB,
    MR_ENV_STOP_JOB,
    MR_ENV_SWEEP_JOB,
    Pipeline,
    Secret,
)
from dockyard.pipeline.pins import HADOLINT_REQUIREMENT, IMAGES, PINS, UV_REQUIREMENT, image
from dockyard.pipeline.settings import CiConfig, CiConfigError, CiSystem, read_ci_config
from dockyard_components.scanner import FINDINGS_EXIT_CODE
from scripts.generate_workflows import expected_files
from tests.unit.test_registry_kinds import CLOUDS, PYTHON, RUNNER, _stacks

ROOT = Path(__file__).resolve().parents[2]
DIGEST_PINNED = re.compile(r"@sha256:[0-9a-f]{64}$")
SECRET_NAMES = ("REGISTRY_PASSWORD", "PULUMI_CONFIG_PASSPHRASE", "DOCKYARD_GITHUB_TOKEN", "KUBECONFIG")


@dataclass
class NeutralJob:
    """A job read back from a rendered document."""

    id: str
    needs: set[str]
    approval: bool
    script: str
    on_main: bool


def _transitive(jobs: dict[str, NeutralJob], job_id: str) -> set[str]:
    seen: set[str] = set()
    stack = [job_id]
    while stack:
        for need in jobs[stack.pop()].needs:
            if need not in seen:
                seen.add(need)
                stack.append(need)
    return seen


def _github(pipeline: Pipeline) -> dict[str, NeutralJob]:
    jobs = {}
    for document in github.documents(pipeline).values():
        main = "push" in document["on"]
        for job_id, job in document["jobs"].items():
            needs = job.get("needs", [])
            steps = job["steps"]
            # The trivy action is the scan there; the rest is shell.
            script = "\n".join(
                step.get("run", "")
                + (
                    f"trivy image --exit-code {FINDINGS_EXIT_CODE}"
                    if step.get("with", {}).get("exit-code") == str(FINDINGS_EXIT_CODE)
                    else ""
                )
                + (" podman build --tag" if step.get("with", {}).get("load") else "")
                for step in steps
            )
            environment = job.get("environment")
            approval = environment == "prod"  # the prod environment's required reviewers
            jobs[job_id] = NeutralJob(job_id, set([needs] if isinstance(needs, str) else needs), approval, script, main)
    return jobs


def _gitlab(pipeline: Pipeline) -> dict[str, NeutralJob]:
    document = gitlab.document(pipeline, RUNNER, PYTHON)
    jobs = {}
    for job_id, job in document.items():
        if job_id in ("workflow", "stages", "default"):
            continue
        rules = job["rules"]
        jobs[job_id] = NeutralJob(
            job_id,
            {need["job"] for need in job["needs"]},
            any(rule.get("when") == "manual" for rule in rules) and job.get("allow_failure") is False,
            "\n".join(job["script"]),
            rules[0]["if"] == gitlab.MAIN_RULE,
        )
    return jobs


def _circleci(pipeline: Pipeline) -> dict[str, NeutralJob]:
    document = circleci.document(pipeline, RUNNER, PYTHON)
    jobs = {}
    for workflow, jobs_of in document["workflows"].items():
        main = workflow == "delivery"
        for entry in jobs_of["jobs"]:
            ((name, settings),) = entry.items()
            job_id = settings.get("name", name)
            if settings.get("type") == "approval":
                jobs[job_id] = NeutralJob(job_id, set(settings["requires"]), False, "", main)
                continue
            steps = document["jobs"][name]["steps"]
            script = "\n".join(s["run"]["command"] for s in steps if isinstance(s, dict) and "run" in s)
            requires = set(settings.get("requires", []))
            approval = any(jobs[need].script == "" and need.startswith("approve-") for need in requires)
            jobs[job_id] = NeutralJob(job_id, requires, approval, script, main)
    return jobs


def _jenkins(pipeline: Pipeline) -> dict[str, NeutralJob]:
    text = jenkins.document(pipeline, RUNNER, PYTHON)
    heads = list(re.finditer(r"^\s*stage\('([^']+)'\) \{$", text, re.MULTILINE))
    jobs: dict[str, NeutralJob] = {}
    previous: list[str] = []
    for index, head in enumerate(heads):
        end = heads[index + 1].start() if index + 1 < len(heads) else len(text)
        body = text[head.end() : end]
        main = "branch 'main'" in body
        # Declarative stages run in order: each needs every stage before it on the same trigger.
        needs = {job for job in previous if jobs[job].on_main == main}
        jobs[head[1]] = NeutralJob(head[1], needs, "input {" in body and "submitter" in body, body, main)
        previous.append(head[1])
    return jobs


READERS = {"github": _github, "gitlab": _gitlab, "circleci": _circleci, "jenkins": _jenkins}


def _builds(job: NeutralJob) -> bool:
    """Builds the application image: ``pulumi up`` of the building stack without excluding its image, or a
    container build of the runtime target."""
    ups = [line for line in job.script.splitlines() if "pulumi up" in line]
    return any("--exclude" not in line for line in ups) or ("podman build" in job.script and "--tag" in job.script)


#: A merge request's own environment: its image is the change's, pushed as ``mr-<number>`` and never promoted.
MR_JOBS = (MR_ENV_JOB, MR_ENV_STOP_JOB, MR_ENV_SWEEP_JOB)


@pytest.mark.parametrize("system", list(READERS))
def test_exactly_one_build_per_commit(system: str, pipeline: Pipeline) -> None:
    jobs = {job_id: job for job_id, job in READERS[system](pipeline).items() if job_id not in MR_JOBS}
    for main, expected in ((True, "build"), (False, "image-test")):
        builds = [job.id for job in jobs.values() if job.on_main == main and _builds(job)]
        assert builds == [expected], f"{system}: {builds}"
    assert not any("podman push" in job.script or "docker push" in job.script for job in jobs.values())


@pytest.mark.parametrize("system", list(READERS))
def test_only_a_merge_requests_environment_pushes_the_changes_image_under_its_own_tag(
    system: str, pipeline: Pipeline
) -> None:
    jobs = READERS[system](pipeline)
    pushing = [job for job in jobs.values() if "podman push" in job.script]
    assert [job.id for job in pushing] == [MR_ENV_JOB], system
    (job,) = pushing
    assert not job.on_main
    assert 'podman push --authfile "$HOME/.docker/config.json" --digestfile mr-image.digest "$IMAGE_NAME:mr-$MR"' in (
        job.script
    )
    assert job.script.index("dockyard env create") > job.script.index("podman push")
    if system != "github":  # GitHub: another workflow's job cannot be waited on (mr-env.yml runs the tests itself)
        assert "image-test" in _transitive(jobs, MR_ENV_JOB), system
    assert "dockyard env sweep" in jobs[MR_ENV_SWEEP_JOB].script


@pytest.mark.parametrize("system", list(READERS))
def test_the_scan_gate_comes_before_every_job_that_signs_or_deploys(system: str, pipeline: Pipeline) -> None:
    jobs = READERS[system](pipeline)
    gates = [
        job.id
        for job in jobs.values()
        if job.on_main and "trivy image" in job.script and f"--exit-code {FINDINGS_EXIT_CODE}" in job.script
    ]
    assert gates == ["scan"], gates
    acting = [
        job.id
        for job in jobs.values()
        if re.search(r"cosign (sign|attest)|pulumi up[^\n]*--exclude|dockyard promote|dockyard switch", job.script)
    ]
    assert set(acting) >= {"deploy-dev", "promote-staging", "promote-prod"}
    for job_id in acting:
        assert "scan" in _transitive(jobs, job_id), f"{system}: {job_id} does not wait for the scan"


@pytest.mark.parametrize("system", list(READERS))
def test_prod_waits_for_an_approval_and_nothing_else_does(system: str, pipeline: Pipeline) -> None:
    jobs = READERS[system](pipeline)
    approved = [job.id for job in jobs.values() if job.approval]
    assert approved == ["promote-prod"], f"{system}: {approved}"


@pytest.mark.parametrize("system", list(READERS))
def test_promotion_and_verification_are_present_in_order(system: str, pipeline: Pipeline) -> None:
    jobs = READERS[system](pipeline)
    assert 'dockyard verify --stack "$STACK"' in jobs["deploy-dev"].script
    for job_id, release in (("promote-staging", "dockyard canary advance"), ("promote-prod", "dockyard switch")):
        script = jobs[job_id].script
        promote = script.index('dockyard promote --from "$SOURCE" --to "$STACK" --yes --verify')
        assert promote < script.index(release), f"{system}:{job_id}"
        # The upstream must still serve this run's digest before anything is written.
        assert script.index("pulumi stack output") < promote
    assert "promote-staging" in _transitive(jobs, "promote-prod")
    assert "deploy-dev" in _transitive(jobs, "promote-staging")


@pytest.mark.parametrize("system", ["gitlab", "circleci", "jenkins"])
def test_only_the_digest_travels_between_jobs(system: str, pipeline: Pipeline) -> None:
    jobs = READERS[system](pipeline)
    every = "\n".join(job.script for job in jobs.values())
    assert not re.search(r"dockyard-app:|:main\b|:latest\b", every), "a tag is re-read"
    # The build refuses anything but a digest-pinned reference before handing it on.
    build = jobs["build"].script
    assert build.index("@sha256:[0-9a-f]{64}$") < build.index("image-ref")


def _images(system: str, pipeline: Pipeline) -> list[str]:
    if system == "gitlab":
        document = gitlab.document(pipeline, RUNNER, PYTHON)
        return [job["image"] for job in document.values() if isinstance(job, dict) and "image" in job]
    if system == "circleci":
        document = circleci.document(pipeline, RUNNER, PYTHON)
        assert "orbs" not in document, "orbs are pinned by version only; every tool comes from a pinned image"
        return [docker["image"] for job in document["jobs"].values() for docker in job["docker"]]
    return re.findall(r"image '([^']+)'", jenkins.document(pipeline, RUNNER, PYTHON))


@pytest.mark.parametrize("system", ["gitlab", "circleci", "jenkins"])
def test_every_image_is_pinned_by_digest(system: str, pipeline: Pipeline) -> None:
    images = _images(system, pipeline)
    assert RUNNER in images
    assert PYTHON in images
    assert all(DIGEST_PINNED.search(ref) for ref in images), images


def test_every_pinned_action_and_image_is_used_by_some_registry_kind(pipeline: Pipeline) -> None:
    used = "\n".join(github.render(pipeline).values())
    for registry in CLOUDS.values():
        used += "\n".join(github.render(derive_pipeline(_stacks(registry))).values())
    # The local chain's programs scan (signing.scan): its workflow installs trivy with setup-trivy.
    local_chain = derive_pipeline(read_stack_environments(ROOT), ("local", "local-staging", "local-prod"))
    used += "\n".join(github.render(local_chain).values())
    unused = [action for action, pin in PINS.items() if f"{action}@{pin.sha}" not in used]
    assert unused == []
    files = "\n".join(pipeline_files(read_stack_environments(ROOT), read_ci_config(ROOT)).values())
    assert [name for name in IMAGES if image(name) not in files] == []


@pytest.mark.parametrize("system", list(READERS))
def test_no_secret_is_in_a_file_or_traced(system: str, pipeline: Pipeline) -> None:
    jobs = READERS[system](pipeline)
    for job in jobs.values():
        assert "set -x" not in job.script
        for name in SECRET_NAMES:
            assert not re.search(rf"echo[^\n|]*\${{?{name}\b", job.script), f"{system}:{job.id} echoes {name}"
    if system == "jenkins":
        text = jenkins.document(pipeline, RUNNER, PYTHON)
        # Interpolation happens only in double-quoted Groovy strings, and the file has none.
        assert '"$' not in re.sub(r"'''.*?'''", "", text, flags=re.DOTALL)
        assert text.count("#!/bin/bash\nset -euo pipefail\n") == text.count("sh(label:")


def test_a_secret_reaches_a_script_only_through_its_environment(pipeline: Pipeline) -> None:
    """In the container-based systems a command's secret is exported from the CI system's variable of that name."""
    script = "\n".join(gitlab.document(pipeline, RUNNER, PYTHON)["build"]["script"])
    assert 'export GHCR_TOKEN="$REGISTRY_PASSWORD"' in script
    assert "export IMAGE_URN='urn:pulumi:dev::*::dockyard:index:AppImage**'" in script


def test_gitlab_keyless_signing_uses_an_id_token_and_the_environments_protect_secrets(pipeline: Pipeline) -> None:
    document = gitlab.document(pipeline, RUNNER, PYTHON)
    assert document["supply-chain"]["id_tokens"] == {"SIGSTORE_ID_TOKEN": {"aud": "sigstore"}}
    assert document["promote-prod"]["environment"] == {"name": "prod"}
    assert document["promote-prod"]["resource_group"] == "stack-prod"
    assert document["build"]["artifacts"]["reports"]["dotenv"] == "image-ref.env"
    assert [need for need in document["promote-prod"]["needs"] if need["artifacts"]] == [
        {"job": "build", "artifacts": True}
    ]


def test_circleci_contexts_hold_each_stacks_secrets(pipeline: Pipeline) -> None:
    document = circleci.document(pipeline, RUNNER, PYTHON)
    delivery = {
        name: settings for entry in document["workflows"]["delivery"]["jobs"] for name, settings in entry.items()
    }
    assert delivery["promote-prod"]["context"] == ["dockyard-prod"]
    assert delivery["approve-promote-prod"]["type"] == "approval"
    assert delivery["promote-prod"]["requires"][-1] == "approve-promote-prod"
    assert delivery["promote-prod"]["serial-group"] == "<< pipeline.project.slug >>/stack-prod"
    assert all(settings["filters"] == {"branches": {"only": ["main"]}} for settings in delivery.values())


def test_jenkins_binds_credentials_and_signs_with_the_key_pair(pipeline: Pipeline) -> None:
    text = jenkins.document(pipeline, RUNNER, PYTHON)
    prod = text[text.index("stage('promote-prod')") :]
    assert prod.index("input {") < prod.index("agent {"), "the approval comes before the agent starts"
    assert "submitter 'release-managers,platform-lead'" in prod
    assert "PULUMI_CONFIG_PASSPHRASE = credentials('prod-pulumi-config-passphrase')" in prod
    supply = text[text.index("stage('supply-chain')") : text.index("stage('deploy-dev')")]
    assert 'cosign sign --yes --key "$COSIGN_KEY" "$IMAGE_REF"' in supply
    assert "COSIGN_KEY = credentials('cosign-private-key')" in supply
    assert "--certificate-identity" not in supply
    assert "unstash 'vulnerability-report'" in supply


def test_the_promotion_into_staging_waits_out_its_soak_instead_of_being_refused(
    stacks: dict[str, EnvironmentConfig], pipeline: Pipeline
) -> None:
    """staging takes releases that soaked 30 min on dev, deployed minutes before in the same run: every system
    holds the unattended promotion that long; after prod's approval only its wait timer is slept (the reviewer's
    time counts toward the soak, which the gate checks when the job runs)."""
    soak, wait_timer = stacks["staging"].promotion.soak_minutes, stacks["prod"].github.wait_timer_minutes
    assert (soak, wait_timer) == (30, 5)
    lab = gitlab.document(pipeline, RUNNER, PYTHON)
    assert lab["promote-staging"]["rules"] == [{"if": gitlab.MAIN_RULE, "when": "delayed", "start_in": "30 minutes"}]
    assert lab["promote-prod"]["rules"][0]["when"] == "manual"
    circle = circleci.document(pipeline, RUNNER, PYTHON)["jobs"]
    assert circle["promote-staging"]["steps"][0]["run"]["command"] == f"sleep {soak * 60}\n"
    assert circle["promote-prod"]["steps"][0]["run"]["command"] == f"sleep {wait_timer * 60}\n"
    text = jenkins.document(pipeline, RUNNER, PYTHON)
    staging = text[text.index("stage('promote-staging')") : text.index("stage('promote-prod')")]
    prod = text[text.index("stage('promote-prod')") :]
    assert f"sleep(time: {soak}, unit: 'MINUTES')" in staging
    assert f"sleep(time: {wait_timer}, unit: 'MINUTES')" in prod
    assert not [job.id for job in pipeline.delivery if job.hold_minutes and job.id.startswith(("build", "scan"))]


# --- config and files -------------------------------------------------------------------------------------------


def test_the_committed_files_are_the_generated_ones() -> None:
    expected = expected_files(ROOT)
    assert set(expected) == {
        ".github/workflows/ci.yml",
        ".github/workflows/delivery.yml",
        ".github/workflows/preview.yml",
        ".github/workflows/mr-env.yml",
        ".gitlab-ci.yml",
        ".circleci/config.yml",
        "Jenkinsfile",
    }
    for path, content in expected.items():
        assert (ROOT / path).read_text(encoding="utf-8") == content, (
            f"run python -m scripts.generate_workflows ({path})"
        )
        first = content.splitlines()[0]
        assert "generated by scripts/generate_workflows.py" in first


def test_yaml_documents_parse_back() -> None:
    files = expected_files(ROOT)
    for path in (".gitlab-ci.yml", ".circleci/config.yml"):
        assert isinstance(yaml.safe_load(files[path]), dict)


def test_only_the_chosen_systems_are_generated(stacks: dict[str, EnvironmentConfig]) -> None:
    files = pipeline_files(stacks, CiConfig.model_validate({"systems": ["github"]}))
    assert all(path.startswith(".github/workflows/") for path in files)
    files = pipeline_files(stacks, CiConfig.model_validate({"systems": ["jenkins"], "runnerImage": RUNNER}))
    assert list(files) == ["Jenkinsfile"]


def test_ci_config_errors_name_the_key(tmp_path: Path) -> None:
    def problems(config: str) -> str:
        (tmp_path / "Pulumi.yaml").write_text(f"name: x\nruntime: python\nconfig:\n{config}")
        with pytest.raises(CiConfigError) as raised:
            read_ci_config(tmp_path)
        return str(raised.value)

    assert problems("  dockyard-ci:systems:\n    value: [github, travis]\n").startswith(
        "Pulumi.yaml: dockyard-ci:systems[1]: found 'travis'; allowed: "
    )
    assert problems("  dockyard-ci:systems:\n    value: [gitlab]\n") == (
        "Pulumi.yaml: dockyard-ci:runnerImage: missing with gitlab; allowed: an image pinned by digest that has the "
        "pipeline's tools"
    )
    assert problems("  dockyard-ci:systems:\n    value: [jenkins]\n  dockyard-ci:runnerImage:\n    value: a/b:1\n") == (
        "Pulumi.yaml: dockyard-ci:runnerImage: found 'a/b:1'; allowed: an image pinned by digest, "
        "registry/repository[:tag]@sha256:<64 hex>"
    )
    (tmp_path / "Pulumi.yaml").write_text("name: x\nruntime: python\n")
    assert read_ci_config(tmp_path).systems == [CiSystem.GITHUB]


def test_the_program_never_reads_the_ci_keys() -> None:
    # They live outside dockyard:, which the program validates as stack config.
    document = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert not [key for key in document["config"] if key.startswith("dockyard:")]
    assert read_ci_config(ROOT).systems == list(CiSystem)


# --- what running the pipeline on this machine found (tests/engine/test_pipeline_run.py runs it) ---------------------


@pytest.mark.parametrize("system", list(READERS))
def test_every_job_that_installs_the_project_installs_the_components_first(system: str, pipeline: Pipeline) -> None:
    """No package index serves dockyard-components: each ``pip install`` of the project names ./components too."""
    installs = [
        line
        for job in READERS[system](pipeline).values()
        for line in job.script.splitlines()
        if "pip install" in line
        and "$HADOLINT" not in line  # the Dockerfile linter's own venv
        and UV_REQUIREMENT not in line  # the installer, into the job's venv first
    ]
    assert installs, "some job installs the project"
    assert all("./components ." in line for line in installs), installs


@pytest.mark.parametrize("system", list(READERS))
def test_the_build_targets_the_registry_credential_check_with_the_image(system: str, pipeline: Pipeline) -> None:
    """On a new stack the image build depends on the registry's credential check, a child of ContainerRegistry."""
    assert '--target "$IMAGE_URN" --target "$REGISTRY_URN"' in READERS[system](pipeline)["build"].script
    *_, build = pipeline.job("build").commands
    assert build.env["REGISTRY_URN"] == "urn:pulumi:dev::*::dockyard:index:ContainerRegistry**"


def test_verify_gets_the_registry_password(pipeline: Pipeline) -> None:
    """``dockyard verify`` pulls the image and attests in the registry: it needs the stack's registry password."""
    verify = next(c for c in pipeline.job("deploy-dev").commands if "dockyard verify" in c.script)
    assert verify.env.get("GHCR_TOKEN") == Secret("REGISTRY_PASSWORD")


def test_a_failed_preview_prints_its_diagnostics(pipeline: Pipeline) -> None:
    """``pulumi preview --json > file`` keeps the engine's errors in the file: a failed preview prints them."""
    script = gitlab.document(pipeline, RUNNER, PYTHON)["preview"]["script"][-1]
    assert '.venv/bin/dockyard pr-summary --errors "$PREVIEWS/$STACK.json"' in script
    assert "exit 1" in script


def test_a_preview_gets_the_registry_password_its_stacks_program_reads_from_a_variable(tmp_path: Path) -> None:
    """The local chain's programs read ``$DOCKYARD_REGISTRY_PASSWORD`` (``registry.passwordEnv``) and check every
    digest's signature in the registry on a preview too: without it a merge request's previews were refused."""
    from scripts.generate_workflows import main

    assert main(["--stacks", "local,local-staging,local-prod", "--systems", "gitlab", "--out", str(tmp_path)]) == 0
    script = yaml.safe_load((tmp_path / ".gitlab-ci.yml").read_text())["preview"]["script"][-1]
    assert 'export DOCKYARD_REGISTRY_PASSWORD="$REGISTRY_PASSWORD"' in script
    assert script.index("DOCKYARD_REGISTRY_PASSWORD") < script.index("pulumi preview")


def test_the_generator_renders_any_set_of_stacks_without_editing_files(tmp_path: Path) -> None:
    """The local chain (github.enabled is false there) rendered into a directory; the project is left as it was."""
    from scripts.generate_workflows import main

    before = {path: (ROOT / path).read_text() for path in expected_files(ROOT)}
    assert main(["--stacks", "local,local-staging,local-prod", "--systems", "gitlab", "--out", str(tmp_path)]) == 0
    assert {path: (ROOT / path).read_text() for path in before} == before
    document = yaml.safe_load((tmp_path / ".gitlab-ci.yml").read_text())
    delivery = [
        job
        for job, entry in document.items()
        if isinstance(entry, dict) and entry.get("stage") in ("build", "scan", "supply-chain", "deploy", "promote")
    ]
    assert delivery == ["build", "scan", "supply-chain", "deploy-local", "promote-local-staging", "promote-local-prod"]
    with pytest.raises(Exception, match="no-such-stack"):
        main(["--stacks", "local,no-such-stack", "--out", str(tmp_path)])


@pytest.mark.parametrize("system", list(READERS))
def test_every_promotion_commits_its_stack_file_naming_the_digest_and_the_pipeline(
    system: str, pipeline: Pipeline
) -> None:
    jobs = READERS[system](pipeline)
    for job_id in ("promote-staging", "promote-prod"):
        script = jobs[job_id].script
        assert 'git add -- "$file"' in script, job_id
        assert '-m "Promote $STACK to ${IMAGE_REF#*@}"' in script, job_id
        assert '-m "Pipeline: $PIPELINE_URL"' in script, job_id
        assert script.index("dockyard promote") < script.index('git push --quiet "$REMOTE"'), job_id
    assert "git push" not in jobs["deploy-dev"].script, "only promotions write to the repository"


# --- the Dockerfile is linted before anything builds; the test reports are published, also on failure --------------


def _rendered(system: str, pipeline: Pipeline) -> str:
    """Everything ``system``'s files say, env blocks included."""
    if system == "github":
        return repr(github.documents(pipeline))
    if system == "jenkins":
        return jenkins.document(pipeline, RUNNER, PYTHON)
    return repr((gitlab if system == "gitlab" else circleci).document(pipeline, RUNNER, PYTHON))


def _first_build(script: str) -> int:
    marks = [script.find(mark) for mark in ("pulumi up", "podman build", "--target") if mark in script]
    return min(marks)


@pytest.mark.parametrize("system", list(READERS))
@pytest.mark.parametrize("job_id", ["build", "image-test"])
def test_hadolint_lints_the_dockerfile_before_the_build(system: str, job_id: str, pipeline: Pipeline) -> None:
    script = READERS[system](pipeline)[job_id].script
    assert '"$linter/bin/hadolint" "$DOCKERFILE"' in script
    assert script.index("hadolint") < _first_build(script)
    assert HADOLINT_REQUIREMENT in _rendered(system, pipeline)


def test_the_pipelines_hadolint_is_the_lint_tiers_pin() -> None:
    with (ROOT / "pyproject.toml").open("rb") as file:
        dev = tomllib.load(file)["project"]["optional-dependencies"]["dev"]
    assert HADOLINT_REQUIREMENT in dev


def _published_reports(system: str, pipeline: Pipeline, job_id: str) -> list[str]:
    """What job ``job_id`` publishes as test results in ``system``, also when it failed."""
    if system == "gitlab":
        artifacts = gitlab.document(pipeline, RUNNER, PYTHON)[job_id]["artifacts"]
        return [artifacts["reports"]["junit"]] if artifacts.get("when") == "always" else []
    if system == "github":
        workflow = "delivery.yml" if job_id == "build" else "ci.yml"
        steps = github.documents(pipeline)[workflow]["jobs"][job_id]["steps"]
        return [
            step["with"]["path"] + "junit.xml"
            for step in steps
            if step.get("uses", "").startswith("actions/upload-artifact@") and "cancelled()" in step.get("if", "")
        ]
    if system == "circleci":
        steps = circleci.document(pipeline, RUNNER, PYTHON)["jobs"][job_id]["steps"]
        return [s["store_test_results"]["path"] + "/junit.xml" for s in steps if "store_test_results" in s]
    body = _jenkins(pipeline)[job_id].script
    return re.findall(r"post \{\s*always \{\s*junit allowEmptyResults: true, testResults: '([^']+)'", body)


@pytest.mark.parametrize("system", list(READERS))
@pytest.mark.parametrize("job_id", ["build", "image-test"])
def test_the_junit_report_is_published_even_when_a_test_fails(system: str, job_id: str, pipeline: Pipeline) -> None:
    assert _published_reports(system, pipeline, job_id) == [JUNIT_REPORT]
    folder = JUNIT_REPORT.rsplit("/", 1)[0]
    rendered = _rendered(system, pipeline)
    if job_id == "build":  # where the podman builder writes it: the build job's environment names the folder
        assert f"DOCKYARD_TEST_REPORTS={folder}" in rendered or f"'DOCKYARD_TEST_REPORTS': '{folder}'" in rendered
    else:  # the check exports the reports stage there before the test stage, and converts the events
        script = READERS[system](pipeline)[job_id].script
        assert "python3 components/dockyard_components/test_reports.py" in script
        assert f"dest={folder}" in rendered or "dest=$REPORTS_DIR" in script
        names = [command.name for command in pipeline.check.commands]
        assert names.index("Export the test reports (target test-reports)") < names.index("Run the tests (target test)")
