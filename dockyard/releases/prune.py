"""``dockyard registry prune``: the facts retention judges, fetched once, and the deletes it decides.

References come from every stack of the project (its config, what it serves, its history within ``keep_days``), the
repositories from their ``dockyard:registry`` (each stack's, logged in by the one credential rule), the tags and build
times from the registry through regctl. :mod:`dockyard.releases.retention` judges them. A dry run (the default) only
lists the verdicts; ``apply`` deletes each condemned digest's attached tags, then the digest (the registry drops its
own tags with it), so an interrupted run leaves what the next run finds and finishes.

Nothing is deleted on partial facts: a stack whose history cannot be read (backend down) stops the run; only a stack
that was never deployed has none. The run holds every stack's dockyard lock, so no move runs while it judges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta

from dockyard.model.credentials import RegistryCredentials
from dockyard.model.stack import StackView
from dockyard.releases.project import NeverDeployedError, Project, output_text
from dockyard.releases.regctl import Regctl
from dockyard.releases.retention import Listing, Reference, Verdict, judge, subject_of

#: regctl runs side by side per repository (each is a short HTTP exchange).
WORKERS = 4


def stack_references(project: Project, stack: str, since: datetime) -> list[Reference]:
    """What ``stack`` names: each track's image in its config, what its last update serves, and every image its
    updates since ``since`` named, served or replaced."""
    view = project.view(stack)
    found = [Reference(image, f"{stack}'s config ({track} track)") for track, image in view.env.running_images.items()]
    if view.env.image.ref and view.env.image.ref not in view.env.running_images.values():
        # image.ref that no track runs (a blue-green stack's): still what the stack names.
        found.append(Reference(view.env.image.ref, f"{stack}'s config (image.ref)"))
    try:
        served = output_text(project.outputs(stack), "image_ref")
        updates = project.history(stack)
    except NeverDeployedError:
        return found
    if served:
        found.append(Reference(served, f"{stack} serves it (its last update)"))
    for update in updates:
        if update.at < since:
            continue
        what = f"{stack}'s history ({update.action or update.kind} at {update.at:%Y-%m-%d %H:%M})"
        found += [Reference(image, what) for image in (update.image, update.served, update.previous) if image]
    return found


def repositories(views: Iterable[StackView]) -> dict[str, RegistryCredentials]:
    """Each repository the stacks pull from, with the credentials of the first stack that names it."""
    found: dict[str, RegistryCredentials] = {}
    for view in views:
        found.setdefault(view.env.registry.image_name, view.credentials)
    return found


def listing(regctl: Regctl, repository: str) -> Listing:
    """``repository``'s tags, the digest each of its own tags names, and each digest's build time."""
    every = regctl.tags(repository)
    own = [tag for tag in every if subject_of(tag) is None]
    attached = tuple(tag for tag in every if subject_of(tag) is not None)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        digests = dict(zip(own, pool.map(lambda tag: regctl.digest(f"{repository}:{tag}"), own), strict=True))
        tags = {tag: digest for tag, digest in digests.items() if digest}
        subjects = sorted({*tags.values(), *(str(subject_of(tag)) for tag in attached)})
        # A digest only attached tags name may be gone: ask first, so its age is not read from nothing.
        there = pool.map(lambda digest: _held(regctl, repository, digest), subjects)
        held = [digest for digest, present in zip(subjects, there, strict=True) if present]
        created = dict(zip(held, pool.map(lambda d: regctl.created(f"{repository}@{d}"), held), strict=True))
    return Listing(repository, tags, attached, created)


def _held(regctl: Regctl, repository: str, digest: str) -> bool:
    return regctl.digest(f"{repository}@{digest}") is not None


def delete(regctl: Regctl, verdict: Verdict) -> None:
    """The digest's attached tags (signatures, attestations, SBOM, referrers), then the digest and its own tags."""
    for tag in verdict.attached:
        regctl.delete_tag(f"{verdict.repository}:{tag}")
    regctl.delete(f"{verdict.repository}@{verdict.digest}")


@dataclass(frozen=True)
class Pruned:
    """One repository's verdicts, and whether the condemned were deleted."""

    repository: str
    verdicts: list[Verdict]
    applied: bool

    @property
    def deleted(self) -> list[Verdict]:
        return [verdict for verdict in self.verdicts if not verdict.keep]


def prune_repository(
    regctl: Regctl,
    repository: str,
    references: Iterable[Reference],
    *,
    now: datetime,
    keep_days: int,
    apply: bool,
    report: Callable[[Verdict], None] = lambda _: None,
) -> Pruned:
    """Judge ``repository``'s digests; with ``apply``, delete the condemned (each reported before it goes)."""
    verdicts = judge(listing(regctl, repository), references, now, keep_days)
    if apply:
        for verdict in verdicts:
            if not verdict.keep:
                report(verdict)
                delete(regctl, verdict)
    return Pruned(repository, verdicts, apply)


def prune(
    project: Project,
    *,
    now: datetime,
    keep_days: int,
    apply: bool,
    report: Callable[[Verdict], None] = lambda _: None,
) -> list[Pruned]:
    """Every repository of the project's stacks, judged against every stack's references (dry run unless
    ``apply``)."""
    stacks = project.stacks
    since = now - timedelta(days=keep_days)
    results = []
    with ExitStack() as locks:
        # Every stack's dockyard lock: a promotion's copy is named by no config until its update is applied, so no
        # move may run between reading the references and deleting (one that is running refuses this run).
        for stack in stacks:
            locks.enter_context(project.lock(stack))
        references = [reference for stack in stacks for reference in stack_references(project, stack, since)]
        for repository, credentials in repositories(project.view(stack) for stack in stacks).items():
            host = repository.split("/", 1)[0]
            with Regctl({host: credentials}) as regctl:
                results.append(
                    prune_repository(
                        regctl, repository, references, now=now, keep_days=keep_days, apply=apply, report=report
                    )
                )
    return results
