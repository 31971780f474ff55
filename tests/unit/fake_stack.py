"""A stack for promotion tests without the engine: config in a real ``Pulumi.<stack>.yaml``, preview and up scripted.

``set_config`` rewrites the file through a YAML round-trip, as ``pulumi config set`` does: comments and layout change,
so only a byte-for-byte restore makes the file identical again. Also run as a child process by the signal tests.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto

from dockyard.config_guard import Terminated
from dockyard.promotion import ImageSwitch, OnEvent, OnOutput, switch_image

IMAGE = "127.0.0.1:5443/dockyard/app@sha256:" + "b" * 64
STACK_FILE = """\
# Local prod. This comment and the flow style below do not survive a YAML round-trip.
config:
  dockyard:tier: prod
  dockyard:image:
    ref: 127.0.0.1:5443/dockyard/app@sha256:0000000000000000000000000000000000000000000000000000000000000000
  dockyard:kubernetes:
    resources:
      requests: {cpu: 50m, memory: 32Mi}
  dockyard:appSecrets:
    API_KEY:
      secure: v1:uNHL/ARNO1qEq9da:m+VpmYQ6o9ALbpoLJox7XIKh9oL2RNFn6NqJ70e9EMj1z/PkSrd9
encryptionsalt: v1:T9p/N3X4MzU=:v1:/4BZo50885IpPKRY:nXjlz4AUH0SvtQnhMlZxlGRgl632xA==
"""

Effect = Callable[[], None]


def command_error(message: str) -> auto.CommandError:
    return auto.CommandError(auto.CommandResult(stdout="", stderr=f"error: {message}", code=255))


def _split(key: str) -> tuple[str, list[str]]:
    namespace, _, rest = key.partition(":")
    top, *path = rest.split(".")
    return f"{namespace}:{top}", path


@dataclass
class FakeStack:
    """Implements :class:`dockyard.promotion.UpdatableStack`; ``on_preview``/``on_up`` may raise to fail."""

    config_file: Path
    on_preview: Effect | None = None
    on_up: Effect | None = None
    messages: list[str] = field(default_factory=list)

    def _document(self) -> dict[str, Any]:
        return yaml.safe_load(self.config_file.read_text()) if self.config_file.exists() else {}

    def get_config(self, key: str, *, path: bool = False) -> auto.ConfigValue:
        top, parts = _split(key)
        node: Any = (self._document().get("config") or {}).get(top)
        for part in parts:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            raise command_error(f"configuration key '{key}' not found for stack")
        return auto.ConfigValue(str(node))

    def set_config(self, key: str, value: auto.ConfigValue, *, path: bool = False) -> None:
        document = self._document()
        top, parts = _split(key)
        config = document.setdefault("config", {})
        if not parts:
            config[top] = value.value
        else:
            node = config.setdefault(top, {})
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value.value
        self.config_file.write_text(yaml.safe_dump(document, sort_keys=True))

    def preview(
        self,
        *,
        diff: bool | None = None,
        color: str | None = None,
        on_output: OnOutput | None = None,
        on_event: OnEvent | None = None,
    ) -> object:
        if on_output is not None:
            on_output("previewing update")
        if self.on_preview is not None:
            self.on_preview()
        return None

    def up(self, *, message: str | None = None, color: str | None = None, on_output: OnOutput | None = None) -> object:
        if self.on_up is not None:
            self.on_up()
        self.messages.append(message or "")
        return None


def cancelled_mark(config_file: Path) -> Path:
    return config_file.with_name("engine-cancelled")


def switch(config_file: Path, key: str = "dockyard:image.ref") -> ImageSwitch:
    return ImageSwitch(
        action="promote",
        stack="local-prod",
        config_file=config_file,
        key=key,
        image=IMAGE,
        message=f"dockyard promote image={IMAGE}",
    )


def _wait_for_a_signal() -> None:
    print("ready", flush=True)
    time.sleep(60)


#: A stand-in for the pulumi CLI: SIGINT is its graceful cancel; it leaves a mark and exits.
ENGINE = """
import signal, sys, time
def cancel(signum, frame):
    open(sys.argv[1], "w").write("cancelled")
    sys.exit(255)
signal.signal(signal.SIGINT, cancel)
print("ready", flush=True)
time.sleep(20)
"""


def _run_engine(mark: Path) -> None:
    # As the automation API runs the CLI: Popen, then wait; on an exception Popen's exit waits for the process.
    with subprocess.Popen([sys.executable, "-c", ENGINE, str(mark)]) as engine:
        engine.wait()


if __name__ == "__main__":
    # Child of the signal tests: ``<file> preview|confirm|up|engine``: block at that step until a signal arrives
    # (engine: in a grandchild that stands in for the pulumi CLI).
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if the test runner ignores it
    config_file, step = Path(sys.argv[1]), sys.argv[2]
    stack = FakeStack(
        config_file,
        on_preview=_wait_for_a_signal if step == "preview" else None,
        on_up={"up": _wait_for_a_signal, "engine": lambda: _run_engine(cancelled_mark(config_file))}.get(step),
    )

    def confirm() -> bool:
        _wait_for_a_signal()
        return True

    try:
        switch_image(stack, switch(config_file), yes=step != "confirm", confirm=confirm, print_line=lambda _: None)
    except KeyboardInterrupt as interrupt:
        sys.exit(128 + (interrupt.signum if isinstance(interrupt, Terminated) else signal.SIGINT))
    sys.exit(0)
