"""Content hash of exactly the files a build sends, honoring ``.dockerignore``.

The hash is the image's rebuild trigger: unchanged sources give the same hash, so no diff and no rebuild.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def _dockerignore_patterns(context: Path) -> list[str]:
    ignore_file = context / ".dockerignore"
    if not ignore_file.is_file():
        return []
    lines = (line.strip() for line in ignore_file.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def sent_files(context: Path, dockerfile: str = "Dockerfile") -> list[str]:
    """Relative paths (POSIX) of the regular files the builder receives, sorted."""
    # docker-py implements .dockerignore exactly as the Docker CLI does; imported here as only building stacks need it.
    from docker.utils.build import exclude_paths  # type: ignore[import-untyped]

    included = exclude_paths(str(context), _dockerignore_patterns(context), dockerfile=dockerfile)
    return sorted(p.replace(os.sep, "/") for p in included if (context / p).is_file())


def context_hash(context: Path, dockerfile: str = "Dockerfile") -> str:
    """sha256 over each sent file's path, executable bit and content."""
    digest = hashlib.sha256()
    for relative in sent_files(context, dockerfile):
        path = context / relative
        executable = os.access(path, os.X_OK)
        digest.update(f"{relative}\0{int(executable)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
