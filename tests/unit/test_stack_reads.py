"""One command reads each stack file once: the moves, the gates and the verifier share one view of each stack.

A real :class:`dockyard.releases.project.Project` over copies of the local chain's stack files; the engine, the
registry, the trust policy and the cluster are fakes. Every read of a ``Pulumi.<stack>.yaml`` is counted (raw reads of
the file, and validations of its config) while one command runs: ``promote``, ``promote --verify`` and one canary
step. Each stack is read and validated once; the target's file is read once more by the move that edits it (a
read-modify-write of its bytes), and the config it wrote is validated, without a read, for the next step of the same
command. The numbers before one view per command are in the comments.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from dockyard.model.config import EnvironmentConfig
from dockyard.releases.gates import RegistryAnswer
from dockyard.releases.ledger import Check, Verification
from dockyard.releases.moves import Releases
from dockyard.releases.progressive import advance_canary, promote_verified
from dockyard.releases.project import Project
from dockyard.verify import Verifier
from tests.stacks import PROJECT
from tests.unit.fake_stack import FakeStack

REPO = "127.0.0.1:5443/dockyard/app"
BUILT = f"{REPO}@sha256:{'b' * 64}"
#: What the committed local-staging file serves (no release yet), which its last update served too.
SERVED = None
STAGING = "local-staging"


@dataclass
class FakeEngine:
    """Answers the reads a move makes (outputs, history) and hands out scripted stacks."""

    directory: Path
    runs: list[str] = field(default_factory=list)

    def read(self, stack: str, *args: str) -> Any:
        self.runs.append(" ".join(args[:2]))
        if args[:2] == ("stack", "output"):
            # local built BUILT; the target still serves what its file names (the stale-file gate compares them).
            image = BUILT if stack == "local" else SERVED
            return {"image_ref": image, "namespace": f"dockyard-app-{stack}", "url": "http://app"}
        if args[:2] == ("stack", "history"):
            return [{"startTime": "2026-12-01T12:00:00Z", "endTime": "2026-12-01T12:01:00Z", "result": "succeeded"}]
        raise AssertionError(f"unexpected engine read {args}")

    def stack(self, name: str, *, create: bool) -> FakeStack:
        return FakeStack(self.directory / f"Pulumi.{name}.yaml")


@dataclass
class Reads:
    """Stack-file reads while a command ran: raw reads of the file, and validations of its config."""

    files: Counter[str] = field(default_factory=Counter)
    validations: int = 0

    @property
    def total(self) -> int:
        return sum(self.files.values())


@pytest.fixture
def command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Project]:
    """A new project per command, as the CLI makes one, over the same stack files."""
    for name in ("Pulumi.yaml", "Pulumi.local.yaml", f"Pulumi.{STAGING}.yaml"):
        shutil.copy(PROJECT / name, tmp_path)
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path}/state")
    monkeypatch.setenv("DOCKYARD_CACHE", str(tmp_path / "cache"))

    def new() -> Project:
        project = Project(tmp_path, print_line=lambda _: None)
        project.__dict__["engine"] = FakeEngine(tmp_path)
        return project

    return new


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    counted = Reads()
    read_text = Path.read_text
    validate = EnvironmentConfig.model_validate.__func__  # type: ignore[attr-defined]

    def counting_read(self: Path, *args: Any, **kwargs: Any) -> str:
        if self.name.startswith("Pulumi.") and self.name != "Pulumi.yaml":
            counted.files[self.name] += 1
        return read_text(self, *args, **kwargs)

    def counting_validate(cls: type[EnvironmentConfig], *args: Any, **kwargs: Any) -> EnvironmentConfig:
        counted.validations += 1
        return validate(cls, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(Path, "read_text", counting_read)
    monkeypatch.setattr(EnvironmentConfig, "model_validate", classmethod(counting_validate))
    return counted


def releases(project: Project) -> Releases:
    # Whatever the fakes are handed, they answer: in the registry, trusted, scanned clean, verified on local.
    verified = Verification("local", BUILT, True, datetime(2026, 12, 1, 12, 5, tzinfo=UTC), "ci", "cluster", "verify")
    return Releases(
        project,
        registry=lambda *_: RegistryAnswer(True),
        trust=lambda *_: [],
        scan=lambda *_: [],
        attested=lambda *_: [verified],
    )


def verifier(project: Project, monkeypatch: pytest.MonkeyPatch) -> Verifier:
    monkeypatch.setattr(
        "dockyard.verify.verifier.cluster_checks", lambda *_, **__: [Check("rollout", True, "rolled out")]
    )
    cluster: Any = object()  # never read: the cluster checks above are stood in for
    return Verifier(project, kube=cluster, local_check=lambda *_: [], attest=lambda *_: "attested")


def run(reads: Reads, command: Callable[[], object]) -> Reads:
    reads.files.clear()
    reads.validations = 0
    command()
    return Reads(Counter(reads.files), reads.validations)


def test_a_promotion_reads_each_stack_once(command: Callable[[], Project], reads: Reads) -> None:
    project = command()
    counted = run(reads, lambda: releases(project).promote("local", STAGING, yes=True, confirm=lambda: True))
    assert counted.files == {"Pulumi.local.yaml": 1, f"Pulumi.{STAGING}.yaml": 2}  # 2 and 4 before
    assert counted.validations == 3  # 5 before


def test_a_verified_promotion_reads_each_stack_once(
    command: Callable[[], Project], reads: Reads, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = command()
    moves, checks = releases(project), verifier(project, monkeypatch)
    counted = run(reads, lambda: promote_verified(moves, checks, "local", STAGING, yes=True, confirm=lambda: True))
    assert counted.files == {"Pulumi.local.yaml": 1, f"Pulumi.{STAGING}.yaml": 2}  # 2 and 8 before
    assert counted.validations == 3  # 9 before


def test_a_canary_step_reads_its_stack_once(
    command: Callable[[], Project], reads: Reads, monkeypatch: pytest.MonkeyPatch
) -> None:
    releases(command()).promote("local", STAGING, yes=True, confirm=lambda: True)
    project = command()
    moves, checks = releases(project), verifier(project, monkeypatch)
    counted = run(reads, lambda: advance_canary(moves, checks, STAGING, auto=False, yes=True, confirm=lambda: True))
    assert counted.files == {f"Pulumi.{STAGING}.yaml": 2}  # 9 before
    assert counted.validations == 2  # 8 before


def test_under_the_lock_a_view_another_command_changed_is_read_again(command: Callable[[], Project]) -> None:
    project = command()
    before = project.view(STAGING)
    path = project.stack_file(STAGING)
    document = yaml.safe_load(path.read_text())
    document["config"]["dockyard:kubernetes"]["replicas"] = 6
    path.write_text(yaml.safe_dump(document))  # another command's move, applied while this one waited
    assert project.view(STAGING) is before, "outside the lock the command keeps its view"
    with project.lock(STAGING):
        changed = project.view(STAGING)
        assert changed.env.kubernetes.replicas == 6
    with project.lock(STAGING):
        assert project.view(STAGING) is changed, "an unchanged file is not read again"
