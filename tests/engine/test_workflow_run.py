"""The generator's GitHub Actions delivery workflow for the local chain runs on this machine under act, as a push to
main would: build (with the app's test stage) → scan → provenance → deploy local → promote local-staging (the canary
walked) → promote local-prod (blue-green, switched), each promotion committed back, in one act call.

act runs every job on the host (tests/engine/act_local.py). Remote actions cannot be fetched here, so each is a
local stand-in written in this repository (tests/engine/act_actions/, one composite action per pinned action):
setup-python, pulumi/actions, cosign-installer and setup-trivy put this machine's pinned builds on PATH,
trivy-action runs the real trivy against the local registry's offline DB, docker/login-action is skopeo login,
upload/download-artifact use a local directory, and attest-build-provenance attests nothing (GitHub only). act does
not model environments' reviewers and wait timers (prod's job runs without an approval), concurrency groups,
permissions or the OIDC token.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import pytest

from tests.engine.act_local import ActRun, ActWorkflow, scratch_workflow
from tests.engine.ci_scratch import BROKEN, LOCAL_CHAIN, Backend, git, served_images, team_backend
from tests.engine.harness import LOCAL_REPOSITORY, SESSION

# The module's fixture runs the whole delivery workflow (5-11 min on 2 busy cores) inside the first test's setup.
pytestmark = [pytest.mark.engine, pytest.mark.timeout(3600)]

#: The delivery workflow's jobs, in the order each must finish before the next starts.
CHAIN = ("build", "scan", "supply-chain", "deploy-local", "promote-local-staging", "promote-local-prod")


@dataclass
class Delivered:
    workflow: ActWorkflow
    backend: Backend
    services: dict[str, str]
    run: ActRun
    image_ref: str


def _stack_output(delivered: Delivered, stack: str, key: str) -> str:
    return delivered.workflow.stack_output(delivered.backend, stack, key)


@pytest.fixture(scope="module")
def delivered(engine: str, local_services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Delivered:
    root = tmp_path_factory.mktemp("workflow")
    backend = team_backend("workflow")
    workflow = scratch_workflow(root, local_services, backend)
    run = workflow.run()
    print(f"delivery workflow under act: {run.seconds:.0f} s; " + ", ".join(f"{j} {r}" for j, r in run.results.items()))
    assert run.returncode == 0, f"act failed ({run.returncode}); results {run.results}:\n{run.log[-8000:]}"
    delivered = Delivered(workflow, backend, local_services, run, "")
    delivered.image_ref = _stack_output(delivered, "local", "image_ref")
    return delivered


def test_every_job_succeeds_each_after_the_one_it_needs(delivered: Delivered) -> None:
    run = delivered.run
    assert run.results == dict.fromkeys(CHAIN, "success"), run.results
    for before, after in itertools.pairwise(CHAIN):
        assert run.finished(before) <= run.started(after), f"{after} started before {before} finished"


def test_the_build_jobs_output_is_the_digest_every_stack_serves(delivered: Delivered) -> None:
    image_ref = delivered.image_ref
    repository = f"{delivered.services['DOCKYARD_REGISTRY']}/{LOCAL_REPOSITORY}-{SESSION}-ci-"
    assert image_ref.startswith(repository), "the scratch's own repository"
    assert re.search(r"@sha256:[0-9a-f]{64}$", image_ref), image_ref
    for stack in ("local-staging", "local-prod"):
        assert _stack_output(delivered, stack, "image_ref") == image_ref, stack
    # The job output crossed to the later jobs: each promotion's commit names it (the step reads needs.build.outputs).
    digest = image_ref.split("@", 1)[1]
    log = git(delivered.workflow.origin, "log", "--format=%B", "main")
    for stack in ("local-staging", "local-prod"):
        assert f"Promote {stack} to {digest}" in log, log
    assert f"Image: {image_ref}" in log
    # The provenance job split the same output into name and digest (its stand-in checks the registry has it).
    assert f"{image_ref} is in the registry" in delivered.run.job_log("supply-chain")


def test_the_scan_job_ran_the_real_trivy_on_the_built_digest(delivered: Delivered) -> None:
    scan = re.sub(r"\x1b\[[0-9;]*m", "", delivered.run.job_log("scan"))
    assert f"scans {delivered.image_ref}" in scan, scan[-3000:]
    # The offline DB from the local registry, and trivy's summary: the app's Go binary scanned, nothing found.
    database = re.escape(f'repo="{delivered.services["DOCKYARD_REGISTRY"]}/dockyard/trivy-db:2"')
    assert re.search(rf"Artifact successfully downloaded\s+{database}", scan), scan[-3000:]
    assert re.search(r"│\s*usr/local/bin/dockyard-app\s*│\s*gobinary\s*│\s*0\s*│", scan), scan[-3000:]


def test_local_prod_serves_the_builds_digest_on_the_cluster(delivered: Delivered) -> None:
    namespace = _stack_output(delivered, "local-prod", "namespace")
    assert served_images(delivered.services, namespace) == {delivered.image_ref}


def test_the_promoted_stack_files_are_committed_and_kept_as_artifacts(delivered: Delivered) -> None:
    origin = delivered.workflow.origin
    committed = git(origin, "show", "main:Pulumi.local-prod.yaml")
    assert delivered.image_ref in committed
    for stack in ("local-staging", "local-prod"):
        kept = delivered.workflow.root / "artifacts" / f"promoted-{stack}" / f"Pulumi.{stack}.yaml"
        assert kept.read_text() == git(origin, "show", f"main:Pulumi.{stack}.yaml"), stack


def test_no_secret_reaches_the_log(delivered: Delivered) -> None:
    log = delivered.run.log
    for secret in (delivered.services["DOCKYARD_REGISTRY_PASSWORD"], delivered.backend.password):
        assert secret not in log


def test_a_broken_app_test_fails_the_build_and_nothing_later_runs(delivered: Delivered) -> None:
    delivered.workflow.commit_broken_app_test()
    broken = delivered.workflow.run()
    assert broken.returncode != 0
    assert BROKEN in broken.job_log("build"), broken.log[-4000:]
    assert broken.results == {"build": "failure"}, f"only the build runs: {broken.results}"
    # Nothing pushed or deployed: every stack still serves the first run's release.
    for stack in LOCAL_CHAIN:
        assert _stack_output(delivered, stack, "image_ref") == delivered.image_ref, stack
