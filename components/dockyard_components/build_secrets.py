"""Build secrets: values a Dockerfile reads with ``RUN --mount=type=secret,id=<id>``, never stored in the image.

The builder mounts each secret from a file for the one ``RUN`` step that asks for it; the file is written here, mode
0600 in a directory only this user can open, and removed when the build ends, whatever its outcome. Only the file's
path reaches the build script and podman's command line, never the value.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

#: What ``--secret id=<id>,src=<path>`` accepts as an id: no ``,`` or ``=`` (they separate the flag's fields) and a
#: name that is also a file name under ``/run/secrets``.
SECRET_ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def check_secret_ids(ids: Iterable[str]) -> None:
    """Raise ``ValueError`` naming every id ``--secret`` cannot carry."""
    bad = sorted(i for i in ids if not SECRET_ID_PATTERN.match(i))
    if bad:
        raise ValueError(f"build secret ids {bad}: allowed: letters, digits, '_', '.' and '-' (at most 128)")


@contextlib.contextmanager
def secret_files(secrets: Mapping[str, str]) -> Iterator[str]:
    """Write ``secrets`` (id → value) to 0600 files; yield the build script's ``BUILD_SECRETS`` (``id=path`` lines).

    The files are gone when the block ends (an error or a timeout included).
    """
    check_secret_ids(list(secrets))
    if not secrets:
        yield ""
        return
    with tempfile.TemporaryDirectory(prefix="dockyard-build-secrets-") as directory:  # mode 0700
        lines = []
        for index, (secret_id, value) in enumerate(sorted(secrets.items())):
            path = Path(directory) / f"secret-{index}"
            # O_EXCL with mode 0600 from the start: no moment in which another user could open it.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(value)
            lines.append(f"{secret_id}={path}")
        yield "\n".join(lines)
