"""Leave a stack's config file exactly as it was unless the change written into it is applied.

``dockyard promote`` and ``rollback`` write a digest into ``Pulumi.<stack>.yaml`` before the preview, because the
engine reads config from that file. If the file kept that digest after a "no", a Ctrl-C, a SIGTERM or a failed
preview/up, the next plain ``pulumi up`` would ship a release nobody approved. :func:`restored_unless_kept` is the one
place that prevents it: whatever ends the ``with`` block, the file gets its original bytes back (or is removed again
if it did not exist) unless the block called :meth:`ConfigEdit.keep`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

#: Signals that end a run the way Ctrl-C does: raised as :class:`Terminated` so the same ``finally`` runs.
#: SIGHUP is the terminal closing while the prompt waits; it is left alone when ignored (``nohup``).
TERMINATING = (signal.SIGTERM, signal.SIGHUP)
_RESTORE_BLOCKS = {signal.SIGINT, *TERMINATING}

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program was, so it unwinds exactly like a Ctrl-C."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


@dataclass
class ConfigEdit:
    """Handle of a guarded edit: call :meth:`keep` once the change it holds was applied."""

    path: Path
    kept: bool = False

    def keep(self) -> None:
        self.kept = True


@contextmanager
def restored_unless_kept(path: Path) -> Iterator[ConfigEdit]:
    """Give ``path`` back its exact bytes on leaving the block, unless :meth:`ConfigEdit.keep` was called.

    SIGTERM and SIGHUP raise :class:`Terminated` inside the block (main thread only: signal handlers cannot be
    installed elsewhere), and interrupting signals are held back while the file is written back.
    """
    target = path.resolve()
    original = target.read_bytes() if target.exists() else None
    mode = target.stat().st_mode if original is not None else None
    edit = ConfigEdit(path)
    previous = _raise_on_termination()
    try:
        yield edit
    finally:
        try:
            if not edit.kept:
                with _signals_held():
                    _write_back(target, original, mode)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _raise(signum: int, frame: FrameType | None) -> None:
    _interrupt_children()
    raise Terminated(signum)


def _interrupt_children() -> None:
    """Ask the processes this one started (the pulumi CLI) to cancel, as Ctrl-C in a terminal does.

    A terminal's Ctrl-C reaches the whole foreground group, SIGTERM only this process: without this the engine would
    finish the update while the config file is restored (the automation API waits for it on any exception but
    KeyboardInterrupt itself). SIGINT is the engine's graceful cancel; it stops after the operations in flight.
    """
    for listing in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for pid in listing.read_text().split():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid), signal.SIGINT)


def _raise_on_termination() -> dict[signal.Signals, Handler]:
    """Install :func:`_raise` for :data:`TERMINATING`; return the handlers to put back."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[signal.Signals, Handler] = {}
    for signum in TERMINATING:
        current = signal.getsignal(signum)
        if signum == signal.SIGHUP and current == signal.SIG_IGN:
            continue
        previous[signum] = current
        signal.signal(signum, _raise)
    return previous


@contextmanager
def _signals_held() -> Iterator[None]:
    """Delay SIGINT/SIGTERM/SIGHUP until the block is done: a second Ctrl-C must not cut the restore short."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _RESTORE_BLOCKS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _write_back(target: Path, original: bytes | None, mode: int | None) -> None:
    if original is None:
        target.unlink(missing_ok=True)
        return
    if target.exists() and target.read_bytes() == original:
        return
    write_atomically(target, original, mode)


def write_atomically(target: Path, content: bytes, mode: int | None = None) -> None:
    """Replace ``target``'s content at once: a crash mid-write must not leave half a config file behind."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        if mode is None and target.exists():
            mode = target.stat().st_mode
        # mkstemp's 0600 would otherwise become the stack file's mode.
        os.chmod(temporary, (mode if mode is not None else 0o644) & 0o7777)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
