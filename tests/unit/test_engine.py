"""The engine runner against a stand-in ``pulumi`` on PATH: arguments, streamed output, the event log read after
the run, a stack made on its first update, and the errors a missing stack and a held lock become."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pulumi import automation as auto

from dockyard.releases.engine import ConcurrentUpdateError, Engine, EngineError, StackMissingError, failure

#: Records its arguments; ``up``/``preview`` write one engine event to the ``--event-log``; a stack exists once
#: ``stack init`` made it (a marker file); ``LOCKED`` in the environment plays another update holding the lock.
FAKE_PULUMI = """#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "calls"), "a") as calls:
    calls.write(" ".join(args) + "\\n")
stack = args[args.index("--stack") + 1] if "--stack" in args else args[-1]
marker = os.path.join(here, "stack-" + stack)
if "init" in args:
    open(marker, "w").close()
    sys.exit(0)
if not os.path.exists(marker):
    print(f"error: no stack named '{stack}' found", file=sys.stderr)
    sys.exit(255)
if os.environ.get("LOCKED"):
    print("error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end",
          file=sys.stderr)
    sys.exit(255)
if "--event-log" in args:
    with open(args[args.index("--event-log") + 1], "w") as log:
        log.write(json.dumps({"sequence": 1, "timestamp": 0, "stdoutEvent": {"message": "hi", "color": "never"}}))
        log.write("\\n")
if "--json" in args:
    print(json.dumps({"image_ref": "repo@sha256:" + "a" * 64}))
else:
    print("Updating (" + stack + "):")
    print("Resources: 1 unchanged", file=sys.stderr)
"""


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    (directory / "pulumi").write_text(FAKE_PULUMI)
    (directory / "pulumi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    return directory


def calls(bin_dir: Path) -> list[str]:
    return (bin_dir / "calls").read_text().splitlines()


def test_an_update_names_its_stack_streams_its_output_and_reads_its_events_after(bin_dir: Path, tmp_path: Path) -> None:
    (bin_dir / "stack-local").touch()
    lines: list[str] = []
    events: list[auto.EngineEvent] = []
    Engine(tmp_path).stack("local", create=False).up(
        message="dockyard promote", on_output=lines.append, on_event=events.append
    )
    (call,) = calls(bin_dir)
    assert call.startswith(
        "--non-interactive up --yes --skip-preview --message dockyard promote --stack local --event-log "
    )
    assert sorted(lines) == ["Resources: 1 unchanged", "Updating (local):"], "stdout and stderr, as they come"
    assert [event.stdout_event.message for event in events if event.stdout_event] == ["hi"]


def test_a_read_is_one_json_command_that_never_selects_the_stack(bin_dir: Path, tmp_path: Path) -> None:
    (bin_dir / "stack-local").touch()
    assert Engine(tmp_path).read("local", "stack", "output") == {"image_ref": "repo@sha256:" + "a" * 64}
    assert calls(bin_dir) == ["--non-interactive stack output --json --stack local"]


def test_a_missing_stack_is_made_on_its_first_update_only_when_asked(bin_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(StackMissingError, match="no stack named 'new' found"):
        Engine(tmp_path).stack("new", create=False).preview()
    Engine(tmp_path).stack("new", create=True).up()
    assert [call.split(" --event-log")[0] for call in calls(bin_dir)] == [
        "--non-interactive preview --stack new",
        "--non-interactive up --yes --skip-preview --stack new",
        "--non-interactive stack init new",
        "--non-interactive up --yes --skip-preview --stack new",
    ]


def test_a_held_lock_is_a_concurrent_update(bin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (bin_dir / "stack-local").touch()
    monkeypatch.setenv("LOCKED", "1")
    with pytest.raises(ConcurrentUpdateError):
        Engine(tmp_path).stack("local", create=True).up()


def test_errors_name_the_last_error_line() -> None:
    error = failure(["up"], "Updating\nerror: one\nerror: the real one\n")
    assert type(error) is EngineError
    assert str(error) == "pulumi up failed: error: the real one"
    assert isinstance(
        failure(["up"], "error: [409] Conflict: Another update is currently in progress."), ConcurrentUpdateError
    )
