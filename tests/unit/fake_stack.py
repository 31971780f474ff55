"""A stack for release-move tests without the engine: config in a real ``Pulumi.<stack>.yaml``, preview and up scripted.

The move itself writes the file (:func:`dockyard.releases.stack_update.write_config`, a YAML round-trip like
``pulumi config set``): comments and layout change, so only a byte-for-byte restore makes it identical again. Preview
and up report the events a real engine would (a Deployment whose image changes). Also run as a child process by the
signal tests.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from dockyard.model.strategies import ConfigWrite
from dockyard.releases.config_guard import Terminated
from dockyard.releases.engine import EngineError, failure
from dockyard.releases.stack_update import OnEvent, OnOutput, StackUpdate, apply_update

OLD = "127.0.0.1:5443/dockyard/app@sha256:" + "a" * 64
IMAGE = "127.0.0.1:5443/dockyard/app@sha256:" + "b" * 64
DEPLOYMENT = "urn:pulumi:local-prod::dockyard::dockyard:index:KubernetesApp$kubernetes:apps/v1:Deployment::app-stable"
STACK_FILE = """\
# Local prod. This comment and the flow style below do not survive a YAML round-trip.
config:
  dockyard:tier: prod
  dockyard:image:
    ref: 127.0.0.1:5443/dockyard/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
  dockyard:kubernetes:
    resources:
      requests: {cpu: 50m, memory: 32Mi}
  dockyard:appSecrets:
    API_KEY:
      secure: v1:uNHL/ARNO1qEq9da:m+VpmYQ6o9ALbpoLJox7XIKh9oL2RNFn6NqJ70e9EMj1z/PkSrd9
encryptionsalt: v1:T9p/N3X4MzU=:v1:/4BZo50885IpPKRY:nXjlz4AUH0SvtQnhMlZxlGRgl632xA==
"""

Effect = Callable[[], None]


def command_error(message: str) -> EngineError:
    """What :class:`dockyard.releases.engine.Engine` raises when ``pulumi up`` ends with ``error: <message>``."""
    return failure(["up"], f"error: {message}\n")


def inputs(image: str) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app.kubernetes.io/version": f"sha256-{image[-64:][:12]}"}}}
    return {"spec": {"template": {**template, "spec": {"containers": [{"name": "app", "image": image}]}}}}


def image_update_event(old: str, new: str) -> auto.EngineEvent:
    """The engine's resourcePreEvent for a Deployment whose image changes, as its event log writes it."""

    def state(image: str) -> dict[str, Any]:
        return {"type": "kubernetes:apps/v1:Deployment", "urn": DEPLOYMENT, "inputs": inputs(image)}

    return auto.EngineEvent.from_json(
        {
            "sequence": 3,
            "timestamp": 0,
            "resourcePreEvent": {
                "metadata": {
                    "op": "update",
                    "urn": DEPLOYMENT,
                    "type": "kubernetes:apps/v1:Deployment",
                    "provider": "",
                    "old": state(old),
                    "new": state(new),
                    "diffs": ["spec"],
                    "detailedDiff": {
                        "spec.template.spec.containers[0].image": {"diffKind": "update", "inputDiff": True}
                    },
                }
            },
        }
    )


def provider_config_event() -> auto.EngineEvent:
    """The update of the dynamic resources' default provider the engine reports on any config change (dynamic
    providers receive the stack's config): it changes nothing, and an outcome must not list it."""
    urn = "urn:pulumi:local-staging::dockyard::pulumi:providers:pulumi-python::default"
    return auto.EngineEvent.from_json(
        {
            "sequence": 2,
            "timestamp": 0,
            "resourcePreEvent": {
                "metadata": {"op": "update", "urn": urn, "type": "pulumi:providers:pulumi-python", "provider": ""}
            },
        }
    )


@dataclass
class FakeStack:
    """Implements :class:`dockyard.releases.stack_update.UpdatableStack`; ``on_preview``/``on_up`` may raise to fail."""

    config_file: Path
    on_preview: Effect | None = None
    on_up: Effect | None = None
    messages: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    def preview(
        self,
        *,
        diff: bool | None = None,
        color: str | None = None,
        on_output: OnOutput | None = None,
        on_event: OnEvent | None = None,
    ) -> object:
        self.runs.append("preview")
        if on_output is not None:
            on_output("previewing update")
        if self.on_preview is not None:
            self.on_preview()
        if on_event is not None:
            on_event(provider_config_event())
            on_event(image_update_event(OLD, IMAGE))
        return None

    def up(
        self,
        *,
        message: str | None = None,
        diff: bool | None = None,
        color: str | None = None,
        on_output: OnOutput | None = None,
        on_event: OnEvent | None = None,
    ) -> object:
        self.runs.append("up")
        if self.on_up is not None:
            self.on_up()
        if on_event is not None:
            on_event(provider_config_event())
            on_event(image_update_event(OLD, IMAGE))
        self.messages.append(message or "")
        return None


def cancelled_mark(config_file: Path) -> Path:
    return config_file.with_name("engine-cancelled")


def update(config_file: Path) -> StackUpdate:
    return StackUpdate(
        action="promote",
        stack="local-prod",
        config_file=config_file,
        write=ConfigWrite(f"release {IMAGE}", {"image.ref": IMAGE}),
        image=IMAGE,
        previous=OLD,
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
    # A closing terminal's SIGHUP, even when the suite runs under nohup (which the guard rightly leaves ignored: a CI
    # run started with nohup had this child sleep through its SIGHUP).
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    # A child inherits its parent's blocked signals, a shell's command starts with none: do not depend on the test
    # runner's mask (in one run of the whole unit tier, SIGINT waited out this child's 60 s sleep).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
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
        # The preview runs only when asking: every step but "up" asks (and "up" is reached by confirming).
        apply_update(
            stack,
            update(config_file),
            yes=step == "up",
            confirm=confirm if step == "confirm" else lambda: True,
            print_line=lambda _: None,
        )
    except KeyboardInterrupt as interrupt:
        sys.exit(128 + (interrupt.signum if isinstance(interrupt, Terminated) else signal.SIGINT))
    sys.exit(0)
