"""The six release moves as gated, previewed, recorded stack updates: promote, roll back, step or abort a canary,
switch colors, and revert an idle color.

What each move writes is the target's strategy's to say (:mod:`dockyard.model.strategies`); this module fetches the
facts the gates judge (:mod:`dockyard.releases.gates`) from each stack's one view, refuses with every reason at once,
and applies the write as one stack update (:mod:`dockyard.releases.stack_update`) under the dockyard lock, recorded
in Pulumi's update history (:mod:`dockyard.releases.history`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from dockyard.model.config import CanaryStrategy, ConfigError, EnvironmentConfig
from dockyard.model.notifications import Event
from dockyard.model.stack import StackView
from dockyard.model.strategies import ConfigWrite
from dockyard.releases import gates, notify
from dockyard.releases.arrival import arriving_reference, copy_release
from dockyard.releases.attestations import AttestationError, attested_verifications
from dockyard.releases.engine import StackMissingError
from dockyard.releases.errors import DockyardError, RefusedError, UnhealthyError, UpdateFailedError, refusing
from dockyard.releases.gates import CopyAnswer, PromotionFacts, RegistryAnswer, RollbackFacts
from dockyard.releases.history import (
    CANARY_ABORT,
    CANARY_COMPLETE,
    CANARY_STEP,
    PROMOTE,
    REVERT,
    ROLLBACK,
    SWITCH,
    record_message,
)
from dockyard.releases.ledger import Verification, latest_for
from dockyard.releases.notify import Announce, ReleaseEvent
from dockyard.releases.project import Project, actor, output_text
from dockyard.releases.registry_client import RegistryUnreachableError, manifest_exists
from dockyard.releases.stack_update import Outcome, StackUpdate, apply_update, reapply
from dockyard.releases.trust import scan_problems, trust_problems
from dockyard_components.image_ref import parse_image_reference

Confirm = Callable[[], bool]
#: The moves a stack's webhooks are told of once applied (a canary step, its completion and a revert are not news).
MOVE_EVENTS = {
    PROMOTE: Event.PROMOTED,
    ROLLBACK: Event.ROLLED_BACK,
    CANARY_ABORT: Event.CANARY_ABORTED,
    SWITCH: Event.SWITCHED,
}
RegistryCheck = Callable[[str, StackView], RegistryAnswer]
#: (project directory, target stack, image) → why its trust policy refuses the image.
TrustCheck = Callable[[Path, StackView, str], list[str]]
#: (target stack, image) → why its required scan refuses the image now.
ScanCheck = Callable[[StackView, str], list[str]]
#: (project directory, backend, source stack, target, image) → the source's verifications the target trusts.
AttestedReader = Callable[[Path, str, str, StackView, str], list[Verification]]
#: (image, source stack, target stack) → the image copied into the target's own registry (:mod:`.arrival`).
CopyRelease = Callable[[str, StackView, StackView], CopyAnswer]
#: (stack, namespace, Deployment names) → why their pods are not serving, one line each (:mod:`dockyard.verify`).
PodReasons = Callable[[StackView, str, Collection[str]], list[str]]
#: The moves whose failed update is undone at once by applying the stack file as it was before them (a revert or an
#: abort is itself the undo: undoing it would bring back what failed).
UNDONE_WHEN_FAILED = frozenset({PROMOTE, ROLLBACK, CANARY_STEP, CANARY_COMPLETE, SWITCH})


def live_pod_reasons(stack: StackView, namespace: str, deployments: Collection[str]) -> list[str]:
    from dockyard.verify.kube_api import live_reasons  # the official client: only a failed update pays its import

    return live_reasons(stack, namespace, deployments)


def check_registry(image: str, stack: StackView) -> RegistryAnswer:
    """Ask ``stack``'s registry whether it holds ``image`` (Registry HTTP API v2), with its credentials."""
    try:
        return RegistryAnswer(manifest_exists(image, stack.credentials))
    except RegistryUnreachableError as error:
        return RegistryAnswer(None, str(error))


@dataclass
class Releases:
    """The release moves of ``project``'s stacks. ``registry`` and ``now`` are the facts' sources (fakes in tests)."""

    project: Project
    registry: RegistryCheck = check_registry
    trust: TrustCheck = trust_problems
    scan: ScanCheck = scan_problems
    attested: AttestedReader = attested_verifications
    copy: CopyRelease = copy_release
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    announce: Announce = notify.announce
    reasons: PodReasons = live_pod_reasons
    #: Applied moves' events, told once the stack's lock is released (a slow webhook never holds the lock).
    _untold: list[tuple[StackView, ReleaseEvent]] = field(default_factory=list, init=False, repr=False)

    def environment(self, stack: str, /) -> EnvironmentConfig:
        return self.project.environment(stack)

    # --- facts ------------------------------------------------------------------------------------------------

    def promotion_facts(self, source: str, target: str) -> PromotionFacts:
        """What the gates judge, fetched at once: two engine reads side by side; then, once the image is known (and,
        for a target with its own registry, copied there), the registry and the trust policy side by side with the
        rest, about the image the target receives."""
        target_view = self.project.view(target)
        target_env = target_view.env
        with ThreadPoolExecutor(max_workers=4) as pool:
            outputs = pool.submit(self.project.outputs, source)
            history = pool.submit(self.project.history, source, 1)
            image = output_text(outputs.result(), "image_ref")
            pinned = image is not None and not gates.image_problems(source, image)
            last = next(iter(history.result()), None)
            facts = PromotionFacts(
                source=source,
                target=target,
                target_env=target_env,
                now=self.now(),
                image=image,
                last_result=last.result if last else None,
                last_deployed=last.ended if last else None,
                registry=None,
                verification=None,
            )
            if image is None or not pinned:
                return facts
            arriving = arriving_reference(image, target_env.registry)
            if arriving != image:
                # A refused promotion leaves nothing behind in the target's registry.
                if gates.evaluate(facts, gates.BEFORE_COPY):
                    return replace(facts, copy=CopyAnswer(None))
                facts = replace(facts, copy=self.copy(image, self.project.view(source), target_view))
                if facts.arriving is None:
                    return facts
            return self._arrival_facts(pool, facts, str(facts.arriving), target_view)

    def _arrival_facts(
        self, pool: ThreadPoolExecutor, facts: PromotionFacts, arriving: str, target: StackView
    ) -> PromotionFacts:
        """The target's registry, trust policy, scan and the upstream's verification, about ``arriving``."""
        registry = pool.submit(self.registry, arriving, target)
        signing = target.env.signing
        signature = pool.submit(self.trust, self.project.directory, target, arriving) if signing else None
        vulnerabilities = pool.submit(self.scan, target, arriving) if signing and signing.scan else None
        verification, verification_problem = None, None
        if target.env.requires_verified_releases:
            try:
                # Records name the source's reference; the copy carries the same attestations.
                found = self.verifications(facts.source, target, arriving)
                verification = latest_for(found, str(facts.image))
            except AttestationError as error:
                verification_problem = str(error)
        return replace(
            facts,
            registry=registry.result(),
            verification=verification,
            signature=signature.result() if signature else None,
            verification_problem=verification_problem,
            vulnerabilities=vulnerabilities.result() if vulnerabilities else None,
        )

    def rollback_facts(self, stack: StackView, image: str) -> RollbackFacts:
        """What the gates judge of a rollback to ``image``: the registry's answer, then (when the registry holds it)
        the stack's trust policy's."""
        registry = self.registry(image, stack)
        # A rollback serves a digest again: the stack's trust policy holds for it as for a promotion.
        asked = stack.env.signing is not None and registry.exists is True
        signature = self.trust(self.project.directory, stack, image) if asked else None
        return RollbackFacts(stack.name, stack.env, image, registry, signature)

    def verifications(self, source: str, target: StackView, image: str) -> list[Verification]:
        """Where a target reads its upstream's verifications: the registry's signed attestations when it has a trust
        policy (any backend), else the backend's records (:mod:`dockyard.releases.records`)."""
        if target.env.signing is not None:
            return self.attested(self.project.directory, self.project.backend, source, target, image)
        return self.project.ledger().verifications(source)

    # --- moves ------------------------------------------------------------------------------------------------

    def promote(self, source: str, target: str, /, *, yes: bool, confirm: Confirm) -> Outcome:
        """Gate, then write the source's digest where the target's strategy takes a release, preview and apply."""
        with self._locked(target):
            facts = self.promotion_facts(source, target)
            problems = gates.evaluate(facts)
            if problems or facts.arriving is None:
                raise RefusedError(f"promotion {source} → {target}", problems)
            arriving = str(facts.arriving)
            write = facts.target_env.kubernetes.strategy.promotion_write(arriving)
            return self._apply(target, PROMOTE, write, arriving, {"source": source}, yes, confirm)

    def rollback(self, stack: str, /, *, to: str | None, yes: bool, confirm: Confirm) -> Outcome:
        """Back to the previously served release (or ``to``): a switch back on blue-green, else a new ``image.ref``."""
        with self._locked(stack):
            view = self.project.view(stack)
            image = self._rollback_target(stack, view.env, to)
            write = refusing(f"rollback of {stack}", lambda: view.env.kubernetes.strategy.rollback_write(image))
            problems = gates.evaluate(self.rollback_facts(view, image))
            if problems:
                raise RefusedError(f"rollback of {stack}", problems)
            return self._apply(stack, ROLLBACK, write, image, {}, yes, confirm)

    def canary_step(self, stack: str, /, *, yes: bool, confirm: Confirm) -> Outcome:
        """The canary's next step; past the last one, the canary image becomes the stable one."""
        with self._locked(stack):
            canary = self._canary(stack)
            write = refusing(f"canary step of {stack}", canary.advance_write)
            action = CANARY_STEP if canary.next_weight is not None else CANARY_COMPLETE
            weight = str(canary.next_weight or 100)
            return self._apply(stack, action, write, str(canary.canary_image), {"weight": weight}, yes, confirm)

    def canary_abort(self, stack: str, /, *, yes: bool, confirm: Confirm, reason: str) -> Outcome:
        """Back to 0 %: the canary track goes away, the stable track serves everything."""
        with self._locked(stack):
            canary = self._canary(stack)
            write = refusing(f"canary abort of {stack}", canary.abort_write)
            record = {"weight": str(canary.weight), "reason": reason}
            return self._apply(stack, CANARY_ABORT, write, str(canary.canary_image), record, yes, confirm)

    def switch(self, stack: str, /, *, yes: bool, confirm: Confirm) -> Outcome:
        """Flip a blue-green pair's ``activeColor`` to the idle color (verify it first: :mod:`.progressive`)."""
        with self._locked(stack):
            strategy = refusing(
                f"switch of {stack}", lambda: self.project.environment(stack).kubernetes.strategy.as_blue_green(stack)
            )
            write = refusing(f"switch of {stack}", strategy.switch_write)
            image = str(strategy.image_of(strategy.idle_color))
            return self._apply(stack, SWITCH, write, image, {"color": strategy.idle_color}, yes, confirm)

    def revert(self, stack: str, moved: Outcome, /) -> Outcome:
        """Put back what ``moved`` overwrote (a release on an idle color that failed its checks), at once."""
        with self._locked(stack):
            write = ConfigWrite(f"revert {moved.what}", moved.before)
            image = self.project.environment(stack).served_image or moved.image
            return self._apply(stack, REVERT, write, image, {"reverted": moved.image}, True, lambda: True)

    # --- helpers ----------------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self, stack: str) -> Iterator[None]:
        """The stack's lock for one move; the move's events are announced after it is released, also when the move
        raised after applying (a failed check that follows an applied write)."""
        try:
            with self.project.lock(stack):
                yield
        finally:
            untold, self._untold[:] = list(self._untold), []
            for view, event in untold:
                self.announce(view, event)

    def _serving(self, stack: str) -> str | None:
        """The release the stack's last update serves (its ``image_ref`` output); None before its first update."""
        try:
            outputs = self.project.engine.read(stack, "stack", "output") or {}
        except StackMissingError:
            return None
        return output_text(outputs, "image_ref")

    def _canary(self, stack: str) -> CanaryStrategy:
        strategy = self.project.environment(stack).kubernetes.strategy
        return refusing(f"canary move on {stack}", lambda: strategy.as_canary(stack))

    def _rollback_target(self, stack: str, env: EnvironmentConfig, to: str | None) -> str:
        current = env.served_image
        if env.image.build is not None:
            raise RefusedError(
                f"rollback of {stack}", [f"{stack} builds its image; roll back by deploying an earlier commit"]
            )
        if to is not None:
            repository = parse_image_reference(current).name if current else env.registry.image_name
            return f"{repository}@{to}" if to.startswith("sha256:") else to
        served = [u.served for u in self.project.history(stack) if u.result == "succeeded" and u.kind == "update"]
        instant = env.kubernetes.strategy.instant_rollback
        if instant is not None:
            # The idle color runs the previous release only once a switch made it idle; after a promotion it runs the
            # next one, which never served: switching to that is a switch, not a rollback.
            if instant not in served:
                raise RefusedError(
                    f"rollback of {stack}",
                    [
                        f"the idle color of {stack} runs {instant}, which {stack} has never served (dockyard switch "
                        f"--stack {stack} releases it)"
                    ],
                )
            return instant
        if current is None:
            raise RefusedError(f"rollback of {stack}", [f"{stack} serves no release yet; nothing to roll back to"])
        previous = next((image for image in served if image and image != current), None)
        if previous is None:
            raise RefusedError(f"rollback of {stack}", [f"{stack} has served only {current}; nothing to roll back to"])
        return previous

    def _apply(
        self,
        stack: str,
        action: str,
        write: ConfigWrite,
        image: str,
        record: Mapping[str, str],
        yes: bool,
        confirm: Confirm,
    ) -> Outcome:
        path = self.project.stack_file(stack)
        view = self.project.view(stack)
        previous = view.served_image
        stale = gates.stale_file(stack, previous, self._serving(stack), builds=view.env.image.build is not None)
        if stale:
            raise RefusedError(f"{action} on {stack}", stale)
        fields = {"image": image, **({"from": previous} if previous else {}), "actor": actor(), **record}
        update = StackUpdate(action, stack, path, write, image, previous, record_message(action, **fields))
        try:
            outcome = apply_update(
                self.project.stack(stack, create=True),
                update,
                yes=yes,
                confirm=confirm,
                print_line=self.project.print_line,
            )
        except UpdateFailedError as error:
            if action not in UNDONE_WHEN_FAILED:
                raise
            raise self._undone(view, update, error) from None
        if outcome.applied:
            # The next step of the same command (a check, the next canary step) sees the file as written.
            self.project.wrote(view, write)
            event = MOVE_EVENTS.get(action)
            if event is not None:
                detail = record.get("reason") or outcome.what
                self._untold.append(
                    (view, ReleaseEvent(event, self.project.name, stack, fields["actor"], image, previous, detail))
                )
        return outcome

    def _undone(self, view: StackView, failed: StackUpdate, error: UpdateFailedError) -> DockyardError:
        """After ``failed``'s update failed (its stack file already holds what was applied before it): the pods' own
        reasons, then the file applied again so the live Deployments return to the release that served, recorded as
        a rollback. The error to raise says all of it: rolled back (exit 1), or left unhealthy with the way out."""
        stack = view.name
        reasons = self._pod_reasons(view, failed.write)
        why = reasons[0] if reasons else error.reason
        told = "".join(f"\n  {line}" for line in reasons)
        served = view.served_image
        # Nothing served before (a first release): the file as it was still takes the failed pods away, but that is
        # no rollback to a release, and nobody is told of one.
        action = ROLLBACK if served is not None else REVERT
        image = served or failed.image
        fields = {"image": image, "from": failed.image, "actor": actor(), "reverted": failed.image, "reason": why}
        back = StackUpdate(
            action,
            stack,
            failed.config_file,
            ConfigWrite(f"back to what {stack} ran before the failed {failed.action}", {}),
            image,
            failed.image,
            record_message(action, **fields),
        )
        before = f"its release {served}" if served is not None else "no release, as before"
        try:
            reapply(self.project.stack(stack), back, print_line=self.project.print_line)
        except DockyardError as undo:
            return UnhealthyError(
                f"{error}{told}\nand putting back {before} failed too: {undo}\n{stack} is left as that update left "
                f"it; once the cause is fixed: pulumi up --stack {stack} (its file holds what was applied), then "
                f"dockyard verify --stack {stack}"
            )
        if served is None:
            return DockyardError(f"{error}{told}\n{stack} serves {before} (dockyard history --stack {stack})")
        self._untold.append(
            (
                view,
                ReleaseEvent(Event.ROLLED_BACK, self.project.name, stack, fields["actor"], served, failed.image, why),
            )
        )
        return DockyardError(f"{error}{told}\n{stack} was rolled back to {served} (dockyard history --stack {stack})")

    def _pod_reasons(self, view: StackView, write: ConfigWrite) -> list[str]:
        """Why the Deployments the failed update touched (as they were, and as it would have left them) do not serve:
        read from the cluster; a rendering stack has none."""
        env = view.env
        if env.kubernetes.renders:
            return []
        from dockyard.verify.verifier import expected_images  # verify's modules import the releases' modules

        views = [view]
        with suppress(ConfigError):  # a write the config refuses was not applied either
            views.append(view.after(write))
        deployments = {name for each in views for name in expected_images(each.env, each.served_image)}
        try:
            return self.reasons(view, env.kubernetes.namespace_of(view.name), deployments)
        except Exception as error:  # reading why must never stand between a failed update and its rollback
            return [f"the pods' reasons could not be read: {error.__class__.__name__}: {error}"]
