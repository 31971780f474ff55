"""The tag strategy and build identity: pure functions, no Pulumi."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard_components.tags import (
    GitFacts,
    image_tags,
    is_release_tag,
    metadata_build_args,
    metadata_labels,
    read_git_facts,
    release_identity,
)

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_commit_only() -> None:
    assert image_tags(GitFacts(commit=SHA)) == ["sha-0123456"]


def test_release_tag_gives_semver_family() -> None:
    assert image_tags(GitFacts(commit=SHA, tag="v1.4.2")) == ["sha-0123456", "1.4.2", "1.4", "1"]


def test_prerelease_gets_only_its_full_version() -> None:
    assert image_tags(GitFacts(commit=SHA, tag="v2.0.0-rc.1")) == ["sha-0123456", "2.0.0-rc.1"]


@pytest.mark.parametrize("tag", ["v1.2", "release-1.0.0", "vnext", "1.2.3"])
def test_non_semver_or_unprefixed_tags_are_ignored(tag: str) -> None:
    assert image_tags(GitFacts(commit=SHA, tag=tag)) == ["sha-0123456"]


def test_branch_is_sanitized_for_docker() -> None:
    assert image_tags(GitFacts(commit=SHA, branch="feature/Login+SSO")) == ["sha-0123456", "feature-Login-SSO"]


def test_commit_must_be_hex() -> None:
    with pytest.raises(ValueError, match="not a hex git object id"):
        image_tags(GitFacts(commit="HEAD"))


@given(branch=st.text(min_size=1, max_size=300))
def test_every_branch_becomes_a_valid_docker_tag(branch: str) -> None:
    *_, last = image_tags(GitFacts(commit=SHA, branch=branch))
    assert 1 <= len(last) <= 128
    assert all(c.isascii() and (c.isalnum() or c in "_.-") for c in last)
    assert last[0].isalnum() or last[0] == "_"


def test_identity_without_git_is_derived_from_sources_only() -> None:
    tags, metadata = release_identity(None, "f" * 64, "file:app")
    assert tags == ["src-ffffffffffff"]
    assert metadata["created"] == "1970-01-01T00:00:00Z"
    assert release_identity(None, "f" * 64, "file:app") == (tags, metadata)


def test_dirty_sources_never_reuse_a_commit_tag() -> None:
    facts = GitFacts(commit=SHA, branch="main", dirty=True, committed_at="2026-11-26T10:00:00+00:00")
    tags, metadata = release_identity(facts, "a" * 64, "https://github.com/acme/app")
    assert tags == ["sha-0123456-dirty-aaaaaaaa"]
    assert metadata["revision"] == f"{SHA}-dirty"
    assert metadata_labels(metadata)["org.opencontainers.image.created"] == "2026-11-26T10:00:00+00:00"


def test_release_version_comes_from_the_tag() -> None:
    _, metadata = release_identity(GitFacts(commit=SHA, tag="v3.1.0"), "a" * 64, "src")
    assert metadata["version"] == "3.1.0"
    assert metadata_build_args(metadata)["VERSION"] == "3.1.0"


def test_git_facts_follow_the_last_commit_of_the_context(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True).stdout

    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.go").write_text("package main\n")
    git("add", ".")
    git("commit", "-qm", "app")
    app_commit = git("rev-parse", "HEAD").strip()
    (tmp_path / "README.md").write_text("docs\n")
    git("add", ".")
    git("commit", "-qm", "docs only")
    facts = read_git_facts(tmp_path / "app")
    assert facts is not None
    assert facts.commit == app_commit, "an unrelated commit must not change the image identity"
    assert facts.branch == "main"
    assert not facts.dirty
    (tmp_path / "app" / "main.go").write_text("package main // changed\n")
    changed = read_git_facts(tmp_path / "app")
    assert changed is not None
    assert changed.dirty


def test_git_facts_outside_a_checkout(tmp_path: Path) -> None:
    assert read_git_facts(tmp_path) is None


@pytest.mark.parametrize(
    ("tag", "release"),
    [
        ("1.2.3", True),
        ("1.2.3-rc.1", True),
        ("1.2", True),
        ("1", True),
        ("sha-1234567", False),
        ("main", False),
        ("v1.2.3", False),
        ("01", False),
        ("1.2.3.4", False),
        ("sha256-" + "a" * 64 + ".sig", False),
    ],
)
def test_release_tags_are_the_versions_image_tags_gives(tag: str, release: bool) -> None:
    assert is_release_tag(tag) is release
