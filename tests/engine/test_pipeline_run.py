"""The generator's GitLab pipeline for the local chain runs on this machine under gitlab-ci-local, job by job, as a
new user's push would: build (with the app's test stage) → scan → supply chain → deploy local → verify → promote
local-staging (the canary walked) → promote local-prod (the manual job) → switch, each promotion committed back.
Then a push with a broken app test: the build fails and nothing after it runs or changes.

The scan job runs the real trivy against the local registry's offline vulnerability DB (tests/engine/gitlab_local.py);
gitlab-ci-local does not model id_tokens, protected variables, timeouts or resource groups.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import pytest

from tests.engine.ci_scratch import BROKEN, Backend, git, served_images, team_backend
from tests.engine.gitlab_local import LocalPipeline, scratch_pipeline

# The module's fixture runs the whole push pipeline (about 12 min on 2 busy cores) inside the first test's setup.
pytestmark = [pytest.mark.engine, pytest.mark.timeout(3600)]

#: The push pipeline's jobs in order; the last one is manual (prod's approval).
PUSH_JOBS = ("build", "scan", "supply-chain", "deploy-local", "promote-local-staging", "promote-local-prod")


@dataclass
class Delivered:
    pipeline: LocalPipeline
    backend: Backend
    services: dict[str, str]
    image_ref: str
    seconds: float


def _stack_output(delivered: Delivered, stack: str, key: str) -> str:
    return delivered.pipeline.stack_output(delivered.backend, stack, key)


@pytest.fixture(scope="module")
def delivered(engine: str, local_services: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Delivered:
    root = tmp_path_factory.mktemp("pipeline")
    backend = team_backend("pipeline")
    pipeline = scratch_pipeline(root, local_services, backend)
    started = time.monotonic()
    for job in PUSH_JOBS:
        run = pipeline.run(job, manual=job == "promote-local-prod")
        assert run.returncode == 0, f"job {job} failed ({run.returncode}):\n{run.log[-6000:]}"
        if job == "scan":  # the real trivy, against the local registry's DB: a scan, not a stand-in
            assert "no HIGH or CRITICAL vulnerability" in run.log, run.log[-3000:]
    seconds = time.monotonic() - started
    report = pipeline.directory / ".gitlab-ci-local" / "artifacts" / "build" / ".gitlab-ci-reports" / "dotenv"
    image_ref = (report / "image-ref.env").read_text().strip().removeprefix("IMAGE_REF=")
    print("push pipeline: " + ", ".join(f"{r.job} {r.seconds:.0f} s" for r in pipeline.runs) + f"; {seconds:.0f} s")
    return Delivered(pipeline, backend, local_services, image_ref, seconds)


def test_every_job_passes_and_local_prod_serves_the_builds_digest(delivered: Delivered) -> None:
    assert delivered.image_ref.startswith(f"{delivered.services['DOCKYARD_REGISTRY']}/dockyard/app@sha256:")
    for stack in ("local", "local-staging", "local-prod"):
        assert _stack_output(delivered, stack, "image_ref") == delivered.image_ref, stack
    # What the cluster routes to: local-prod's Service selects the color whose Deployment runs the build's digest.
    namespace = _stack_output(delivered, "local-prod", "namespace")
    assert served_images(delivered.services, namespace) == {delivered.image_ref}


def test_the_promotions_are_committed_to_the_default_branch(delivered: Delivered) -> None:
    origin = delivered.pipeline.origin
    log = git(origin, "log", "--format=%s", "main")
    digest = delivered.image_ref.split("@", 1)[1]
    assert f"Promote local-staging to {digest}" in log
    assert f"Promote local-prod to {digest}" in log
    committed = git(origin, "show", "main:Pulumi.local-prod.yaml")
    assert delivered.image_ref in committed
    assert "Pulumi.local-staging.yaml" in git(origin, "show", "--name-only", "--format=", "main~1")


def test_a_stale_checkout_cannot_move_a_stack_back(delivered: Delivered) -> None:
    """The pipeline's first commit (no release in the stack files) against stacks that serve the release: the move
    refuses."""
    pipeline = delivered.pipeline
    run = pipeline.run("promote-local-prod", manual=True)
    assert run.returncode != 0
    assert "the stack file is stale" in run.log, run.log[-3000:]
    assert _stack_output(delivered, "local-prod", "image_ref") == delivered.image_ref


def test_a_broken_app_test_fails_the_build_and_nothing_later_runs(delivered: Delivered) -> None:
    pipeline = delivered.pipeline
    pipeline.commit_broken_app_test()
    whole = pipeline.run_pipeline()
    assert whole.returncode != 0
    assert BROKEN in whole.log
    # gitlab-ci-local pads each job's name to one column before what the job does.
    started = {job for job in PUSH_JOBS if re.search(rf"^{re.escape(job)}\s+starting shell", whole.log, re.MULTILINE)}
    assert started == {"build"}, f"only the build starts: {started}"
    # Nothing pushed or deployed: every stack still serves the first pipeline's release.
    for stack in ("local", "local-staging", "local-prod"):
        assert _stack_output(delivered, stack, "image_ref") == delivered.image_ref, stack
