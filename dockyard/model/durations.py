"""Durations as people type them on the command line: ``90m``, ``12h``, ``30d``, ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str, option: str) -> timedelta:
    """A positive number of minutes, hours, days or weeks; ``ValueError`` naming ``option`` otherwise."""
    match = _DURATION.match(text.strip())
    if match is None or int(match[1]) == 0:
        raise ValueError(f"{option} {text!r}: expected a positive number with m, h, d or w, e.g. 30d")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})
