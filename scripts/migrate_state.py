"""Move the stacks of a file backend, with their history and Dockyard's records, into a PostgreSQL backend.

    python -m scripts.migrate_state file:///root/.cache/dockyard/state "$DOCKYARD_POSTGRES_URL"

The target URL may name no password: it is read from ``PGPASSFILE`` (as ``source scripts/local-env.sh`` with
``DOCKYARD_BACKEND=postgres`` sets it). See :mod:`dockyard.releases.state_migration`.
"""

from __future__ import annotations

import argparse
import sys

from dockyard.releases.backend import redact
from dockyard.releases.errors import DockyardError
from dockyard.releases.state_migration import migrate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="file:// URL of the backend the stacks live in now")
    parser.add_argument("target", help="postgres:// URL of the backend they move to")
    options = parser.parse_args(argv)
    try:
        moved = migrate(options.source, options.target)
    except DockyardError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"moved {len(moved.stacks)} stack(s) ({', '.join(moved.stacks) or 'none'}; {moved.files} files with their "
        f"history) and {moved.verifications} verification record(s) to {redact(options.target)}; point "
        "PULUMI_BACKEND_URL there (DOCKYARD_BACKEND=postgres) and check with pulumi stack ls"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
