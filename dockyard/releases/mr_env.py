"""Environments per merge request, as moves: make (or update) one from a template stack with the merge request's
digest, destroy one, sweep the expired ones.

``create`` checks everything it was given first (the number, the TTL, a digest-pinned image in the template's
repository, a template of a tier that may have them) and refuses with every reason at once; then, under the stack's
dockyard lock, it writes the stack file derived from the template (:mod:`dockyard.model.merge_requests`) and applies
it as one stack update (:func:`dockyard.releases.stack_update.apply_update`: the file keeps the write only once
``up`` succeeded). Re-running it for the same merge request writes the new digest and a new expiry.

``destroy`` and ``sweep`` find environments in the stack files and in the backend (a CI job's fresh checkout has no
file for an environment an earlier job made); a stack without a file gets its file made again from its template for
the engine (the template's ``encryptionsalt`` decrypts its state's secrets), then ``pulumi destroy``, ``stack rm``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import yaml

from dockyard.model.config import (
    MERGE_REQUEST_TIERS,
    ConfigError,
    MergeRequestConfig,
    parse_environment,
    plaintext_keys,
    read_stack_document,
    written_keys,
)
from dockyard.model.merge_requests import (
    derived_document,
    expired,
    parse_mr,
    parse_stack_name,
    parse_ttl,
    recorded,
    stack_name,
    timestamp,
)
from dockyard.model.stack import StackView
from dockyard.model.strategies import ConfigWrite
from dockyard.releases.backend import scrub
from dockyard.releases.config_guard import restored_unless_kept, write_atomically
from dockyard.releases.engine import EngineError, OnOutput
from dockyard.releases.errors import DockyardError, RefusedError, engine_error_line
from dockyard.releases.history import MR_ENV, MR_ENV_DESTROY, record_message, recorded_value
from dockyard.releases.project import Project, actor
from dockyard.releases.stack_update import Outcome, StackUpdate, UpdatableStack, apply_update
from dockyard_components.image_ref import ImageReferenceError, parse_image_reference


class EnvStack(UpdatableStack, Protocol):
    """What the environments need of a stack beyond an update: :class:`.engine.EngineStack` has it."""

    def destroy(self, *, message: str | None = None, on_output: OnOutput | None = None) -> None: ...

    def remove(self) -> None: ...


class EnvEngine(Protocol):
    """The engine as the environments use it: :class:`.engine.Engine` is one, tests fake it."""

    def stack(self, name: str, *, create: bool) -> EnvStack: ...

    def stack_names(self) -> list[str]: ...

    def read(self, stack: str, *args: str) -> Any: ...


@dataclass(frozen=True)
class Destroyed:
    """One environment ``destroy`` or ``sweep`` took down; ``deployed`` False: there was only its file."""

    stack: str
    deployed: bool


@dataclass(frozen=True)
class Swept:
    """What a sweep judged of one environment: its expiry (None: nothing says), and what became of it."""

    stack: str
    expires: datetime | None
    expired: bool
    destroyed: Destroyed | None = None
    problem: str | None = None


@dataclass
class MergeRequestEnvironments:
    """The merge request environments of ``project``; ``engine`` and ``now`` are the facts' sources (fakes in tests)."""

    project: Project
    engine: EnvEngine | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    @property
    def _engine(self) -> EnvEngine:
        return self.engine if self.engine is not None else self.project.engine

    # --- create -----------------------------------------------------------------------------------------------

    def create(self, template: str, mr: str, image: str, ttl: str) -> Outcome:
        """Make or update merge request ``mr``'s environment from ``template``, deploying ``image`` until
        now + ``ttl``; every problem with the input refuses it before anything is touched."""
        number, lifetime, view, image = self._checked(template, mr, image, ttl)
        name = stack_name(template, number)
        path = self.project.stack_file(name)
        with self.project.lock(name):
            expires = self.now() + lifetime
            document = derived_document(template, view.document, view.env, mr=number, image=image, expires=expires)
            try:
                parse_environment(name, plaintext_keys(document))
            except ConfigError as error:
                raise DockyardError(f"environment of merge request {number} from {template}: {error}") from None
            previous = _image_of(path)
            until = timestamp(expires)
            fields = {"image": image, **({"from": previous} if previous else {}), "mr": str(number)}
            update = StackUpdate(
                MR_ENV,
                name,
                path,
                ConfigWrite(
                    f"merge request {number} until {until}", {"image.ref": image, "mergeRequest.expires": until}
                ),
                image,
                previous,
                record_message(MR_ENV, **fields, template=template, expires=until, actor=actor()),
                base=document,
            )
            stack = self._engine.stack(name, create=True)
            return apply_update(stack, update, yes=True, confirm=lambda: True, print_line=self.project.print_line)

    def _checked(self, template: str, mr: str, image: str, ttl: str) -> tuple[int, timedelta, StackView, str]:
        """The merge request's number, the TTL, the template's view and the image as ``repo@sha256:...``."""
        problems: list[str] = []
        number = _or_problem(lambda: parse_mr(mr), problems)
        lifetime = _or_problem(lambda: parse_ttl(ttl), problems)
        repository, pinned = None, image
        try:
            reference = parse_image_reference(image)
            repository = reference.name
            if reference.is_digest_pinned:
                pinned = reference.pinned()  # a tag beside the digest says nothing the digest does not
            else:
                problems.append(f"--image {image!r}: not digest-pinned; allowed: registry/repository@sha256:<64 hex>")
        except ImageReferenceError as error:
            problems.append(f"--image {image!r}: {error}")
        view = None
        try:
            view = self.project.view(template)
        except DockyardError as error:
            problems.append(f"--from {template}: {error}")
        if view is not None:
            problems += _template_problems(view, repository)
        if problems or number is None or lifetime is None or view is None:
            raise RefusedError(f"environment of merge request {mr} from {template}", problems)
        return number, lifetime, view, pinned

    # --- destroy ----------------------------------------------------------------------------------------------

    def destroy(self, mr: str, template: str | None = None) -> list[Destroyed]:
        """Destroy every environment of merge request ``mr`` (of ``template`` only, when given); none: nothing to do."""
        problems: list[str] = []
        number = _or_problem(lambda: parse_mr(mr), problems)
        if number is None:
            raise RefusedError(f"destroy of merge request {mr}'s environment", problems)
        names = [
            name
            for name, (of, each) in self._environments().items()
            if each == number and (template is None or of == template)
        ]
        return [self._destroy(name) for name in names]

    def _environments(self) -> dict[str, tuple[str, int]]:
        """Every merge request environment, from the stack files and the backend: name → (template, number)."""
        files = [path.name.removeprefix("Pulumi.").removesuffix(".yaml") for path in self._files()]
        found = {name: parsed for name in [*files, *self._backend()] if (parsed := parse_stack_name(name))}
        return dict(sorted(found.items()))

    def _files(self) -> list[Path]:
        return sorted(self.project.directory.glob("Pulumi.*-mr-*.yaml"))

    def _backend(self) -> list[str]:
        return [name for name in self._engine.stack_names() if parse_stack_name(name)]

    def _destroy(self, name: str) -> Destroyed:
        parsed = parse_stack_name(name)
        assert parsed is not None, name
        template, number = parsed
        path = self.project.stack_file(name)
        with self.project.lock(name):
            if name not in self._backend():
                path.unlink(missing_ok=True)
                return Destroyed(name, deployed=False)
            with restored_unless_kept(path) as edit:
                if not path.exists():
                    # The engine reads the secrets provider's salt from the stack file: the template's.
                    view = self._template(template, name)
                    document = derived_document(
                        template, view.document, view.env, mr=number, image=None, expires=self.now()
                    )
                    write_atomically(path, yaml.safe_dump(document, sort_keys=False).encode())
                stack = self._engine.stack(name, create=False)
                try:
                    stack.destroy(
                        message=record_message(MR_ENV_DESTROY, mr=str(number), actor=actor()),
                        on_output=self.project.print_line,
                    )
                    stack.remove()
                except EngineError as error:
                    raise DockyardError(
                        f"destroy of {name} failed: {scrub(engine_error_line(RuntimeError(error.output)))} "
                        f"({path.name} left as it was; re-run dockyard env destroy --mr {number})"
                    ) from None
                edit.keep()
            path.unlink(missing_ok=True)  # stack rm removes it too; a file made for the destroy never outlives it
            return Destroyed(name, deployed=True)

    def _template(self, template: str, name: str) -> StackView:
        try:
            return self.project.view(template)
        except DockyardError as error:
            raise DockyardError(f"{name} has no stack file and its template cannot make one: {error}") from None

    # --- sweep ------------------------------------------------------------------------------------------------

    def sweep(self, now: datetime | None = None, *, dry_run: bool = False) -> list[Swept]:
        """Destroy every environment whose expiry has passed at ``now``; one that cannot be destroyed is reported
        and the others are still swept. An environment whose expiry nothing records is kept."""
        moment = now or self.now()
        swept = []
        for name in self._environments():
            record = self._record(name)
            item = Swept(name, record.expires if record else None, record is not None and expired(record, moment))
            if item.expired and not dry_run:
                try:
                    item = Swept(item.stack, item.expires, True, destroyed=self._destroy(name))
                except DockyardError as error:
                    item = Swept(item.stack, item.expires, True, problem=str(error))
            swept.append(item)
        return swept

    def _record(self, name: str) -> MergeRequestConfig | None:
        """The environment's ``dockyard:mergeRequest``: its file's, else the config of its newest update."""
        path = self.project.stack_file(name)
        if path.exists():
            return recorded(written_keys(read_stack_document(path)))
        try:
            entries = self._engine.read(name, "stack", "history", "--page-size", "1", "--page", "1") or []
        except EngineError:
            return None
        config = entries[0].get("config") or {} if entries else {}
        return recorded({"mergeRequest": recorded_value(config, "mergeRequest")})


def _or_problem(parse: Callable[[], Any], problems: list[str]) -> Any:
    try:
        return parse()
    except ValueError as error:
        problems.append(str(error))
        return None


def _template_problems(view: StackView, repository: str | None) -> list[str]:
    env = view.env
    problems = []
    if env.merge_request is not None:
        problems.append(
            f"--from {view.name}: the environment of merge request {env.merge_request.id}; allowed: a stack of the "
            "project that is no merge request's"
        )
    if env.tier not in MERGE_REQUEST_TIERS:
        problems.append(
            f"--from {view.name}: tier {env.tier}; allowed: a {' or '.join(MERGE_REQUEST_TIERS)} stack (a merge "
            "request's digest is unreviewed code: it never runs with the credentials of staging or prod)"
        )
    if repository is not None and repository != env.registry.image_name:
        problems.append(
            f"--image: in {repository}; allowed: {view.name}'s repository {env.registry.image_name} (the cluster "
            "pulls with its credentials)"
        )
    return problems


def _image_of(path: Path) -> str | None:
    """The digest an environment's file deploys (None: no file yet)."""
    if not path.exists():
        return None
    image = written_keys(read_stack_document(path)).get("image")
    ref = image.get("ref") if isinstance(image, dict) else None
    return str(ref) if ref else None
