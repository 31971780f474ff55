"""The suite's own module order: longest first from the recorded times (tests/schedule.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from tests import schedule


@dataclass
class Item:
    nodeid: str


def ordered(nodeids: list[str], seconds: dict[str, float]) -> list[str]:
    items = cast(list[pytest.Item], [Item(n) for n in nodeids])
    return [cast(Any, item).nodeid for item in schedule.longest_first(items, seconds)]


def test_modules_go_longest_first_then_the_untimed_ones_in_collection_order() -> None:
    collected = [
        "tests/engine/test_a.py::test_one",
        "tests/engine/test_a.py::test_two",
        "tests/engine/test_new.py::test_one",
        "tests/engine/test_pipeline.py::test_one",
        "tests/engine/test_pipeline.py::test_two",
        "tests/unit/test_new_too.py::test_one",
        "tests/unit/test_x.py::test_one",
    ]
    seconds = {"tests/engine/test_a.py": 90.0, "tests/engine/test_pipeline.py": 600.0, "tests/unit/test_x.py": 2.0}
    assert ordered(collected, seconds) == [
        "tests/engine/test_pipeline.py::test_one",
        "tests/engine/test_pipeline.py::test_two",  # a module's tests keep their order
        "tests/engine/test_a.py::test_one",
        "tests/engine/test_a.py::test_two",
        "tests/unit/test_x.py::test_one",
        "tests/engine/test_new.py::test_one",  # not timed yet: after the timed ones, as collected
        "tests/unit/test_new_too.py::test_one",
    ]
    assert ordered(collected, {}) == collected, "a fresh machine keeps the collection order"


def test_a_run_of_some_modules_updates_theirs_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "test-durations.json"
    assert schedule.read(path) == {}
    schedule.record({"tests/engine/test_a.py": 90.04, "tests/unit/test_x.py": 2.0}, path)
    schedule.record({"tests/unit/test_x.py": 3.0}, path)
    assert schedule.read(path) == {"tests/engine/test_a.py": 90.0, "tests/unit/test_x.py": 3.0}
    assert [p.name for p in path.parent.iterdir()] == ["test-durations.json"], "written whole, no temporary left"


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"tests/a.py": "slow", "tests/b.py": 4}'])
def test_an_unreadable_file_orders_nothing_it_cannot_read(tmp_path: Path, text: str) -> None:
    path = tmp_path / "test-durations.json"
    path.write_text(text)
    assert schedule.read(path) == ({"tests/b.py": 4.0} if "slow" in text else {})
