"""The generated workflows: one build per commit, the scan gate, digests between jobs, verify and promote, prod behind
its environment, policy violations in the preview comment; pinning, permissions, script injection, and drift.

Pure tests of :mod:`dockyard.pipeline.github` (and of the shell it writes, run against a fake ``pulumi``); the program is
run under mocks only to check which resources the build job's target pattern selects.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pulumi
import pytest
import typer
import yaml

from dockyard.cli import app as dockyard_app
from dockyard.model.config import EnvironmentConfig, parse_environment
from dockyard.pipeline import derive, github, model, pr_summary
from dockyard.pipeline.pins import PINS, TRIVY_VERSION, uses
from dockyard.pipeline.render import REGENERATE_COMMAND, Document
from dockyard_components.scanner import FINDINGS_EXIT_CODE
from tests.stacks import stack_config
from tests.unit.conftest import RecordingMocks, set_stack_config

ROOT = Path(__file__).resolve().parents[2]
SHA = re.compile(r"^[0-9a-f]{40}$")
THIS_RUN_IMAGE = "${{ needs.build.outputs.image-ref }}"
DIGEST_REF = "ghcr.io/acme/dockyard-app@sha256:" + "0123456789abcdef" * 4
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _documents(stacks: Mapping[str, EnvironmentConfig]) -> dict[str, Document]:
    return github.documents(derive.derive_pipeline(stacks))


def _delivery_workflow(stacks: Mapping[str, EnvironmentConfig]) -> Document:
    return github.delivery_workflow(derive.derive_pipeline(stacks))


def _render(stacks: Mapping[str, EnvironmentConfig]) -> dict[str, str]:
    return github.render(derive.derive_pipeline(stacks))


@pytest.fixture(scope="module")
def documents(stacks: dict[str, EnvironmentConfig]) -> dict[str, Document]:
    return _documents(stacks)


@pytest.fixture(scope="module")
def delivery(documents: dict[str, Document]) -> dict[str, Any]:
    jobs: dict[str, Any] = documents[github.DELIVERY_WORKFLOW]["jobs"]
    return jobs


def _steps(document: Document) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_id, job in document["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def _all_steps(documents: dict[str, Document]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for filename, document in documents.items():
        for job_id, step in _steps(document):
            yield filename, job_id, step


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


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


def _promoted(stack: str, tier: str, upstream: str) -> EnvironmentConfig:
    return _env(stack, tier=tier, image={"ref": DIGEST_REF}, promotion={"upstream": upstream})


def _runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def _step(job: dict[str, Any], command: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [step for step in job["steps"] if command in step.get("run", "")]
    assert len(found) == 1, f"{len(found)} steps run {command!r}"
    return found[0]


def _run_with_fake_pulumi(step: dict[str, Any], tmp_path: Path, image_ref: str, current: str) -> tuple[int, str]:
    """Run ``step``'s script as Actions does (bash -eo pipefail), ``pulumi`` answering ``current`` for any output."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "pulumi"
    fake.write_text('#!/bin/sh\nif [ "$1" = stack ]; then printf \'%s\\n\' "$FAKE_OUTPUT"; fi\n')
    fake.chmod(0o755)
    output = tmp_path / "github_output"
    output.write_text("")
    environment = {
        **{name: value for name, value in step.get("env", {}).items() if "${{" not in value},
        "IMAGE_REF": image_ref,
        "FAKE_OUTPUT": current,
        "GITHUB_OUTPUT": str(output),
        "PATH": f"{bin_dir}:/usr/bin:/bin",
    }
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode, output.read_text()


# --- the committed configs produce the expected set ----------------------------------------------------------


def test_committed_stacks_are_read_and_only_github_enabled_ones_run_in_ci(
    stacks: dict[str, EnvironmentConfig],
) -> None:
    assert set(stacks) >= {"dev", "local", "local-prod", "local-staging", "prod", "qa", "staging"}
    assert list(derive.ci_stacks(stacks)) == ["dev", "prod", "qa", "staging"]
    builder = derive.building_stack(stacks)
    assert builder is not None
    assert builder[0] == "dev"
    assert derive.promotions(stacks) == [("dev", "qa"), ("qa", "staging"), ("staging", "prod")]
    # qa is promoted unattended right after dev verifies; prod alone waits for a person.
    pipeline = derive.derive_pipeline(stacks)
    qa = pipeline.job("promote-qa")
    assert (qa.approval, qa.hold_minutes) == (None, 0)
    assert stacks["qa"].requires_verified_releases
    assert pipeline.job("promote-prod").approval is not None


# --- one build per commit, and that digest is what every later job uses ----------------------------------------


def _builds(filename: str, document: Document, stacks: dict[str, EnvironmentConfig]) -> list[str]:
    """Steps that build the application image: BuildKit on its runtime target, podman/docker/buildah, or a
    ``pulumi up`` of the building stack that does not leave its AppImage out."""
    builder = derive.building_stack(stacks)
    assert builder is not None
    stack, env = builder
    assert env.image.build is not None
    found = []
    for job_id, step in _steps(document):
        where = f"{filename}:{job_id}:{step.get('name')}"
        if step.get("uses") == uses("docker/build-push-action") and step["with"]["target"] == env.image.build.target:
            found.append(where)
        run = step.get("run", "")
        if re.search(r"\b(podman|docker|buildah) (build|buildx)\b", run):
            found.append(where)
        for line in run.splitlines():
            words = shlex.split(line) if "pulumi up" in line else []
            if words[:2] != ["pulumi", "up"] or step["env"].get("STACK") != stack:
                continue
            excluded = "--exclude" in words and step["env"].get(words[words.index("--exclude") + 1].strip("$"))
            if excluded != model.image_urn_pattern(stack):
                found.append(where)
    return found


def test_exactly_one_image_build_per_commit_across_all_workflows(
    stacks: dict[str, EnvironmentConfig], documents: dict[str, Document]
) -> None:
    # A pull request's own environment (mr-env.yml) builds the change again to push it as mr-<number>: never
    # delivered, never promoted (tests/unit/test_pipeline_renderers.py checks its tag on every CI system).
    delivering = {name: document for name, document in documents.items() if name != github.MR_ENV_WORKFLOW}
    for event, expected in (("push", [f"{github.DELIVERY_WORKFLOW}:build:"]), ("pull_request", ["ci.yml:"])):
        builds = [
            where
            for filename, document in delivering.items()
            if event in document["on"]
            for where in _builds(filename, document, stacks)
        ]
        assert len(builds) == 1, f"{event}: {builds}"
        assert builds[0].startswith(expected[0]), builds
    pull_request_pushes = [
        step
        for _, document in delivering.items()
        if "pull_request" in document["on"]
        for _, step in _steps(document)
        if step.get("with", {}).get("push") is not False and step.get("uses") == uses("docker/build-push-action")
    ]
    assert pull_request_pushes == [], "a pull request must never push"


def test_the_build_targets_the_image_and_the_deploy_leaves_it_out(delivery: dict[str, Any]) -> None:
    pattern = model.image_urn_pattern("dev")
    build = _step(delivery[model.BUILD_JOB], "pulumi up")
    assert '--target "$IMAGE_URN"' in build["run"]
    assert build["env"] == {**build["env"], "STACK": "dev", "IMAGE_URN": pattern}
    deploy = _step(delivery["deploy-dev"], "pulumi up")
    assert '--exclude "$IMAGE_URN"' in deploy["run"]
    assert deploy["env"]["IMAGE_URN"] == pattern
    assert deploy["env"]["STACK"] == "dev"


def test_the_image_pattern_selects_the_building_stacks_image_and_nothing_else(
    mocks: RecordingMocks, workdir: Path
) -> None:
    urns: dict[str, str] = {}

    @pulumi.runtime.test
    async def run() -> None:
        pulumi.runtime.settings._set_stack("dev")
        set_stack_config(stack_config("dev"))
        program = runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        for name in ("image", "registry", "app"):
            # The engine leaves the root stack's type out of its children's URNs; the mock monitor keeps it.
            urns[name] = (await program[name].urn.future()).replace("::pulumi:pulumi:Stack$", "::")

    run()
    pattern = model.image_urn_pattern("dev")
    # Pulumi's URN globs: ** spans anything, * one name segment (checked against the engine's --target/--exclude).
    regex = re.compile(re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^:]*") + "$")
    assert regex.match(urns["image"]), (pattern, urns["image"])
    assert regex.match(urns["image"].replace("::image", "$pulumi-python:dynamic:Resource::image-podman-build"))
    assert not regex.match(urns["registry"])
    assert not regex.match(urns["app"])


def test_the_build_job_writes_the_kubeconfig_before_its_update(delivery: dict[str, Any]) -> None:
    """``up --target`` still runs the whole program, whose cluster provider reads the kubeconfig."""
    build = delivery[model.BUILD_JOB]
    names = [step["name"] for step in build["steps"]]
    assert names.index("Write the kubeconfig") < names.index(_step(build, "pulumi up")["name"])


def test_the_build_hands_on_only_a_digest_pinned_reference(delivery: dict[str, Any], tmp_path: Path) -> None:
    build_job = delivery[model.BUILD_JOB]
    assert build_job["outputs"] == {"image-ref": "${{ steps.build.outputs.image-ref }}"}
    step = _step(build_job, "pulumi up")
    assert step["id"] == "build"
    rc, output = _run_with_fake_pulumi(step, tmp_path, "", DIGEST_REF)
    assert (rc, output) == (0, f"image-ref={DIGEST_REF}\n")
    for mutable in ("ghcr.io/acme/dockyard-app:main", "ghcr.io/acme/dockyard-app@sha256:short", ""):
        rc, output = _run_with_fake_pulumi(step, tmp_path, "", mutable)
        assert rc == 1, f"{mutable!r} was accepted"
        assert output == "", f"{mutable!r} was handed on"


def test_every_image_reference_between_jobs_is_this_runs_digest(delivery: dict[str, Any]) -> None:
    handed = {
        match
        for job in delivery.values()
        for text in _strings(job)
        for match in EXPRESSION.findall(text)
        if match.startswith("needs.")
    }
    assert handed == {"needs.build.outputs.image-ref"}
    for job_id, job in delivery.items():
        for step in job["steps"]:
            for key in ("image-ref", "IMAGE_REF"):
                value = step.get("with", {}).get(key) or step.get("env", {}).get(key)
                assert value in (None, THIS_RUN_IMAGE), f"{job_id}:{step['name']}: {key}={value}"
    every = "\n".join(text for job in delivery.values() for text in _strings(job))
    assert not re.search(r"dockyard-app:|:main\b|:latest\b|metadata-action", every), "a tag is re-read"


def test_a_job_refuses_a_stack_that_no_longer_has_this_runs_digest(delivery: dict[str, Any], tmp_path: Path) -> None:
    jobs = (("deploy-dev", "dev"), ("promote-qa", "dev"), ("promote-staging", "qa"), ("promote-prod", "staging"))
    for job_id, source in jobs:
        steps = delivery[job_id]["steps"]
        guard = _step(delivery[job_id], "pulumi stack output")
        assert guard["env"]["STACK"] == source
        assert guard["env"]["IMAGE_REF"] == THIS_RUN_IMAGE
        act = next(i for i, s in enumerate(steps) if re.search(r"pulumi up|dockyard promote", s.get("run", "")))
        assert steps.index(guard) < act, f"{job_id}: the check must come before the update"
        newer = DIGEST_REF.replace("0123", "4567")
        assert _run_with_fake_pulumi(guard, tmp_path, DIGEST_REF, newer)[0] == 1
        assert _run_with_fake_pulumi(guard, tmp_path, DIGEST_REF, DIGEST_REF)[0] == 0


# --- the scan gate ---------------------------------------------------------------------------------------------


def _signs_or_deploys(job: dict[str, Any]) -> bool:
    for step in job["steps"]:
        run = step.get("run", "")
        if step.get("uses") == uses("actions/attest-build-provenance") or re.search(r"cosign (sign|attest)", run):
            return True
        if re.search(r"dockyard (promote|switch|canary)", run):
            return True
        if "pulumi up" in run and "--target" not in run:
            return True
    return False


def test_the_scan_gate_is_needed_by_every_job_that_signs_or_deploys(delivery: dict[str, Any]) -> None:
    gates = [
        job_id
        for job_id, job in delivery.items()
        for step in job["steps"]
        if step.get("uses") == uses("aquasecurity/trivy-action")
        and step["with"].get("exit-code") == str(FINDINGS_EXIT_CODE)
    ]
    assert gates == [model.SCAN_JOB]
    scan = delivery[model.SCAN_JOB]
    assert scan["needs"] == [model.BUILD_JOB]
    gate = scan["steps"][1]
    assert gate["with"]["image-ref"] == THIS_RUN_IMAGE
    assert gate["with"]["severity"] == "HIGH,CRITICAL"
    gated = [job_id for job_id, job in delivery.items() if _signs_or_deploys(job)]
    assert gated == [model.SUPPLY_CHAIN_JOB, "deploy-dev", "promote-qa", "promote-staging", "promote-prod"]
    for job_id in gated:
        assert model.SCAN_JOB in delivery[job_id]["needs"], f"{job_id} does not wait for the scan"
    for job_id, job in delivery.items():
        # A failed scan must skip its dependants: no job or step may run regardless.
        assert not re.search(r"always\(\)|failure\(\)|cancelled\(\)", str(job.get("if", ""))), job_id
        assert not any(step.get("continue-on-error") for step in job["steps"]), job_id


# --- SBOM, signature, attestations -----------------------------------------------------------------------------


def test_keyless_signing_sboms_signs_and_attests_the_scanned_digest(delivery: dict[str, Any]) -> None:
    job = delivery[model.SUPPLY_CHAIN_JOB]
    assert job["needs"] == [model.BUILD_JOB, model.SCAN_JOB]
    runs = "\n".join(_runs(job))
    order = [
        runs.index('syft scan "registry:$IMAGE_REF"'),
        runs.index('cosign sign --yes "$IMAGE_REF"'),
        runs.index("cosign attest --yes --type spdxjson"),
        runs.index("cosign attest --yes --type vuln"),
        runs.index("cosign verify "),
    ]
    assert order == sorted(order)
    assert "--key" not in runs, "keyless by default"
    verify = _step(job, "cosign verify ")
    assert verify["env"]["IDENTITY"] == github.keyless_identity("acme/dockyard")
    assert verify["env"]["IDENTITY"].endswith(f"/{github.DELIVERY_WORKFLOW}@refs/heads/main")
    assert github.DELIVERY_WORKFLOW in {f"{name}" for name in _documents({"dev": _env("dev")})}
    provenance = next(s for s in job["steps"] if s.get("uses") == uses("actions/attest-build-provenance"))
    assert provenance["with"]["push-to-registry"] is True
    installer = next(s for s in job["steps"] if s.get("uses") == uses("sigstore/cosign-installer"))
    assert installer["with"]["cosign-release"] == model.COSIGN_VERSION


def test_a_stack_with_a_signing_key_signs_in_the_program_after_the_scan() -> None:
    env = _env("dev", signing={"publicKeyFile": "cosign.pub"})
    jobs = _delivery_workflow({"dev": env})["jobs"]
    supply = "\n".join(_runs(jobs[model.SUPPLY_CHAIN_JOB]))
    assert "cosign" not in supply, "the program signs with the stack's key"
    assert "syft" not in supply, "the program makes the SBOM"
    assert [s["name"] for s in jobs[model.SCAN_JOB]["steps"]][-1].startswith("Scan the image")
    deploy = jobs["deploy-dev"]
    names = [step["name"] for step in deploy["steps"]]
    up = names.index(_step(deploy, "pulumi up")["name"])
    assert names.index(f"Install cosign {model.COSIGN_VERSION}") < up
    assert names.index(f"Install syft {model.SYFT_VERSION}") < up
    assert model.SCAN_JOB in deploy["needs"]


def test_a_stack_whose_program_scans_gets_trivy_installed_before_its_update() -> None:
    """ScannedImage runs in the deploy's update and a promotion re-scans: a hosted runner has no trivy of its own."""
    signing = {"publicKeyFile": "cosign.pub", "scan": {"dbRepository": "registry.example.com/trivy-db:2"}}
    staging = _env("staging", tier="staging", image={"ref": DIGEST_REF}, promotion={"upstream": "dev"}, signing=signing)
    jobs = _delivery_workflow({"dev": _env("dev", signing=signing), "staging": staging})["jobs"]
    install = f"Install trivy {TRIVY_VERSION}"
    for job_id, command in (("deploy-dev", "pulumi up"), ("promote-staging", "dockyard promote")):
        names = [step["name"] for step in jobs[job_id]["steps"]]
        assert install in names, job_id
        assert names.index(install) < names.index(_step(jobs[job_id], command)["name"]), job_id
    step = next(s for s in jobs["deploy-dev"]["steps"] if s["name"] == install)
    assert step["uses"] == uses("aquasecurity/setup-trivy")
    assert step["with"] == {"version": TRIVY_VERSION, "cache": False}
    unscanned = _delivery_workflow({"dev": _env("dev", signing={"publicKeyFile": "cosign.pub"})})["jobs"]
    assert install not in [step["name"] for step in unscanned["deploy-dev"]["steps"]]


def test_supply_chain_tools_are_the_versions_the_local_stacks_use() -> None:
    pins = dict(
        line.split("=", 1)
        for line in (ROOT / "scripts" / "supply-chain" / "versions.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert pins["DOCKYARD_COSIGN_VERSION"] == model.COSIGN_VERSION
    assert pins["DOCKYARD_SYFT_VERSION"] == model.SYFT_VERSION


# --- deploy, verify, promote, prod ----------------------------------------------------------------------------


def test_dev_is_deployed_then_verified_and_each_stack_promoted_with_verify(delivery: dict[str, Any]) -> None:
    assert list(delivery) == [
        "integration",
        "build",
        "scan",
        "supply-chain",
        "deploy-dev",
        "promote-qa",
        "promote-staging",
        "promote-prod",
    ]
    # The steps that run when every one before them passed (not the failure step).
    deploy = [step["run"] for step in delivery["deploy-dev"]["steps"] if "run" in step and "if" not in step]
    assert deploy[-3].startswith("pulumi up --yes --stack")
    assert deploy[-2] == '.venv/bin/dockyard verify --stack "$STACK"\n'
    assert deploy[-1].startswith('.venv/bin/dockyard notify --stack "$STACK" --event "$EVENT"')
    assert delivery["deploy-dev"]["needs"] == ["build", "scan", "supply-chain"]
    expected = {
        "promote-qa": ("dev", "qa", "deploy-dev", None),
        "promote-staging": ("qa", "staging", "promote-qa", 'dockyard canary advance --stack "$STACK" --auto --yes'),
        "promote-prod": ("staging", "prod", "promote-staging", 'dockyard switch --stack "$STACK" --yes'),
    }
    for job_id, (source, target, after, release) in expected.items():
        job = delivery[job_id]
        assert job["needs"][-1] == after
        assert job["environment"] == target
        promote = _step(job, "dockyard promote")
        assert promote["run"] == '.venv/bin/dockyard promote --from "$SOURCE" --to "$STACK" --yes --verify\n'
        assert (promote["env"]["SOURCE"], promote["env"]["STACK"]) == (source, target)
        # Taken all the way to serving, so the next promotion carries this run's digest, not the previous one.
        runs = _runs(job)
        if release is None:  # rolling (qa): the promotion's update serves it at once
            assert not any(re.search(r"dockyard (canary|switch)", run) for run in runs), job_id
            continue
        assert runs.index(promote["run"]) < runs.index(f".venv/bin/{release}\n")


def test_the_dockyard_commands_in_the_workflows_exist_with_those_options(
    documents: dict[str, Document],
) -> None:
    cli = typer.main.get_command(dockyard_app)
    commands = [
        shlex.split(line)
        for _, _, step in _all_steps(documents)
        for line in step.get("run", "").splitlines()
        if re.match(r"(\.venv/bin/)?dockyard ", line)
    ]
    assert len(commands) >= 5
    for words in commands:
        # Typer vendors its own click, so the command tree is walked by its shape: groups have ``commands``.
        command: Any = cli
        arguments = words[1:]
        while hasattr(command, "commands"):
            command = command.commands[arguments.pop(0)]
        known = {option for param in command.params for option in param.opts}
        used = {word for word in arguments if word.startswith("--")}
        assert used <= known, f"{shlex.join(words)}: {sorted(used - known)} not in {sorted(known)}"


def test_prod_is_reached_only_through_its_environment(
    stacks: dict[str, EnvironmentConfig], documents: dict[str, Document]
) -> None:
    touching_prod = [
        (filename, job_id)
        for filename, document in documents.items()
        for job_id, job in document["jobs"].items()
        if any(step.get("env", {}).get("STACK") == "prod" for step in job["steps"])
    ]
    assert touching_prod == [(github.DELIVERY_WORKFLOW, "promote-prod")]
    assert documents[github.DELIVERY_WORKFLOW]["jobs"]["promote-prod"]["environment"] == "prod"
    assert stacks["prod"].github.reviewers, "the prod environment's reviewers are what holds this job"
    assert documents["preview.yml"]["jobs"][model.PREVIEW_JOB]["environment"] == "${{ matrix.stack }}-preview"


def test_a_stack_ci_cannot_deliver_to_is_refused() -> None:
    stacks = {"dev": _env("dev"), "staging": _promoted("staging", "staging", "elsewhere")}
    with pytest.raises(model.PipelineConfigError, match=re.escape("staging: promotion.upstream: found 'elsewhere'")):
        _documents(stacks)
    with pytest.raises(model.PipelineConfigError, match=re.escape("no GitHub-enabled stack has image.build")):
        derive.promotions({"staging": _promoted("staging", "staging", "dev")})


def test_two_building_stacks_are_rejected() -> None:
    with pytest.raises(model.PipelineConfigError, match="one building stack"):
        derive.building_stack({"a": _env("a"), "b": _env("b")})


def test_registry_password_env_is_fed_where_the_dev_program_runs(delivery: dict[str, Any]) -> None:
    for job_id in ("build", "deploy-dev"):
        assert _step(delivery[job_id], "pulumi up")["env"]["GHCR_TOKEN"] == "${{ secrets.REGISTRY_PASSWORD }}"
    assert "GHCR_TOKEN" not in _step(delivery["promote-prod"], "dockyard promote")["env"]
    assert "GITHUB_TOKEN" not in _step(delivery["build"], "pulumi up")["env"], "the build needs no admin token"


# --- preview.yml -----------------------------------------------------------------------------------------------


def test_a_preview_of_a_stack_with_a_trust_policy_has_cosign_for_the_programs_check(
    stacks: dict[str, EnvironmentConfig],
) -> None:
    def installs_cosign(stacks: Mapping[str, EnvironmentConfig]) -> bool:
        steps = _documents(stacks)["preview.yml"]["jobs"][model.PREVIEW_JOB]["steps"]
        return any(step.get("uses", "").startswith("sigstore/cosign-installer@") for step in steps)

    assert stacks["staging"].signing is not None, "the committed staging trusts the delivery workflow"
    assert installs_cosign(stacks)
    untrusting = {name: env.model_copy(update={"signing": None}) for name, env in stacks.items()}
    assert not installs_cosign(untrusting)


def test_preview_matrix_covers_every_github_stack(documents: dict[str, Document]) -> None:
    job = documents["preview.yml"]["jobs"][model.PREVIEW_JOB]
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod", "qa", "staging"]
    assert job["strategy"]["fail-fast"] is False
    preview = next(step for step in job["steps"] if step.get("name") == "Preview")
    assert 'pulumi preview --stack "$STACK" --policy-pack policies --json --event-log' in preview["run"]
    assert preview["env"]["STACK"] == "${{ matrix.stack }}"
    # Without it the 3.260 CLI refuses --event-log as an unknown flag (checked with the engine built here).
    assert preview["env"]["PULUMI_DEBUG_COMMANDS"] == "true"


def test_preview_sections_are_named_by_stack_and_carry_policy_violations(
    documents: dict[str, Document], tmp_path: Path
) -> None:
    """Write the files the Preview step's command names, collect them as the summary job does, and read them with
    the real ``dockyard pr-summary`` loader."""
    jobs = documents["preview.yml"]["jobs"]
    preview = next(s for s in jobs[model.PREVIEW_JOB]["steps"] if s.get("name") == "Preview")
    line = next(line for line in preview["run"].splitlines() if "pulumi preview" in line)
    command = shlex.split(line.removeprefix("if ! ").removesuffix("; then"))
    upload = next(s for s in jobs[model.PREVIEW_JOB]["steps"] if s.get("uses") == uses("actions/upload-artifact"))
    collect = next(s for s in jobs[model.SUMMARY_JOB]["steps"] if s.get("name") == "Collect the previews")
    summarize = next(s for s in jobs[model.SUMMARY_JOB]["steps"] if s.get("name") == "Summarize")
    assert upload["with"]["path"] == f"{preview['env']['PREVIEWS']}/", "the artifact holds the files at its root"
    collected = tmp_path / str(collect["with"]["path"])
    collected.mkdir()
    stacks = jobs[model.PREVIEW_JOB]["strategy"]["matrix"]["stack"]
    for stack in stacks:

        def file(template: str, stack: str = stack) -> Path:
            return collected / Path(template.replace("$STACK", stack)).name

        file(command[command.index("--event-log") + 1]).write_text(
            json.dumps({"policyEvent": {"policyName": "pod-security", "enforcementLevel": "mandatory"}}) + "\n"
        )
        file(command[-1]).write_text(json.dumps({"changeSummary": {"update": 1}}))
    pattern = shlex.split(summarize["run"].replace('"$PREVIEWS"', summarize["env"]["PREVIEWS"]))[2]
    previews = pr_summary.load(sorted(tmp_path.glob(pattern)))
    assert [p.stack for p in previews] == sorted(stacks)
    assert all(len(p.violations) == 1 and "pod-security" in p.violations[0] for p in previews)
    assert "### `prod`: 1 to update" in pr_summary.render(previews)


def test_preview_summary_posts_one_sticky_comment(documents: dict[str, Document]) -> None:
    jobs = documents["preview.yml"]["jobs"]
    summary = jobs[model.SUMMARY_JOB]
    assert summary["needs"] == model.PREVIEW_JOB
    assert any(run.startswith("dockyard pr-summary ") for run in _runs(summary))
    comment_job = jobs[model.COMMENT_JOB]
    assert comment_job["needs"] == model.SUMMARY_JOB
    comments = [s for s in comment_job["steps"] if s.get("uses") == uses("marocchino/sticky-pull-request-comment")]
    assert len(comments) == 1
    assert comments[0]["with"]["header"] == github.PREVIEW_COMMENT_HEADER


def test_the_job_that_writes_to_the_pull_request_runs_none_of_its_code(
    documents: dict[str, Document],
) -> None:
    comment_job = documents["preview.yml"]["jobs"][model.COMMENT_JOB]
    assert all("run" not in step for step in comment_job["steps"])
    assert all(step["uses"] != uses("actions/checkout") for step in comment_job["steps"])


# --- ci.yml ----------------------------------------------------------------------------------------------------


def test_a_pull_request_runs_the_test_stage_and_scans_without_pushing(documents: dict[str, Document]) -> None:
    ci = documents["ci.yml"]
    assert ci["on"] == {"pull_request": {"branches": ["main"]}}
    (job,) = ci["jobs"].values()
    lint = job["steps"][1]
    assert "hadolint" in lint["run"]
    export, convert, test_build, runtime_build, scan, keep = job["steps"][3:]
    assert export["with"]["target"] == "test-reports"
    assert export["with"]["outputs"] == "type=local,dest=test-reports"
    assert "test_reports.py test-reports" in convert["run"]
    assert keep["if"] == "${{ !cancelled() }}"
    assert test_build["with"]["target"] == "test"
    assert runtime_build["with"]["target"] == "runtime"
    assert scan["with"]["image-ref"] == runtime_build["with"]["tags"]
    assert scan["with"]["exit-code"] == str(FINDINGS_EXIT_CODE), "findings exit apart from trivy's own errors (1)"


# --- pinning ---------------------------------------------------------------------------------------------------


def test_every_uses_is_a_full_sha_from_the_pin_table(documents: dict[str, Document]) -> None:
    seen = set()
    for filename, job_id, step in _all_steps(documents):
        if "uses" not in step:
            continue
        action, _, ref = step["uses"].partition("@")
        assert action in PINS, f"{filename}:{job_id}: {action} is not in dockyard/pipeline/pins.py"
        assert SHA.match(ref), f"{filename}:{job_id}: {step['uses']} is not pinned to a 40-hex SHA"
        assert ref == PINS[action].sha, f"{filename}:{job_id}: {action} is not the table's SHA"
        seen.add(action)
    # The cloud registries' login actions are used by other configs (tests/unit/test_pipeline_renderers.py).
    assert seen <= set(PINS)
    assert {"actions/checkout", "aquasecurity/trivy-action", "docker/build-push-action"} <= seen


def test_rendered_uses_lines_carry_the_version_comment(stacks: dict[str, EnvironmentConfig]) -> None:
    for path, text in _render(stacks).items():
        for line in text.splitlines():
            if line.strip().removeprefix("- ").startswith("uses:"):
                action, _, rest = line.split("uses: ", 1)[1].partition("@")
                assert rest == f"{PINS[action].sha} # {PINS[action].version}", f"{path}: {line!r}"


# --- script injection ------------------------------------------------------------------------------------------


def test_no_expression_is_interpolated_into_a_run_script(documents: dict[str, Document]) -> None:
    for filename, job_id, step in _all_steps(documents):
        run = step.get("run", "")
        # Stricter than "no secrets or github.event": values reach scripts only through env:.
        assert "${{" not in run, f"{filename}:{job_id}:{step.get('name')}: expression inside run"
        assert "secrets." not in run
        assert "github.event" not in run


def test_checkout_never_persists_the_token(documents: dict[str, Document]) -> None:
    checkouts = [step for _, _, step in _all_steps(documents) if step.get("uses") == uses("actions/checkout")]
    assert checkouts
    assert all(step["with"]["persist-credentials"] is False for step in checkouts)


def test_every_job_has_a_timeout(documents: dict[str, Document]) -> None:
    for filename, document in documents.items():
        for job_id, job in document["jobs"].items():
            assert 0 < job["timeout-minutes"] <= 60, f"{filename}:{job_id}"


# --- permissions -----------------------------------------------------------------------------------------------


EXPECTED_PERMISSIONS = {
    ("ci.yml", model.CI_TEST_JOB): {"contents": "read"},
    ("preview.yml", model.PREVIEW_JOB): {"contents": "read"},
    ("preview.yml", model.SUMMARY_JOB): {"contents": "read"},
    ("preview.yml", model.COMMENT_JOB): {"pull-requests": "write"},
    # The integration tests read the checkout, nothing else: no secrets, no token.
    ("delivery.yml", model.INTEGRATION_JOB): {"contents": "read"},
    ("delivery.yml", model.BUILD_JOB): {"contents": "read"},
    ("delivery.yml", model.SCAN_JOB): {"packages": "read"},
    ("delivery.yml", model.SUPPLY_CHAIN_JOB): {
        "contents": "read",
        "packages": "write",
        "id-token": "write",
        "attestations": "write",
    },
    ("delivery.yml", "deploy-dev"): {"contents": "read"},
    # A promotion commits its stack file to the default branch.
    ("delivery.yml", "promote-qa"): {"contents": "write"},
    ("delivery.yml", "promote-staging"): {"contents": "write"},
    ("delivery.yml", "promote-prod"): {"contents": "write"},
    # A pull request's own environment: its image pushed to GHCR with the job token; destroy and sweep push nothing.
    ("mr-env.yml", model.MR_ENV_JOB): {"contents": "read", "packages": "write"},
    ("mr-env.yml", model.MR_ENV_STOP_JOB): {"contents": "read"},
    ("mr-env.yml", model.MR_ENV_SWEEP_JOB): {"contents": "read"},
}


def test_permissions_are_empty_at_the_top_and_minimal_per_job(documents: dict[str, Document]) -> None:
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
    jobs = _delivery_workflow({"dev": env})["jobs"]
    for job_id in (model.SCAN_JOB, model.SUPPLY_CHAIN_JOB):
        job = jobs[job_id]
        assert "packages" not in job["permissions"], job_id
        assert job["environment"] == "dev", job_id
        login = next(step for step in job["steps"] if step.get("uses") == uses("docker/login-action"))
        assert login["with"]["password"] == "${{ secrets.REGISTRY_PASSWORD }}"


def test_required_checks_name_real_jobs(stacks: dict[str, EnvironmentConfig], documents: dict[str, Document]) -> None:
    checks = github.required_checks(stacks)
    assert checks == ["image-test", "preview (dev)", "preview (qa)", "preview (staging)"]
    assert documents["ci.yml"]["jobs"][model.CI_TEST_JOB]["name"] == "image-test"
    assert documents["preview.yml"]["jobs"][model.PREVIEW_JOB]["name"] == "preview (${{ matrix.stack }})"


# --- serialization and drift -----------------------------------------------------------------------------------


def test_rendered_files_parse_back_to_the_documents(stacks: dict[str, EnvironmentConfig]) -> None:
    documents = _documents(stacks)
    for path, text in _render(stacks).items():
        filename = Path(path).name
        assert text.startswith(f"# {filename}: generated by scripts/generate_workflows.py")
        assert REGENERATE_COMMAND in text.split("\n", 3)[2]
        assert yaml.safe_load(text) == documents[filename]
        assert "&id" not in text, "no YAML anchors"
        assert "*id" not in text, "no YAML aliases"


def test_committed_workflows_equal_the_generated_ones(stacks: dict[str, EnvironmentConfig]) -> None:
    expected = _render(stacks)
    committed = {
        str(path.relative_to(ROOT)): path.read_text(encoding="utf-8")
        for path in sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    }
    assert committed == expected, f"run {REGENERATE_COMMAND} and commit .github/workflows/"


def test_check_mode_lists_a_differing_file_and_exits_non_zero(tmp_path: Path) -> None:
    for path in ROOT.glob("Pulumi*.yaml"):
        shutil.copy(path, tmp_path)
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    shutil.copytree(ROOT / ".circleci", tmp_path / ".circleci")
    for name in (".gitlab-ci.yml", "Jenkinsfile"):
        shutil.copy(ROOT / name, tmp_path)
    # dev's integration tests: their services come from the app's compose file.
    (tmp_path / "app").mkdir()
    shutil.copy(ROOT / "app" / "compose.integration.yaml", tmp_path / "app")
    command = [sys.executable, "-m", "scripts.generate_workflows", "--check", "--project-dir", str(tmp_path)]

    clean = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    delivery = tmp_path / ".github" / "workflows" / github.DELIVERY_WORKFLOW
    delivery.write_text(delivery.read_text(encoding="utf-8").replace("--exclude", "--target"))
    drifted = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert drifted.returncode == 1
    assert f".github/workflows/{github.DELIVERY_WORKFLOW}" in drifted.stdout


def test_pulumi_cli_matches_the_pinned_sdk() -> None:
    assert importlib.metadata.version("pulumi") == model.PULUMI_CLI_VERSION
