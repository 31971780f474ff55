"""Retention's decisions on plain facts: what is kept, and why; what is deleted, and why. Then the references a
project gives (config, what a stack serves, history within the window) from a real Project over the local chain's
stack files with a fake engine. The real registry, regctl and cosign are
``tests/integration/test_registry_lifecycle.py``'s."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dockyard import cli
from dockyard.releases.engine import StackMissingError
from dockyard.releases.errors import DockyardError
from dockyard.releases.project import Project
from dockyard.releases.prune import Pruned, prune, repositories, stack_references
from dockyard.releases.retention import Listing, Reference, judge, subject_of
from tests.stacks import PROJECT

REPO = "127.0.0.1:5443/dockyard/app"
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=90)


def digest(char: str) -> str:
    return f"sha256:{char * 64}"


def attached(char: str, *suffixes: str) -> tuple[str, ...]:
    return tuple(f"sha256-{char * 64}{suffix}" for suffix in suffixes)


def verdicts(listing: Listing, *references: Reference, keep_days: int = 30) -> dict[str, tuple[bool, tuple[str, ...]]]:
    return {v.digest: (v.keep, v.reasons) for v in judge(listing, references, NOW, keep_days)}


def test_attached_tags_belong_to_their_digest() -> None:
    assert subject_of(f"sha256-{'a' * 64}.sig") == digest("a")
    assert subject_of(f"sha256-{'a' * 64}") == digest("a"), "the referrers fallback tag"
    assert subject_of("sha-1234567") is None
    assert subject_of("1.2.3") is None


def test_every_referenced_digest_is_kept_with_every_reason_and_an_old_unreferenced_one_goes() -> None:
    listing = Listing(
        REPO,
        tags={"sha-1111111": digest("a"), "sha-2222222": digest("b"), "1.4.0": digest("c"), "main": digest("d")},
        attached=attached("a", ".sig", ".att") + attached("d", ".sig", ".att", ".sbom"),
        created={digest(c): OLD for c in "abcd"},
    )
    found = verdicts(
        listing,
        Reference(f"{REPO}@{digest('a')}", "local-staging's config (stable track)"),
        Reference(f"{REPO}@{digest('a')}", "local-staging's history (promote at 2026-12-01 10:00)"),
        Reference(f"{REPO}@{digest('b')}", "local serves it (its last update)"),
    )
    assert found == {
        digest("a"): (
            True,
            ("local-staging's config (stable track)", "local-staging's history (promote at 2026-12-01 10:00)"),
        ),
        digest("b"): (True, ("local serves it (its last update)",)),
        digest("c"): (True, ("release tag 1.4.0",)),
        digest("d"): (False, ("unreferenced, built 90 days ago (over --keep-days 30)",)),
    }
    (condemned,) = [v for v in judge(listing, [], NOW, 30) if v.digest == digest("d")]
    assert condemned.tags == ("main",)
    assert condemned.attached == attached("d", ".att", ".sbom", ".sig"), "its signatures go with it"


def test_a_young_or_ageless_unreferenced_digest_stays() -> None:
    listing = Listing(
        REPO,
        tags={"sha-1111111": digest("a"), "sha-2222222": digest("b")},
        created={digest("a"): NOW - timedelta(days=2), digest("b"): None},
    )
    assert verdicts(listing) == {
        digest("a"): (True, ("unreferenced, built 2 days ago (within --keep-days 30)",)),
        digest("b"): (True, ("unreferenced, but its build time is unknown",)),
    }
    assert verdicts(listing, keep_days=1)[digest("a")][0] is False


def test_a_copy_in_another_repository_keeps_nothing_here() -> None:
    listing = Listing(REPO, tags={"sha-1111111": digest("a")}, created={digest("a"): OLD})
    elsewhere = Reference(f"127.0.0.1:5443/dockyard/app-staging@{digest('a')}", "local-staging's config")
    assert verdicts(listing, elsewhere)[digest("a")][0] is False


def test_a_promoted_copy_named_only_by_its_signatures_is_judged_and_leftover_signatures_go() -> None:
    # A promotion copies by digest: the copy has no tag of its own, only its .sig/.att.
    listing = Listing(
        REPO,
        tags={},
        attached=attached("a", ".sig", ".att") + attached("e", ".sig"),
        created={digest("a"): OLD},
    )
    found = verdicts(listing, Reference(f"{REPO}@{digest('a')}", "local-prod's config (blue track)"))
    assert found[digest("a")] == (True, ("local-prod's config (blue track)",))
    assert found[digest("e")] == (False, ("the image is gone; only its attached tags are left",))


@dataclass
class Engine:
    """The engine reads retention makes: outputs and history per stack; ``missing``: never deployed."""

    outputs: dict[str, str]
    history: dict[str, list[dict[str, Any]]]
    missing: tuple[str, ...] = ()

    def read(self, stack: str, *args: str) -> Any:
        if stack in self.missing:
            raise StackMissingError(list(args), f"error: no stack named {stack} found")
        if args[:2] == ("stack", "output"):
            return {"image_ref": self.outputs.get(stack)}
        if args[:2] == ("stack", "history"):
            return self.history.get(stack, [])
        raise AssertionError(f"unexpected engine read {args}")


def entry(ended: datetime, message: str, image: str) -> dict[str, Any]:
    return {
        "startTime": (ended - timedelta(minutes=1)).isoformat(),
        "endTime": ended.isoformat(),
        "result": "succeeded",
        "message": message,
        "config": {"dockyard:image": {"value": f'{{"ref": "{image}"}}', "secret": False}},
    }


@pytest.fixture
def project(tmp_path: Path) -> Project:
    for name in ("Pulumi.yaml", "Pulumi.local.yaml", "Pulumi.local-staging.yaml", "Pulumi.local-prod.yaml"):
        shutil.copy(PROJECT / name, tmp_path)
    made = Project(tmp_path, print_line=lambda _: None)
    return made


def test_a_stack_references_its_config_what_it_serves_and_its_recent_history(project: Project) -> None:
    path = project.stack_file("local-prod")
    document = yaml.safe_load(path.read_text())
    strategy = document["config"]["dockyard:kubernetes"]["strategy"]
    strategy["blueImage"], strategy["greenImage"] = f"{REPO}@{digest('b')}", f"{REPO}@{digest('2')}"
    path.write_text(yaml.safe_dump(document))
    project.__dict__["engine"] = Engine(
        outputs={"local": f"{REPO}@{digest('1')}", "local-prod": f"{REPO}@{digest('b')}"},
        history={
            "local-staging": [
                entry(
                    NOW - timedelta(days=3), f"dockyard rollback image={REPO}@{digest('3')}", f"{REPO}@{digest('3')}"
                ),
                entry(
                    NOW - timedelta(days=60), f"dockyard promote image={REPO}@{digest('4')}", f"{REPO}@{digest('4')}"
                ),
            ]
        },
    )
    since = NOW - timedelta(days=30)
    found = {
        (r.image.rsplit(":", 1)[1][0], r.why)
        for stack in project.stacks
        for r in stack_references(project, stack, since)
    }
    assert ("b", "local-prod's config (blue track)") in found
    assert ("2", "local-prod's config (green track)") in found
    assert ("b", "local-prod serves it (its last update)") in found
    assert ("1", "local serves it (its last update)") in found, "a building stack's release is named only there"
    assert any(char == "3" and why.startswith("local-staging's history (rollback at") for char, why in found)
    assert not any(char == "4" for char, _ in found), "history older than the window does not keep a digest"


def test_a_stack_never_deployed_references_only_its_config_and_a_backend_fault_stops_the_run(
    project: Project,
) -> None:
    project.__dict__["engine"] = Engine(outputs={}, history={}, missing=("local-staging",))
    assert stack_references(project, "local-staging", NOW) == []

    class Down:
        def read(self, stack: str, *args: str) -> Any:
            raise RuntimeError("backend down")

    project.__dict__["engine"] = Down()
    with pytest.raises(RuntimeError):
        stack_references(project, "local-staging", NOW)


def test_each_repository_is_listed_once_with_the_first_stacks_credentials(project: Project) -> None:
    views = [project.view(stack) for stack in project.stacks]
    for view in views:
        view.__dict__["credentials"] = f"credentials of {view.name}"
    assert repositories(views) == {REPO: "credentials of local"}


def test_the_command_is_a_dry_run_unless_applied_and_says_why_each_digest_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listing = Listing(
        REPO, tags={"1.4.0": digest("c"), "main": digest("d")}, created={digest("c"): OLD, digest("d"): OLD}
    )
    asked: list[bool] = []

    def pruned(project: Project, *, now: datetime, keep_days: int, apply: bool, report: Any) -> list[Pruned]:
        asked.append(apply)
        return [Pruned(REPO, judge(listing, [], now, keep_days), apply)]

    monkeypatch.setattr(cli, "prune", pruned)
    dry = CliRunner().invoke(cli.app, ["registry", "prune", "--project", str(PROJECT)], env={"COLUMNS": "250"})
    assert dry.exit_code == 0, dry.output
    assert "release tag 1.4.0" in dry.output
    assert f"dry run: 1 digest(s) would be deleted from {REPO} (re-run with --apply)" in dry.output
    applied = CliRunner().invoke(
        cli.app, ["registry", "prune", "--apply", "--keep-days", "7", "--project", str(PROJECT)]
    )
    assert applied.exit_code == 0, applied.output
    assert f"deleted 1 digest(s) from {REPO}" in applied.output
    assert asked == [False, True]


def test_a_move_in_progress_on_any_stack_refuses_the_run_before_anything_is_read(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKYARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path}/state")
    project.__dict__["engine"] = Engine(outputs={}, history={})

    def no_registry(*_: object, **__: object) -> Pruned:
        raise AssertionError("the registry was asked while a move held a lock")

    monkeypatch.setattr("dockyard.releases.prune.prune_repository", no_registry)
    other = Project(project.directory, print_line=lambda _: None)
    with other.lock("local-prod"), pytest.raises(DockyardError, match="another dockyard operation on local-prod"):
        prune(project, now=NOW, keep_days=30, apply=False)
