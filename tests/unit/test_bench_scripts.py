"""Every benchmark script imports and answers ``--help`` (its programs preview in tests/engine/test_bench_programs.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.stacks import PROJECT

BENCHMARKS = sorted(p.stem for p in (PROJECT / "bench").glob("*.py") if p.stem not in ("__init__", "timing"))


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_the_benchmark_imports_and_documents_its_target(benchmark: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{benchmark}", "--help"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "target" in done.stdout.lower(), f"bench/{benchmark}.py --help names no target"
