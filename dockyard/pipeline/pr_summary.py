"""One compact Markdown comment from the ``pulumi preview --json`` output of several stacks.

GitHub rejects comments over 65,536 characters; the summary always stays under :data:`LIMIT` by shortening the
longest sections first, and says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.model.image_diff import WORKLOAD_TYPES, image_changes

LIMIT = 60_000
MARKER = "<!-- dockyard-pr-summary -->"
COUNTED_OPS = ("create", "update", "replace", "delete")
_REPLACE_OPS = {"replace", "create-replacement", "delete-replaced"}


@dataclass
class StackPreview:
    """What one stack's preview says, reduced to what a reviewer reads."""

    stack: str
    counts: dict[str, int]
    changes: list[str]
    violations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.errors)


def _resource(urn: str) -> tuple[str, str]:
    # urn:pulumi:<stack>::<project>::<type chain>::<name>
    parts = urn.split("::")
    return (parts[-2].split("$")[-1], parts[-1]) if len(parts) >= 4 else ("", urn)


def _change_line(step: Mapping[str, Any]) -> str | None:
    op = str(step.get("op", ""))
    if op in ("same", "read", "refresh") or op in ("create-replacement", "delete-replaced"):
        return None
    resource_type, name = _resource(str(step.get("urn", "")))
    if resource_type == "pulumi:pulumi:Stack":
        return None
    properties = sorted((step.get("detailedDiff") or {}).keys()) or [str(p) for p in step.get("diffReasons") or []]
    shown = ", ".join(f"`{p}`" for p in properties[:8])
    more = f" (+{len(properties) - 8} more)" if len(properties) > 8 else ""
    suffix = f": {shown}{more}" if shown and op in ("update", "replace") else ""
    line = f"- `{op}` {resource_type} **{name}**{suffix}"
    if resource_type not in WORKLOAD_TYPES:
        return line
    # What a reviewer approves is the image: old → new with repository, short digest and version label.
    old, new = (step.get(key) or {} for key in ("oldState", "newState"))
    images = image_changes(name, old.get("inputs"), new.get("inputs"))
    return "\n".join([line, *(f"  - image {change.render()}" for change in images)])


def _policy_violations(events: Iterable[Mapping[str, Any]]) -> list[str]:
    lines = []
    for event in events:
        policy = event.get("policyEvent")
        if not policy:
            continue
        level = policy.get("enforcementLevel", "advisory")
        icon = "❌" if level == "mandatory" else "⚠️"
        _, name = _resource(str(policy.get("resourceUrn", "")))
        where = f" on **{name}**" if name and policy.get("resourceUrn") else ""
        message = " ".join(str(policy.get("message", "")).split())
        lines.append(f"- {icon} {level} `{policy.get('policyName', '?')}`{where}: {message}")
    return lines


def read_preview(stack: str, digest: Mapping[str, Any], events: Iterable[Mapping[str, Any]] = ()) -> StackPreview:
    """Reduce one stack's preview JSON (and optional ``--event-log`` events) to a :class:`StackPreview`."""
    summary = digest.get("changeSummary") or {}
    counts = {op: int(summary.get(op, 0)) for op in COUNTED_OPS}
    steps = digest.get("steps") or []
    if not summary:
        for step in steps:
            op = "replace" if step.get("op") in _REPLACE_OPS else step.get("op")
            if op in counts:
                counts[op] += 1
    changes = [line for step in steps if (line := _change_line(step))]
    errors = [
        " ".join(str(d.get("message", "")).split()) or "(no message)"
        for d in digest.get("diagnostics") or []
        if d.get("severity") == "error"
    ]
    return StackPreview(stack, counts, changes, _policy_violations(events), errors)


def _section(preview: StackPreview, shown: int | None = None) -> str:
    counts = ", ".join(f"{n} to {op}" for op, n in preview.counts.items() if n) or "no changes"
    status = " — **preview failed**" if preview.failed else ""
    lines = [f"### `{preview.stack}`: {counts}{status}", ""]
    if preview.errors:
        lines += ["Errors:", "", *(f"- {error}" for error in preview.errors), ""]
    if preview.violations:
        lines += ["Policy violations:", "", *preview.violations, ""]
    changes = preview.changes if shown is None else preview.changes[:shown]
    if changes:
        lines += ["<details><summary>Changed resources</summary>", "", *changes]
        if shown is not None and shown < len(preview.changes):
            lines.append(f"- … {len(preview.changes) - shown} more changes not shown (comment size limit)")
        lines += ["", "</details>", ""]
    return "\n".join(lines)


def render(previews: list[StackPreview], limit: int = LIMIT) -> str:
    """The comment body; shortens the longest sections first until it fits ``limit`` characters."""
    header = f"{MARKER}\n## Dockyard preview\n\n"
    shown: dict[str, int | None] = {p.stack: None for p in previews}
    truncated = False

    def body() -> str:
        note = "_Some sections were shortened to fit GitHub's comment size limit._\n\n" if truncated else ""
        return header + note + "\n".join(_section(p, shown[p.stack]) for p in previews)

    text = body()
    while len(text) > limit:
        truncated = True
        longest = max(previews, key=lambda p: len(_section(p, shown[p.stack])))
        current = shown[longest.stack]
        count = len(longest.changes) if current is None else current
        if count == 0:
            # Nothing left to drop but violations: cut hard, keeping the closing note.
            return text[: limit - 80] + "\n\n_… truncated to fit GitHub's comment size limit._\n"
        excess = len(text) - limit
        average = max(1, len(_section(longest, count)) // max(count, 1))
        shown[longest.stack] = max(0, count - max(1, excess // average + 1))
        text = body()
    return text


def load(paths: Iterable[Path]) -> list[StackPreview]:
    """Read ``<stack>.json`` preview files, with ``<stack>.events.jsonl`` event logs beside them when present."""
    previews = []
    for path in sorted(paths):
        stack = path.name.removesuffix(".json")
        events_path = path.with_name(f"{stack}.events.jsonl")
        events = (
            [json.loads(line) for line in events_path.read_text().splitlines() if line.strip()]
            if events_path.exists()
            else []
        )
        previews.append(read_preview(stack, json.loads(path.read_text() or "{}"), events))
    return previews
