"""Every benchmark script imports and answers ``--help`` (its programs preview in tests/engine/test_bench_programs.py).

In-process (``main()`` with ``--help`` as its arguments): a fresh interpreter per script cost the unit tier ~5 s each.
"""

from __future__ import annotations

import importlib
import sys

import pytest

from tests.stacks import PROJECT

BENCHMARKS = sorted(p.stem for p in (PROJECT / "bench").glob("*.py") if p.stem not in ("__init__", "timing"))


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_the_benchmark_imports_and_documents_its_target(
    benchmark: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = importlib.import_module(f"bench.{benchmark}")
    monkeypatch.setattr(sys, "argv", [f"bench/{benchmark}.py", "--help"])
    with pytest.raises(SystemExit) as exited:
        module.main()
    assert exited.value.code == 0
    assert "target" in capsys.readouterr().out.lower(), f"bench/{benchmark}.py --help names no target"
