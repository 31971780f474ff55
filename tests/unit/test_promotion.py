"""Every release move leaves the target's ``Pulumi.<stack>.yaml`` byte-identical unless the update is applied.

No engine: the stack is a :class:`FakeStack` whose config is a real file, and whose preview and up are scripted to
succeed, fail or be interrupted. The signal tests run that flow in a child process and signal it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from dockyard import cli
from dockyard.model.image_diff import ImageChange
from dockyard.model.strategies import ConfigWrite
from dockyard.releases.config_guard import Terminated, restored_unless_kept
from dockyard.releases.engine import failure
from dockyard.releases.errors import DockyardError
from dockyard.releases.stack_update import Outcome, apply_update, edited, write_config
from tests.stacks import PROJECT
from tests.unit.fake_stack import IMAGE, OLD, STACK_FILE, FakeStack, cancelled_mark, command_error, update

CHILD = Path(__file__).with_name("fake_stack.py")


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "Pulumi.local-prod.yaml"
    path.write_text(STACK_FILE)
    path.chmod(0o640)
    return path


def run(stack: FakeStack, *, yes: bool = False, confirm: Callable[[], bool] = lambda: False) -> Outcome:
    return apply_update(stack, update(stack.config_file), yes=yes, confirm=confirm, print_line=lambda _: None)


def fail(error: BaseException) -> Callable[[], None]:
    def effect() -> None:
        raise error

    return effect


def test_a_write_rewrites_the_file_so_only_a_byte_restore_makes_it_identical(config_file: Path) -> None:
    write_config(config_file, ConfigWrite("same", {"image.ref": OLD}))
    assert config_file.read_text() != STACK_FILE
    assert yaml.safe_load(config_file.read_text()) == yaml.safe_load(STACK_FILE)


def test_writes_set_nested_keys_and_remove_them_like_config_set_and_rm() -> None:
    document = {"config": {"dockyard:kubernetes": {"strategy": {"type": "canary", "weight": 0}}, "other:key": 1}}
    started = edited(document, ConfigWrite("start", {"kubernetes.strategy.canaryImage": IMAGE, "image.ref": OLD}))
    assert started["config"]["dockyard:kubernetes"]["strategy"] == {"type": "canary", "weight": 0, "canaryImage": IMAGE}
    assert started["config"]["dockyard:image"] == {"ref": OLD}
    assert started["config"]["other:key"] == 1
    removed = edited(started, ConfigWrite("abort", {"kubernetes.strategy.canaryImage": None, "nothing.here": None}))
    assert removed["config"]["dockyard:kubernetes"]["strategy"] == {"type": "canary", "weight": 0}
    assert "dockyard:nothing" not in removed["config"]
    assert document["config"]["dockyard:kubernetes"]["strategy"] == {"type": "canary", "weight": 0}, "a copy"


def test_asking_previews_first_and_yes_applies_in_one_run(config_file: Path) -> None:
    asked = FakeStack(config_file)
    assert run(asked, confirm=lambda: True).applied
    assert asked.runs == ["preview", "up"]
    config_file.write_text(STACK_FILE)
    direct = FakeStack(config_file)
    assert run(direct, yes=True).applied
    assert direct.runs == ["up"], "with --yes the update is the only engine run; its own output shows the diff"


def test_the_outcome_shows_each_image_change_old_to_new(config_file: Path) -> None:
    outcome = run(FakeStack(config_file), confirm=lambda: False)
    (change,) = outcome.changes
    assert (change.op, change.name, change.properties) == (
        "update",
        "app-stable",
        ("spec.template.spec.containers[0].image",),
    )
    assert outcome.images == [
        ImageChange("app-stable", "app", OLD, IMAGE, "sha256-aaaaaaaaaaaa", "sha256-bbbbbbbbbbbb")
    ]
    assert outcome.images[0].render() == (
        f"app-stable: 127.0.0.1:5443/dockyard/app sha256:{'a' * 12} → sha256:{'b' * 12}"
    )
    assert outcome.before == {"image.ref": OLD}, "what the write replaced, so the move can be undone"


def test_no_at_the_prompt_restores_the_file(config_file: Path) -> None:
    outcome = run(FakeStack(config_file), confirm=lambda: False)
    assert config_file.read_text() == STACK_FILE
    assert not outcome.applied


def test_an_applied_update_keeps_the_new_image(config_file: Path) -> None:
    stack = FakeStack(config_file)
    outcome = run(stack, yes=True)
    assert outcome.applied
    assert stack.messages == [f"dockyard promote image={IMAGE}"]
    assert yaml.safe_load(config_file.read_text())["config"]["dockyard:image"]["ref"] == IMAGE


@pytest.mark.parametrize(
    ("step", "error", "expected"),
    [
        ("preview", command_error("preview failed: program exited"), DockyardError),
        ("up", command_error("update failed"), DockyardError),
        ("up", command_error("[409] Conflict: Another update is currently in progress."), DockyardError),
        ("preview", KeyboardInterrupt(), KeyboardInterrupt),
        ("up", Terminated(signal.SIGTERM), Terminated),
        ("preview", RuntimeError("a bug"), RuntimeError),
    ],
    ids=["failed-preview", "failed-up", "concurrent-update", "ctrl-c-in-preview", "sigterm-in-up", "any-error"],
)
def test_a_failed_or_interrupted_update_restores_the_file(
    config_file: Path, step: str, error: BaseException, expected: type[BaseException]
) -> None:
    effect = fail(error)
    stack = FakeStack(
        config_file, on_preview=effect if step == "preview" else None, on_up=effect if step == "up" else None
    )
    with pytest.raises(expected):
        run(stack, confirm=lambda: True)
    assert config_file.read_text() == STACK_FILE
    assert oct(config_file.stat().st_mode & 0o777) == oct(0o640)


def test_ctrl_c_at_the_prompt_restores_the_file(config_file: Path) -> None:
    def interrupted() -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(FakeStack(config_file), confirm=interrupted)
    assert config_file.read_text() == STACK_FILE


def test_a_failed_up_names_the_untouched_file(config_file: Path) -> None:
    with pytest.raises(
        DockyardError, match=r"promote of local-prod failed: .*error: boom \(Pulumi.local-prod.yaml left as it was\)"
    ):
        run(FakeStack(config_file, on_up=fail(command_error("boom"))), yes=True)


def test_a_file_that_did_not_exist_is_removed_again(tmp_path: Path) -> None:
    missing = tmp_path / "Pulumi.new.yaml"
    with pytest.raises(DockyardError):
        run(FakeStack(missing, on_preview=fail(command_error("no"))), confirm=lambda: True)
    assert not missing.exists()


def test_the_guard_restores_through_a_symlink_and_keeps_on_request(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    real.write_bytes(b"a: 1\n")
    link = tmp_path / "Pulumi.x.yaml"
    link.symlink_to(real)
    with restored_unless_kept(link):
        link.write_bytes(b"a: 2\n")
    assert link.is_symlink()
    assert real.read_bytes() == b"a: 1\n"
    with restored_unless_kept(link) as edit:
        link.write_bytes(b"a: 3\n")
        edit.keep()
    assert real.read_bytes() == b"a: 3\n"


def test_the_guard_puts_the_previous_signal_handlers_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with restored_unless_kept(PROJECT / "Pulumi.yaml"):
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


# --- a real process, a real signal ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "signum", "existed"),
    [
        ("preview", signal.SIGINT, True),
        ("preview", signal.SIGTERM, True),
        ("confirm", signal.SIGINT, True),
        ("confirm", signal.SIGTERM, True),
        ("confirm", signal.SIGHUP, True),
        ("up", signal.SIGTERM, True),
        ("preview", signal.SIGTERM, False),
    ],
    ids=lambda value: value.name if isinstance(value, signal.Signals) else str(value),
)
def test_a_signal_during_a_promotion_leaves_the_file_byte_identical(
    tmp_path: Path, step: str, signum: signal.Signals, existed: bool
) -> None:
    config_file = tmp_path / "Pulumi.local-prod.yaml"
    if existed:
        config_file.write_text(STACK_FILE)
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    with subprocess.Popen(
        [sys.executable, str(CHILD), str(config_file), step], stdout=subprocess.PIPE, text=True, env=env
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        assert config_file.exists()
        assert IMAGE in config_file.read_text()  # the child did write the new image before blocking
        child.send_signal(signum)
        code = child.wait(timeout=120)  # the full suite loads the machine: Python starts slowly
    assert code == 128 + signum  # the signal became the Ctrl-C path, not the default death
    if existed:
        assert config_file.read_text() == STACK_FILE
    else:
        assert not config_file.exists()


def test_sigterm_during_up_cancels_the_engine_before_the_file_is_restored(tmp_path: Path) -> None:
    config_file = tmp_path / "Pulumi.local-prod.yaml"
    config_file.write_text(STACK_FILE)
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    with subprocess.Popen(
        [sys.executable, str(CHILD), str(config_file), "engine"], stdout=subprocess.PIPE, text=True, env=env
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"  # from the stand-in engine, the grandchild
        child.send_signal(signal.SIGTERM)
        code = child.wait(timeout=10)  # the engine would otherwise run on for 20 s and the update complete
    assert code == 128 + signal.SIGTERM
    assert cancelled_mark(config_file).read_text() == "cancelled"
    assert config_file.read_text() == STACK_FILE


# --- the CLI reports an interrupt in one line, with the shell's exit code -------------------------------------


class InterruptedReleases:
    """Stands in for Releases: every move is interrupted by ``signum``."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def _interrupt(self, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt() if self.signum == signal.SIGINT else Terminated(self.signum)

    promote = rollback = _interrupt


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize(
    "command", [["promote", "--from", "local", "--to", "local-prod"], ["rollback", "--stack", "local-prod"]]
)
def test_the_cli_reports_an_interrupt_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, signum: signal.Signals, command: list[str]
) -> None:
    monkeypatch.setattr(cli, "Releases", lambda project: InterruptedReleases(signum))
    result = CliRunner().invoke(cli.app, command)
    assert result.exit_code == 128 + signum
    assert f"interrupted ({signum.name}): Pulumi.local-prod.yaml holds only what was applied" in result.output
    assert "Traceback" not in result.output


def test_an_interrupt_at_the_prompt_stays_an_interrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    def confirm_interrupted_by_sigterm(text: str, default: bool) -> bool:
        try:
            raise Terminated(signal.SIGTERM)
        except KeyboardInterrupt:
            raise typer.Abort() from None  # what click does with an interrupt at a prompt

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(typer, "confirm", confirm_interrupted_by_sigterm)
    with pytest.raises(Terminated):
        cli._confirm()


def test_a_backend_that_goes_away_during_the_update_is_named_with_the_way_back(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgres://dockyard:pw-never-shown@127.0.0.1:5433/dockyard?sslmode=verify-full"
    monkeypatch.setenv("PULUMI_BACKEND_URL", url)
    gone = failure(["up", "--stack", "local-prod"], "error: failed to save checkpoint: driver: bad connection\n")
    with pytest.raises(DockyardError) as refused:
        run(FakeStack(config_file, on_up=fail(gone)), yes=True)
    message = str(refused.value)
    assert message.startswith("promote of local-prod: pulumi up failed: the state backend postgres://dockyard:****@")
    assert "start it (scripts/local-services.sh start postgres), then run dockyard doctor --stack local-prod" in message
    assert "pw-never-shown" not in message
    assert message.endswith("(Pulumi.local-prod.yaml left as it was)")
    assert config_file.read_text() == STACK_FILE
