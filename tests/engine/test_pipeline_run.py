"""The generator's GitLab pipeline for the local chain runs on this machine under gitlab-ci-local, job by job, as a
new user's push would: build (with the app's test stage) → scan → supply chain → deploy local → verify → promote
local-staging (the canary walked) → promote local-prod (the manual job) → switch, each promotion committed back.
Then a push with a broken app test: the build fails and nothing after it runs or changes. Then a one-line app change:
the same pipeline walks the chain again from the first one's committed promotions while a watch of every namespace
records what the live Services route to (never an older digest). Then a merge request that edits local-prod's stack
file: its pipeline previews every stack and its summary names the image old → new.

The scan job runs the real trivy against the local registry's offline vulnerability DB (tests/engine/gitlab_local.py);
gitlab-ci-local does not model id_tokens, protected variables, timeouts or resource groups.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.engine.ci_scratch import BROKEN, Backend, git, served_images, team_backend
from tests.engine.gitlab_local import PUSH_JOBS, LocalPipeline, scratch_pipeline
from tests.engine.harness import LOCAL_REPOSITORY, SESSION
from tests.engine.served_watch import NamespaceWatch, watch_served

# The module's fixture runs the whole push pipeline (about 12 min on 2 busy cores) inside the first test's setup.
pytestmark = [pytest.mark.engine, pytest.mark.timeout(3600)]

CHAIN = ("local", "local-staging", "local-prod")
#: The Service every stack's users reach (the blue-green preview Service aside).
LIVE_SERVICE = "dockyard-app"


@dataclass
class Delivered:
    pipeline: LocalPipeline
    backend: Backend
    services: dict[str, str]
    image_ref: str
    seconds: float


def _stack_output(delivered: Delivered, stack: str, key: str) -> str:
    return delivered.pipeline.stack_output(delivered.backend, stack, key)


def _junit(pipeline: LocalPipeline) -> Path:
    """The JUnit report the build job's podman build wrote into the job's checkout (``DOCKYARD_TEST_REPORTS``),
    which the job's ``artifacts:reports:junit`` publishes."""
    return pipeline.directory / ".gitlab-ci-local" / "builds" / "build" / "test-reports" / "junit.xml"


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
    assert "hadolint" in pipeline.runs[0].log, "the build job lints the Dockerfile first"
    assert 'name="TestHealthOK"' in _junit(pipeline).read_text(), "the build job's test report"
    report = pipeline.directory / ".gitlab-ci-local" / "artifacts" / "build" / ".gitlab-ci-reports" / "dotenv"
    image_ref = (report / "image-ref.env").read_text().strip().removeprefix("IMAGE_REF=")
    print("push pipeline: " + ", ".join(f"{r.job} {r.seconds:.0f} s" for r in pipeline.runs) + f"; {seconds:.0f} s")
    return Delivered(pipeline, backend, local_services, image_ref, seconds)


def test_every_job_passes_and_local_prod_serves_the_builds_digest(delivered: Delivered) -> None:
    repository = f"{delivered.services['DOCKYARD_REGISTRY']}/{LOCAL_REPOSITORY}-{SESSION}-ci-"
    assert delivered.image_ref.startswith(repository), "the scratch's own repository"
    assert re.search(r"@sha256:[0-9a-f]{64}$", delivered.image_ref), delivered.image_ref
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
    # The report names the failing test beside the passing ones (published with `when: always`).
    junit = _junit(pipeline).read_text()
    assert re.search(r'name="TestBrokenOnPurpose"[^>]*>\s*<failure', junit), junit[-2000:]
    assert 'name="TestHealthOK"' in junit
    # gitlab-ci-local pads each job's name to one column before what the job does.
    started = {job for job in PUSH_JOBS if re.search(rf"^{re.escape(job)}\s+starting shell", whole.log, re.MULTILINE)}
    assert started == {"build"}, f"only the build starts: {started}"
    # Nothing pushed or deployed: every stack still serves the first pipeline's release.
    for stack in ("local", "local-staging", "local-prod"):
        assert _stack_output(delivered, stack, "image_ref") == delivered.image_ref, stack


@dataclass
class SecondRelease:
    image_ref: str
    watches: dict[str, NamespaceWatch]


@pytest.fixture(scope="module")
def second_release(delivered: Delivered) -> SecondRelease:
    """A one-line app change pushed after the first release (and after the broken test, whose file is restored):
    the same push pipeline walks the chain again, starting from the promotions the first one committed, while a
    watch records what each namespace's Services route to."""
    pipeline = delivered.pipeline
    git(pipeline.directory, "pull", "-q", "--rebase", "origin", "main")
    first_commit = git(pipeline.directory, "rev-list", "--max-parents=0", "HEAD").strip()
    git(pipeline.directory, "checkout", first_commit, "--", "app/main_test.go")
    main_go = pipeline.directory / "app" / "main.go"
    main_go.write_text(main_go.read_text().replace('"hello from "', '"hello again from "'))
    pipeline.commit("A one-line app change")
    namespaces = {stack: _stack_output(delivered, stack, "namespace") for stack in CHAIN}
    with watch_served(delivered.services["KUBECONFIG"], list(namespaces.values())) as watches:
        for job in PUSH_JOBS:
            run = pipeline.run(job, manual=job == "promote-local-prod")
            assert run.returncode == 0, f"job {job} failed ({run.returncode}):\n{run.log[-6000:]}"
        report = pipeline.directory / ".gitlab-ci-local" / "artifacts" / "build" / ".gitlab-ci-reports" / "dotenv"
        image_ref = (report / "image-ref.env").read_text().strip().removeprefix("IMAGE_REF=")
        for namespace in namespaces.values():
            watches[namespace].wait_for(LIVE_SERVICE, frozenset({image_ref}))
    return SecondRelease(image_ref, {stack: watches[namespace] for stack, namespace in namespaces.items()})


def test_an_app_change_walks_the_chain_again_and_every_stack_ends_on_its_digest(
    delivered: Delivered, second_release: SecondRelease
) -> None:
    assert second_release.image_ref != delivered.image_ref
    for stack in CHAIN:
        assert _stack_output(delivered, stack, "image_ref") == second_release.image_ref, stack
    log = git(delivered.pipeline.origin, "log", "--format=%s", "main")
    digest = second_release.image_ref.split("@", 1)[1]
    assert f"Promote local-staging to {digest}" in log
    assert f"Promote local-prod to {digest}" in log


def test_the_live_service_never_routes_back_to_an_older_digest(
    delivered: Delivered, second_release: SecondRelease
) -> None:
    """Every moment the watch saw, in each namespace: the live Service routes only to the two releases' digests
    (never a placeholder or anything older), never to nothing, and once it routes to the new release it never drops
    it. (The blue-green preview Service routes to the idle color by design: after the switch, the old release.)"""
    releases = {delivered.image_ref, second_release.image_ref}
    for stack, watch in second_release.watches.items():
        routed = [moment.served[LIVE_SERVICE] for moment in watch.moments if LIVE_SERVICE in moment.served]
        assert routed, f"{stack}: the watch saw no moment of {LIVE_SERVICE}"
        seen = set().union(*routed)
        assert seen <= releases, f"{stack}'s {LIVE_SERVICE} routed to {seen - releases}"
        assert all(routed), f"{stack}'s {LIVE_SERVICE} routed to nothing at some moment"
        first_new = next(i for i, images in enumerate(routed) if second_release.image_ref in images)
        assert all(second_release.image_ref in images for images in routed[first_new:]), (
            f"{stack}'s {LIVE_SERVICE} went back to {delivered.image_ref} after routing to the new release"
        )
        assert routed[-1] == frozenset({second_release.image_ref}), stack


def test_a_merge_request_pipeline_previews_each_stack_and_summarises_the_digests(
    delivered: Delivered, second_release: SecondRelease
) -> None:
    """A merge request that rolls local-prod back to the first release by editing its stack file: the MR pipeline
    previews every stack (nothing is changed) and its summary artifact names the image old → new."""
    pipeline = delivered.pipeline
    git(pipeline.directory, "pull", "-q", "--rebase", "origin", "main")
    git(pipeline.directory, "checkout", "-q", "-b", "roll-prod-back")
    stack_file = pipeline.directory / "Pulumi.local-prod.yaml"
    stack_file.write_text(stack_file.read_text().replace(second_release.image_ref, delivered.image_ref))
    git(pipeline.directory, "commit", "-q", "-am", "Roll local-prod back to the first release")
    merge_request = ["--variable", "CI_PIPELINE_SOURCE=merge_request_event"]
    merge_request += ["--variable", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME=main", "--variable", "CI_DEFAULT_BRANCH=main"]
    try:
        for job in ("preview", "pr-summary"):
            run = pipeline.run(job, options=merge_request)
            assert run.returncode == 0, f"job {job} failed ({run.returncode}):\n{run.log[-6000:]}"
    finally:
        git(pipeline.directory, "checkout", "-q", "main")
    summary = (pipeline.directory / ".gitlab-ci-local" / "artifacts" / "pr-summary" / "pr-summary.md").read_text()
    for stack in CHAIN:
        assert f"### `{stack}`" in summary, stack
    new, old = (ref.split("@sha256:", 1)[1][:12] for ref in (second_release.image_ref, delivered.image_ref))
    assert re.search(rf"sha256:{new}.* → .*sha256:{old}", summary), summary
    assert "preview failed" not in summary
    # A preview changes nothing: local-prod still serves the second release.
    assert _stack_output(delivered, "local-prod", "image_ref") == second_release.image_ref
