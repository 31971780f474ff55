"""The generated workflows: pinning, permissions, script injection, deploy gating, and drift from the committed files.

Pure tests of :mod:`components.workflows`; no Pulumi runtime.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import workflows
from components.config import EnvironmentConfig, parse_environment
from components.pins import PINS, uses

ROOT = Path(__file__).resolve().parents[2]
SHA = re.compile(r"^[0-9a-f]{40}$")


@pytest.fixture(scope="module")
def stacks() -> dict[str, EnvironmentConfig]:
    return workflows.read_stack_environments(ROOT)


@pytest.fixture(scope="module")
def documents(stacks: dict[str, EnvironmentConfig]) -> dict[str, workflows.Document]:
    return workflows.workflow_documents(stacks)


def _steps(document: workflows.Document) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_id, job in document["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def _all_steps(documents: dict[str, workflows.Document]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for filename, document in documents.items():
        for job_id, step in _steps(document):
            yield filename, job_id, step


def _env(stack: str, **overrides: Any) -> EnvironmentConfig:
    document: dict[str, Any] = {
        "tier": "dev",
        "registry": {"kind": "ghcr", "repository": "acme/app", "username": "ci"},
        "image": {"build": {}},
        "kubernetes": {"mode": "cluster"},
        "github": {"enabled": True, "repository": "acme/app"},
    }
    document.update(overrides)
    return parse_environment(stack, document)


# --- the committed configs produce the expected set ----------------------------------------------------------


def test_committed_stacks_are_read_and_only_github_enabled_ones_run_in_ci(
    stacks: dict[str, EnvironmentConfig],
) -> None:
    assert set(stacks) == {"dev", "local", "local-prod", "local-staging", "prod", "staging"}
    assert list(workflows.github_stacks(stacks)) == ["dev", "prod", "staging"]
    builder = workflows.building_stack(stacks)
    assert builder is not None
    assert builder[0] == "dev"


def test_preview_matrix_covers_every_github_stack(documents: dict[str, workflows.Document]) -> None:
    job = documents["preview.yml"]["jobs"][workflows.PREVIEW_JOB]
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod", "staging"]
    assert job["strategy"]["fail-fast"] is False
    preview = next(step for step in job["steps"] if step.get("name") == "Preview")
    assert 'pulumi preview --stack "$STACK" --policy-pack policies --json' in preview["run"]
    assert preview["env"]["STACK"] == "${{ matrix.stack }}"


def test_preview_summary_posts_one_sticky_comment(documents: dict[str, workflows.Document]) -> None:
    jobs = documents["preview.yml"]["jobs"]
    summary = jobs[workflows.SUMMARY_JOB]
    assert summary["needs"] == workflows.PREVIEW_JOB
    runs = [step["run"] for step in summary["steps"] if "run" in step]
    assert any(run.startswith("dockyard pr-summary previews/*.json") for run in runs)
    comment_job = jobs[workflows.COMMENT_JOB]
    assert comment_job["needs"] == workflows.SUMMARY_JOB
    comments = [s for s in comment_job["steps"] if s.get("uses") == uses("marocchino/sticky-pull-request-comment")]
    assert len(comments) == 1
    assert comments[0]["with"]["header"] == workflows.PREVIEW_COMMENT_HEADER


def test_the_job_that_writes_to_the_pull_request_runs_none_of_its_code(
    documents: dict[str, workflows.Document],
) -> None:
    comment_job = documents["preview.yml"]["jobs"][workflows.COMMENT_JOB]
    assert all("run" not in step for step in comment_job["steps"])
    assert all(step["uses"] != uses("actions/checkout") for step in comment_job["steps"])


# --- pinning ---------------------------------------------------------------------------------------------------


def test_every_uses_is_a_full_sha_from_the_pin_table(documents: dict[str, workflows.Document]) -> None:
    seen = set()
    for filename, job_id, step in _all_steps(documents):
        if "uses" not in step:
            continue
        action, _, ref = step["uses"].partition("@")
        assert action in PINS, f"{filename}:{job_id}: {action} is not in components/pins.py"
        assert SHA.match(ref), f"{filename}:{job_id}: {step['uses']} is not pinned to a 40-hex SHA"
        assert ref == PINS[action].sha, f"{filename}:{job_id}: {action} is not the table's SHA"
        seen.add(action)
    assert seen == set(PINS), f"pins no workflow uses: {sorted(set(PINS) - seen)}"


def test_rendered_uses_lines_carry_the_version_comment(stacks: dict[str, EnvironmentConfig]) -> None:
    for path, text in workflows.render_workflow_files(stacks).items():
        for line in text.splitlines():
            if line.strip().removeprefix("- ").startswith("uses:"):
                action, _, rest = line.split("uses: ", 1)[1].partition("@")
                assert rest == f"{PINS[action].sha} # {PINS[action].version}", f"{path}: {line!r}"


# --- script injection ------------------------------------------------------------------------------------------


def test_no_expression_is_interpolated_into_a_run_script(documents: dict[str, workflows.Document]) -> None:
    for filename, job_id, step in _all_steps(documents):
        run = step.get("run", "")
        # Stricter than "no secrets or github.event": values reach scripts only through env:.
        assert "${{" not in run, f"{filename}:{job_id}:{step.get('name')}: expression inside run"
        assert "secrets." not in run
        assert "github.event" not in run


def test_checkout_never_persists_the_token(documents: dict[str, workflows.Document]) -> None:
    checkouts = [step for _, _, step in _all_steps(documents) if step.get("uses") == uses("actions/checkout")]
    assert checkouts
    assert all(step["with"]["persist-credentials"] is False for step in checkouts)


def test_every_job_has_a_timeout(documents: dict[str, workflows.Document]) -> None:
    for filename, document in documents.items():
        for job_id, job in document["jobs"].items():
            assert 0 < job["timeout-minutes"] <= 60, f"{filename}:{job_id}"


# --- permissions -----------------------------------------------------------------------------------------------


EXPECTED_PERMISSIONS = {
    ("ci.yml", workflows.CI_TEST_JOB): {"contents": "read", "packages": "read"},
    ("ci.yml", workflows.CI_PUBLISH_JOB): {
        "contents": "read",
        "packages": "write",
        "id-token": "write",
        "attestations": "write",
    },
    ("preview.yml", workflows.PREVIEW_JOB): {"contents": "read"},
    ("preview.yml", workflows.SUMMARY_JOB): {"contents": "read"},
    ("preview.yml", workflows.COMMENT_JOB): {"pull-requests": "write"},
    ("deploy.yml", "deploy-dev"): {"contents": "read"},
    ("deploy.yml", "deploy-staging"): {"contents": "read"},
    ("deploy.yml", "deploy-prod"): {"contents": "read"},
}


def test_permissions_are_empty_at_the_top_and_minimal_per_job(documents: dict[str, workflows.Document]) -> None:
    actual = {}
    for filename, document in documents.items():
        assert document["permissions"] == {}, f"{filename}: top-level permissions must be {{}}"
        for job_id, job in document["jobs"].items():
            actual[(filename, job_id)] = job["permissions"]
    assert actual == EXPECTED_PERMISSIONS


def test_a_registry_other_than_ghcr_gets_no_packages_permission_and_uses_the_environment_secret() -> None:
    env = _env(
        "dev",
        registry={"kind": "selfHosted", "server": "registry.example.com", "repository": "acme/app", "username": "ci"},
    )
    document = workflows.ci_workflow("dev", env)
    assert document["jobs"][workflows.CI_TEST_JOB]["permissions"] == {"contents": "read"}
    publish = document["jobs"][workflows.CI_PUBLISH_JOB]
    assert "packages" not in publish["permissions"]
    login = next(step for step in publish["steps"] if step.get("uses") == uses("docker/login-action"))
    assert login["with"]["password"] == "${{ secrets.REGISTRY_PASSWORD }}"
    assert publish["environment"] == "dev"


# --- ci.yml ----------------------------------------------------------------------------------------------------


def test_ci_tests_scans_then_pushes_signs_and_attests_only_outside_pull_requests(
    documents: dict[str, workflows.Document],
) -> None:
    ci = documents["ci.yml"]
    assert set(ci["on"]) == {"push", "pull_request"}
    assert ci["on"]["push"] == {"branches": ["main"], "tags": ["v*"]}
    test_job = ci["jobs"][workflows.CI_TEST_JOB]
    publish = ci["jobs"][workflows.CI_PUBLISH_JOB]
    assert test_job["if"] == "github.event_name == 'pull_request'"
    assert publish["if"] == "github.event_name == 'push'"

    def names(job: dict[str, Any]) -> list[str]:
        return [step["uses"].split("@")[0] if "uses" in step else step["name"] for step in job["steps"]]

    assert names(publish) == [
        "actions/checkout",
        "docker/metadata-action",
        "docker/setup-buildx-action",
        "docker/login-action",
        "docker/build-push-action",  # --target test
        "docker/build-push-action",  # runtime, loaded for the scan
        "aquasecurity/trivy-action",
        "docker/build-push-action",  # push
        "sigstore/cosign-installer",
        "Sign the image (keyless)",
        "actions/attest-build-provenance",
    ]
    pushes = [step for step in test_job["steps"] if step.get("with", {}).get("push") is True]
    assert pushes == [], "a pull request must never push"
    test_build, runtime_build, scan, push = (publish["steps"][i] for i in (4, 5, 6, 7))
    assert test_build["with"]["target"] == "test"
    assert runtime_build["with"]["target"] == "runtime"
    for build in (test_build, runtime_build, push):
        assert "type=registry,ref=" in build["with"]["cache-from"]
        assert build["with"]["cache-to"].startswith("type=registry,ref=")
    assert scan["with"]["severity"] == "CRITICAL,HIGH"
    assert scan["with"]["exit-code"] == "1"
    assert scan["with"]["image-ref"] == runtime_build["with"]["tags"]
    assert push["with"]["push"] is True
    assert push["with"]["sbom"] is True
    assert push["with"]["provenance"] == "mode=max"
    sign = publish["steps"][9]
    assert sign["env"]["DIGEST"] == "${{ steps.push.outputs.digest }}"
    assert "cosign sign --yes" in sign["run"]


def test_two_building_stacks_are_rejected() -> None:
    with pytest.raises(workflows.WorkflowConfigError, match="one building stack"):
        workflows.building_stack({"a": _env("a"), "b": _env("b")})


# --- deploy.yml ------------------------------------------------------------------------------------------------


def test_prod_deploys_only_on_release_tags_in_the_prod_environment(documents: dict[str, workflows.Document]) -> None:
    jobs = documents["deploy.yml"]["jobs"]
    prod = jobs["deploy-prod"]
    assert prod["environment"] == "prod"
    assert prod["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert "needs" not in prod, "a job that needs a main-only job would be skipped on tags"


def test_dev_then_staging_deploy_from_main(documents: dict[str, workflows.Document]) -> None:
    deploy = documents["deploy.yml"]
    assert deploy["on"] == {"push": {"branches": ["main"], "tags": ["v*"]}}
    jobs = deploy["jobs"]
    assert list(jobs) == ["deploy-dev", "deploy-staging", "deploy-prod"]
    for stack in ("dev", "staging"):
        assert jobs[f"deploy-{stack}"]["if"] == "github.ref == 'refs/heads/main'"
    assert "needs" not in jobs["deploy-dev"]
    assert jobs["deploy-staging"]["needs"] == "deploy-dev"


def test_each_deploy_job_runs_in_its_stack_environment_without_cancelling(
    documents: dict[str, workflows.Document],
) -> None:
    for job_id, job in documents["deploy.yml"]["jobs"].items():
        stack = job_id.removeprefix("deploy-")
        assert job["environment"] == stack
        assert job["concurrency"] == {"group": f"deploy-{stack}", "cancel-in-progress": False}
        up = job["steps"][-1]
        assert up["env"]["STACK"] == stack
        assert up["run"].startswith('pulumi up --yes --stack "$STACK"')


def test_registry_password_env_is_fed_from_the_environment_secret(documents: dict[str, workflows.Document]) -> None:
    dev_up = documents["deploy.yml"]["jobs"]["deploy-dev"]["steps"][-1]
    assert dev_up["env"]["GHCR_TOKEN"] == "${{ secrets.REGISTRY_PASSWORD }}"
    prod_up = documents["deploy.yml"]["jobs"]["deploy-prod"]["steps"][-1]
    assert "GHCR_TOKEN" not in prod_up["env"]


def test_required_checks_name_real_jobs(
    stacks: dict[str, EnvironmentConfig], documents: dict[str, workflows.Document]
) -> None:
    checks = workflows.required_checks(stacks)
    assert checks == ["image-test", "preview (dev)", "preview (staging)"]
    assert documents["ci.yml"]["jobs"][workflows.CI_TEST_JOB]["name"] == "image-test"
    assert documents["preview.yml"]["jobs"][workflows.PREVIEW_JOB]["name"] == "preview (${{ matrix.stack }})"


# --- serialization and drift -----------------------------------------------------------------------------------


def test_rendered_files_parse_back_to_the_documents(stacks: dict[str, EnvironmentConfig]) -> None:
    documents = workflows.workflow_documents(stacks)
    for path, text in workflows.render_workflow_files(stacks).items():
        filename = Path(path).name
        assert text.startswith(f"# {filename}: generated by scripts/generate_workflows.py")
        assert workflows.REGENERATE_COMMAND in text.split("\n", 3)[2]
        assert yaml.safe_load(text) == documents[filename]
        assert "&id" not in text, "no YAML anchors"
        assert "*id" not in text, "no YAML aliases"


def test_committed_workflows_equal_the_generated_ones(stacks: dict[str, EnvironmentConfig]) -> None:
    expected = workflows.render_workflow_files(stacks)
    committed = {
        str(path.relative_to(ROOT)): path.read_text(encoding="utf-8")
        for path in sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    }
    assert committed == expected, f"run {workflows.REGENERATE_COMMAND} and commit .github/workflows/"


def test_check_mode_lists_a_differing_file_and_exits_non_zero(tmp_path: Path) -> None:
    for path in ROOT.glob("Pulumi*.yaml"):
        shutil.copy(path, tmp_path)
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    command = [sys.executable, "-m", "scripts.generate_workflows", "--check", "--project-dir", str(tmp_path)]

    clean = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    deploy = tmp_path / ".github" / "workflows" / "deploy.yml"
    deploy.write_text(
        deploy.read_text(encoding="utf-8").replace("cancel-in-progress: false", "cancel-in-progress: true")
    )
    drifted = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert drifted.returncode == 1
    assert ".github/workflows/deploy.yml" in drifted.stdout


def test_pulumi_cli_matches_the_pinned_sdk() -> None:
    assert importlib.metadata.version("pulumi") == workflows.PULUMI_CLI_VERSION
