"""The rebuild trigger: a hash of exactly what the build sends."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard_components.build_context import context_hash, sent_files


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "main.go").write_text("package main\n")
    (tmp_path / "README.md").write_text("docs\n")
    (tmp_path / "testdata").mkdir()
    (tmp_path / "testdata" / "big.bin").write_bytes(b"\0" * 10)
    (tmp_path / ".dockerignore").write_text("# docs are not built\n*.md\ntestdata\n")
    return tmp_path


def test_dockerignore_is_honored(context: Path) -> None:
    assert sent_files(context) == [".dockerignore", "Dockerfile", "main.go"]


def test_ignored_changes_do_not_change_the_hash(context: Path) -> None:
    before = context_hash(context)
    (context / "README.md").write_text("more docs\n")
    (context / "testdata" / "new.bin").write_bytes(b"x")
    assert context_hash(context) == before


def test_sent_changes_change_the_hash(context: Path) -> None:
    before = context_hash(context)
    (context / "main.go").write_text("package main // v2\n")
    assert context_hash(context) != before


def test_executable_bit_is_part_of_the_hash(context: Path) -> None:
    before = context_hash(context)
    (context / "main.go").chmod(0o755)
    assert context_hash(context) != before


def test_renaming_a_file_changes_the_hash(context: Path) -> None:
    before = context_hash(context)
    (context / "main.go").rename(context / "server.go")
    assert context_hash(context) != before
