"""One problem type for every config Dockyard validates, with one renderer.

A :class:`Problem` names where (the stack, or ``Pulumi.yaml``), the key path as written in YAML
(``dockyard:kubernetes.replicas``, ``dockyard-ci:systems[1]``), what was found and what is allowed. The stack config
(:class:`dockyard.model.config.ConfigError`), the pipeline derived from the stacks (``PipelineConfigError``) and the CI
config (``CiConfigError``) all raise a :class:`ConfigProblemsError` holding every problem at once, rendered one per
line by :func:`render`; :func:`validation_problems` turns pydantic's errors into problems for the two that validate a
model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, get_args

from pydantic import BaseModel, ValidationError

#: ``<key path>: <the rest>``: a cross-field rule's message naming the key it is about, relative to its model.
_KEYED = re.compile(r"^(?!allowed)(?P<key>[a-zA-Z][a-zA-Z.]*): (?P<rest>.*)$", re.DOTALL)
#: How a cross-field rule separates several problems in one message (pydantic keeps one message per validator).
SEPARATOR = " | "


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: where, the key path as written in YAML, what was found, what is allowed."""

    where: str | None
    """The stack (``dev``) or the file (``Pulumi.yaml``); None for a problem of several stacks together."""
    key: str | None
    """The key path as written in YAML, with its namespace (``dockyard:image.ref``); None for the whole document."""
    found: str | None
    """What was found (``found 3``, ``missing``, ``unknown key``); None when the rule says only what is allowed."""
    allowed: str
    """What is allowed, as a clause (``allowed: 2 or more``, ``required``, ``allowed keys: a, b``)."""

    def __str__(self) -> str:
        head = ": ".join(part for part in (self.where, self.key) if part)
        body = "; ".join(part for part in (self.found, self.allowed) if part)
        return f"{head}: {body}" if head else body


def from_text(where: str | None, key: str | None, text: str) -> Problem:
    """A problem from a rule's message ``<found>; <allowed>`` (or ``allowed: ...`` alone)."""
    found, separator, allowed = text.partition("; ")
    if not separator:
        return Problem(where, key, None, text) if text.startswith("allowed") else Problem(where, key, text, "")
    return Problem(where, key, found, allowed)


def render(problems: Sequence[Problem], title: str | None = None) -> str:
    """Every problem on its own line, under ``title`` with their count when given."""
    lines = [str(problem) for problem in problems]
    return "\n".join(([f"{title} ({len(lines)} problem(s)):"] if title else []) + lines)


class ConfigProblemsError(Exception):
    """Every problem of a config at once; ``problems`` holds them rendered, one line each."""

    #: The heading of the rendered message (None: the problems alone).
    title: ClassVar[str | None] = None

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.found = tuple(problems)
        self.problems = [str(problem) for problem in self.found]
        super().__init__(render(self.found, self.title))


def key_path(namespace: str, loc: Iterable[str | int]) -> str:
    """``namespace:a.b[0].c``: a location as ``pulumi config set --path`` spells it (the whole document: the
    namespace alone)."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return f"{namespace}:{path}" if path else namespace


def format_found(value: Any) -> str:
    """A found value as the user wrote it, shortened to a line."""
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _models(annotation: Any) -> list[type[BaseModel]]:
    candidates = get_args(annotation) or (annotation,)
    return [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]


def _tagged(models: Sequence[type[BaseModel]], tag: str | int) -> type[BaseModel] | None:
    """The member of a tagged union whose ``type`` is ``tag``."""
    return next(
        (m for m in models if "type" in m.model_fields and get_args(m.model_fields["type"].annotation) == (tag,)),
        None,
    )


def _walk(model: type[BaseModel], loc: Sequence[str | int]) -> tuple[list[str | int], type[BaseModel] | None]:
    """The location without tagged-union member names, and the model at its end (None: not a model)."""
    path: list[str | int] = []
    current: type[BaseModel] | None = model
    members: list[type[BaseModel]] = []
    for part in loc:
        member = _tagged(members, part)
        if member is not None:
            current, members = member, []
            continue
        path.append(part)
        if isinstance(part, int) or current is None:
            continue
        fields = {info.alias or name: info for name, info in current.model_fields.items()}
        if part in fields:
            members = _models(fields[part].annotation)
            current = members[0] if members else None
    return path, current


def validation_problems(where: str, namespace: str, model: type[BaseModel], error: ValidationError) -> list[Problem]:
    """pydantic's errors of ``model`` as problems: key paths as written, unknown keys with the allowed ones, and a
    cross-field rule's ``<key>: ...`` messages under the key they name."""
    return [problem for item in error.errors() for problem in _problems(where, namespace, model, item)]


def _problems(where: str, namespace: str, model: type[BaseModel], error: Mapping[str, Any]) -> list[Problem]:
    loc, _ = _walk(model, error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        _, parent = _walk(model, error["loc"][:-1])
        allowed = sorted(info.alias or name for name, info in parent.model_fields.items()) if parent else None
        choices = ", ".join(allowed) if allowed else "see the config reference"
        return [Problem(where, key_path(namespace, loc), "unknown key", f"allowed keys: {choices}")]
    if kind == "missing":
        return [Problem(where, key_path(namespace, loc), "missing", "required")]
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "value_error" and (SEPARATOR in message or _KEYED.match(message)):
        # Cross-field rules name their own keys, relative to the model that checks them.
        problems = []
        for part in message.split(SEPARATOR):
            keyed = _KEYED.match(part)
            if keyed is None:
                problems.append(from_text(where, key_path(namespace, loc), part))
            else:
                relative = [*loc, *keyed["key"].split(".")]
                problems.append(from_text(where, key_path(namespace, relative), keyed["rest"]))
        return problems
    if not message.startswith("allowed"):
        message = f"allowed: {message[0].lower()}{message[1:]}"
    return [Problem(where, key_path(namespace, loc), f"found {format_found(error.get('input'))}", message)]
