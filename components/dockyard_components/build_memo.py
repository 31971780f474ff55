"""A build memo: builds with the same inputs reuse the digest the first one pushed.

Opt-in through ``DOCKYARD_BUILD_MEMO`` (a directory). A build records its pushed digest under a key made of every
input that shapes the image (:data:`~dockyard_components.podman_build.REBUILD_KEYS`) and the registry; a later build
with the same key — another stack, another checkout — logs in, checks that the registry still holds that digest and
reuses it instead of building, testing and pushing again; the build's tags are pointed at the reused digest.
Only successful builds are recorded; a cold build (``DOCKYARD_BUILD_NO_CACHE=1``) never reuses. Unset (the default),
every build runs in full; the test suite does not set it yet (see the README's Tests section).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

MEMO_ENV = "DOCKYARD_BUILD_MEMO"


def memo_key(props: Mapping[str, Any], keys: Sequence[str]) -> str:
    """The inputs that shape the image, and where it is pushed, as one hash."""
    shaping = {key: props.get(key) for key in (*keys, "registry_server")}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()


@contextlib.contextmanager
def build_memo(props: Mapping[str, Any], keys: Sequence[str]) -> Iterator[BuildMemo | None]:
    """The memo entry for ``props``, held exclusively while the build runs (a concurrent build with the same inputs
    waits, then reuses); ``None`` when no memo directory is set."""
    directory = os.environ.get(MEMO_ENV)
    if not directory or os.environ.get("DOCKYARD_BUILD_NO_CACHE") == "1":  # a cold build was asked for
        yield None
        return
    Path(directory).mkdir(parents=True, exist_ok=True)
    entry = Path(directory) / memo_key(props, keys)
    with entry.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield BuildMemo(entry)


class BuildMemo:
    """One key's entry: the digest a build with these inputs pushed, if any."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def digest(self) -> str | None:
        text = self.path.read_text().strip() if self.path.is_file() else ""
        return text or None

    def record(self, digest: str) -> None:
        self.path.write_text(digest)
