"""A promotion into a stack with its own registry: the digest is copied there first, the gates judge the copy, and the
target's config names the copy; a failed copy refuses in one line with nothing written; a refused promotion copies
nothing.

A real :class:`~dockyard.releases.project.Project` over copies of the local chain's stack files, local-staging moved
to its own repository; the engine, the registry, the trust policy and the copy are fakes that record what they are
asked about. The real regctl and cosign are ``tests/integration/test_registry_lifecycle.py``'s.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from dockyard.model.credentials import RegistryCredentials
from dockyard.model.stack import StackView
from dockyard.releases.arrival import arriving_reference, copy_problem, logins
from dockyard.releases.errors import RefusedError
from dockyard.releases.gates import CopyAnswer, RegistryAnswer
from dockyard.releases.ledger import Verification
from dockyard.releases.moves import Releases
from dockyard.releases.project import Project
from tests.stacks import PROJECT
from tests.unit.test_stack_reads import BUILT, STAGING, FakeEngine

DIGEST = BUILT.split("@")[1]
COPY = f"127.0.0.1:5443/dockyard/app-staging@{DIGEST}"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    for name in ("Pulumi.yaml", "Pulumi.local.yaml", f"Pulumi.{STAGING}.yaml"):
        shutil.copy(PROJECT / name, tmp_path)
    path = tmp_path / f"Pulumi.{STAGING}.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"]["dockyard:registry"]["repository"] = "dockyard/app-staging"
    path.write_text(yaml.safe_dump(document))
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path}/state")
    monkeypatch.setenv("DOCKYARD_CACHE", str(tmp_path / "cache"))
    made = Project(tmp_path, print_line=lambda _: None)
    made.__dict__["engine"] = FakeEngine(tmp_path)
    return made


class Asked(list[tuple[str, str]]):
    """What each fake was asked about, in order."""


def releases(project: Project, asked: Asked, copy: CopyAnswer | None = None) -> Releases:
    """Fakes that answer yes (the copy: made where the target's registry says) and record what they are asked."""

    def copied(image: str, source: StackView, target: StackView) -> CopyAnswer:
        asked.append(("copy", f"{image} {source.name}→{target.name}"))
        return copy or CopyAnswer(arriving_reference(image, target.env.registry))

    def registry(image: str, stack: StackView) -> RegistryAnswer:
        asked.append(("registry", image))
        return RegistryAnswer(True)

    def trust(directory: Path, stack: StackView, image: str) -> list[str]:
        asked.append(("trust", image))
        return []

    def attested(directory: Path, backend: str, source: str, target: StackView, image: str) -> list[Verification]:
        asked.append(("attested", image))
        # The source's record names the source's reference; the copy carries the same attestation.
        return [Verification(source, BUILT, True, datetime(2026, 12, 1, 12, 5, tzinfo=UTC), "ci", "cluster", "verify")]

    return Releases(project, registry=registry, trust=trust, scan=lambda *_: [], attested=attested, copy=copied)


def staging_file(project: Project) -> str:
    return project.stack_file(STAGING).read_text()


def test_the_copy_is_made_before_the_gates_which_judge_it_and_the_config_names_it(project: Project) -> None:
    asked = Asked()
    outcome = releases(project, asked).promote("local", STAGING, yes=True, confirm=lambda: True)
    assert asked[0] == ("copy", f"{BUILT} local→{STAGING}")
    assert {("registry", COPY), ("trust", COPY), ("attested", COPY)} <= set(asked), "the gates judge the copy"
    assert outcome.image == COPY
    written = yaml.safe_load(staging_file(project))["config"]["dockyard:kubernetes"]["strategy"]["canaryImage"]
    assert written == COPY, "the target's config names its own registry"


def test_a_failed_copy_refuses_in_one_line_and_writes_nothing(project: Project) -> None:
    before = staging_file(project)
    asked = Asked()
    problem = "cannot copy … into local-staging's registry 127.0.0.1:5443/dockyard/app-staging: connection refused"
    with pytest.raises(RefusedError) as refused:
        releases(project, asked, CopyAnswer(None, problem)).promote("local", STAGING, yes=True, confirm=lambda: True)
    assert refused.value.problems == [problem]
    assert [what for what, _ in asked] == ["copy"], "nothing is asked of a copy that is not there"
    assert staging_file(project) == before


def test_a_promotion_refused_before_the_copy_copies_nothing(project: Project) -> None:
    path = project.stack_file(STAGING)
    document = yaml.safe_load(path.read_text())
    document["config"]["dockyard:promotion"]["upstream"] = "dev"
    path.write_text(yaml.safe_dump(document))
    asked = Asked()
    with pytest.raises(RefusedError) as refused:
        releases(project, asked).promote("local", STAGING, yes=True, confirm=lambda: True)
    assert refused.value.problems == ["local-staging accepts releases from dev only, not from local"]
    assert not [what for what, _ in asked if what == "copy"]


def test_a_target_in_the_sources_repository_is_not_copied_to(project: Project) -> None:
    path = project.stack_file(STAGING)
    shutil.copy(PROJECT / path.name, path)
    asked = Asked()
    outcome = releases(project, asked).promote("local", STAGING, yes=True, confirm=lambda: True)
    assert outcome.image == BUILT
    assert ("trust", BUILT) in asked
    assert "copy" not in [what for what, _ in asked]


def test_the_copy_problem_names_both_registries_and_the_way_back(project: Project) -> None:
    source, target = project.view("local"), project.view(STAGING)
    line = copy_problem(BUILT, source, target, "dial tcp 127.0.0.1:5443: connect: connection refused")
    assert "\n" not in line
    assert line.startswith(f"cannot copy {BUILT} into local-staging's registry 127.0.0.1:5443/dockyard/app-staging:")
    assert "scripts/local-services.sh start" in line
    assert "dockyard:registryPassword" in line
    assert "promote again" in line


def test_each_registry_is_logged_in_with_its_stacks_credentials(project: Project) -> None:
    source, target = project.view("local"), project.view(STAGING)
    # What the credential rule would read from each stack's secrets (a cached property of the view).
    source.__dict__["credentials"] = RegistryCredentials("src", "s", None)
    target.__dict__["credentials"] = RegistryCredentials("tgt", "t", None)
    other = f"registry.example:5000/team/app@{DIGEST}"
    assert logins(other, source, target) == {
        "registry.example:5000": RegistryCredentials("src", "s", None),
        "127.0.0.1:5443": RegistryCredentials("tgt", "t", None),
    }
    # One host, two repositories: one login, the target's (it pushes).
    assert logins(BUILT, source, target) == {"127.0.0.1:5443": RegistryCredentials("tgt", "t", None)}
