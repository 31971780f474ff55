"""``dockyard verify``: is what a stack deployed healthy? And ``promote --verify``: roll back when it is not.

Two ways to look, chosen by the stack's ``kubernetes.mode``:

- ``render``: the manifests in the render directory must pin exactly the stack's ``image_ref`` in every Deployment,
  and the image itself must start and answer on this machine (:mod:`dockyard.verify.local_run`).
- ``cluster``: through the Kubernetes API (:mod:`dockyard.verify.kube`), every Deployment is rolled out with the
  expected image, every live pod is ready and runs the expected digest, the Service has ready endpoints, and with an
  Ingress the health path answers 200 through it.

Every outcome is appended to the stack's ledger (:mod:`dockyard.records`), where the promotion gate reads it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
import yaml
from pulumi import automation as auto

from components.config import EnvironmentConfig
from components.image_ref import ImageReferenceError, parse_image_reference
from components.kubernetes_app import release_tracks
from dockyard import records
from dockyard.promotion import DockyardError, Outcome, Project, actor
from dockyard.records import Check, Verification
from dockyard.verify.common import VerifierError, short_image
from dockyard.verify.kube import ClusterReader, KubeApi, cluster_checks, connect, template_problems
from dockyard.verify.local_run import HEALTH_TIMEOUT, LocalRun


def expected_images(env: EnvironmentConfig, image_ref: str) -> dict[str, str]:
    """Deployment name → image it must run, from the same track rules the program deploys with.

    Rolling: the one ``stable`` Deployment runs ``image_ref``. Canary: ``stable`` runs it, ``canary`` the canary
    image. Blue-green: each color its own image (``image_ref`` is the active color's).
    """
    tracks = release_tracks(env.kubernetes, image_ref)
    return {f"{env.kubernetes.app_name}-{track.name}": str(track.image) for track in tracks}


# --- rendered manifests -----------------------------------------------------------------------------------------


def rendered_deployments(directory: Path) -> dict[str, dict[str, Any]]:
    """Every Deployment under ``directory`` (``**/*.yaml``) by name."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") == "Deployment":
                found[str(document["metadata"]["name"])] = document
    return found


def manifest_check(directory: Path, expected: Mapping[str, str]) -> Check:
    """The render directory holds exactly the expected Deployments, each pinning exactly its expected image."""
    if not directory.is_dir():
        return Check("manifests", False, f"{directory} does not exist (pulumi up renders it)")
    deployments = rendered_deployments(directory)
    problems = [f"Deployment {name} is missing" for name in sorted(set(expected) - set(deployments))]
    problems += [f"unexpected Deployment {name}" for name in sorted(set(deployments) - set(expected))]
    for name in sorted(set(expected) & set(deployments)):
        problems += template_problems(name, deployments[name]["spec"]["template"]["spec"], expected[name])
    if problems:
        return Check("manifests", False, "; ".join(problems))
    pinned = ", ".join(f"{name}={short_image(image)}" for name, image in sorted(expected.items()))
    return Check("manifests", True, f"{len(expected)} Deployment(s) in {directory.name}/ pin {pinned}")


# --- the command ------------------------------------------------------------------------------------------------


@dataclass
class Verifier:
    """Verifies stacks of ``project`` and records each outcome; ``kube`` replaces the live cluster in tests."""

    project: Project
    health_timeout: float = HEALTH_TIMEOUT
    kube: ClusterReader | None = None
    http: httpx.Client | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def ledger(self, stack_name: str) -> records.Ledger:
        return records.ledger_for(self.project.stack(stack_name))

    def verify(self, stack_name: str, *, trigger: str = "verify") -> Verification:
        """Check ``stack_name``'s deployment and append the outcome to its ledger (under the dockyard lock)."""
        env = self.project.environment(stack_name)
        stack = self.project.stack(stack_name)
        with self.project.lock(stack_name):
            outputs = stack.outputs()
            image = str(outputs["image_ref"].value) if "image_ref" in outputs else ""
            if not image:
                raise VerifierError(f"{stack_name} has no image_ref output (pulumi up --stack {stack_name})")
            ledger = records.ledger_for(stack)
            checks = self._deployment_checks(stack)
            try:
                checks += self._checks(stack_name, stack, env, image, outputs)
            except Exception as error:  # a verifier that cannot look has not verified anything: record a failure
                checks.append(Check("verifier", False, f"{error.__class__.__name__}: {error}"))
            record = Verification(
                stack=stack_name,
                image=image,
                passed=all(check.passed for check in checks),
                at=self.now(),
                actor=actor(),
                mode=env.kubernetes.mode,
                trigger=trigger,
                checks=tuple(checks),
            )
            ledger.append(record)
        return record

    @staticmethod
    def _deployment_checks(stack: auto.Stack) -> list[Check]:
        last = next(iter(stack.history(page_size=1)), None)
        if last is None:
            return [Check("update", False, "the stack has no update")]
        when = (last.end_time or last.start_time).isoformat(timespec="seconds")
        return [Check("update", last.result == "succeeded", f"last update ({when} UTC) {last.result}")]

    def _checks(
        self,
        stack_name: str,
        stack: auto.Stack,
        env: EnvironmentConfig,
        image: str,
        outputs: Mapping[str, auto.OutputValue],
    ) -> list[Check]:
        try:
            pinned = parse_image_reference(image).is_digest_pinned
        except ImageReferenceError as error:
            return [Check("image", False, str(error))]
        if not pinned:
            return [Check("image", False, f"image_ref {image} is not digest-pinned")]
        expected = expected_images(env, image)
        if env.kubernetes.mode == "render":
            directory = self.project.directory / (env.kubernetes.render_directory or f"rendered/{stack_name}")
            checks = [manifest_check(directory, expected)]
            run = LocalRun(image, env, self.health_timeout)
            checks += run.run()
            return checks
        namespace = str(outputs["namespace"].value) if "namespace" in outputs else ""
        if not namespace:
            return [Check("rollout", False, f"{stack_name} has no namespace output (pulumi up --stack {stack_name})")]
        url = str(outputs["url"].value) if "url" in outputs else None
        with contextlib.ExitStack() as exits:
            reader = self.kube or exits.enter_context(self._connect(stack_name, stack, env))
            checks = cluster_checks(
                reader,
                namespace=namespace,
                expected=expected,
                # KubernetesApp names the app's Service after the app.
                service=env.kubernetes.app_name,
                health_path=env.kubernetes.health_path,
                url=url,
                http=self.http,
            )
        if env.kubernetes.local_cluster:
            # The local cluster's kwok nodes never run a container: the served digest answers here instead.
            checks += LocalRun(image, env, self.health_timeout).run()
        return checks

    @staticmethod
    def _connect(
        stack_name: str, stack: auto.Stack, env: EnvironmentConfig
    ) -> contextlib.AbstractContextManager[KubeApi]:
        """The stack's ``dockyard:kubeconfig`` secret, else the ambient kubeconfig (as the provider does)."""
        try:
            kubeconfig: str | None = stack.get_config("dockyard:kubeconfig").value
        except auto.CommandError:
            kubeconfig = None
        return connect(stack_name, kubeconfig=kubeconfig, context=env.kubernetes.context)


# --- promote, verify, roll back ---------------------------------------------------------------------------------


class Releases(Protocol):
    """The release moves ``promote --verify`` makes (:class:`~dockyard.promotion.Project`)."""

    def promote(self, source: str, target: str, /, *, yes: bool, confirm: Callable[[], bool]) -> Outcome: ...

    def rollback(self, stack: str, /, *, to: str | None, yes: bool, confirm: Callable[[], bool]) -> Outcome: ...


class VerificationHistory(Protocol):
    """A stack's recorded verifications, oldest first (:class:`~dockyard.records.Ledger`)."""

    def verifications(self, stack: str, /) -> list[Verification]: ...


class StackVerifier(Protocol):
    """Verifies a stack and keeps the outcomes (:class:`Verifier`)."""

    def verify(self, stack: str, /, *, trigger: str = ...) -> Verification: ...

    def ledger(self, stack: str, /) -> VerificationHistory: ...


@dataclass
class VerifiedPromotion:
    """What ``promote --verify`` did: the promotion, its verification and, on failure, the rollback."""

    promotion: Outcome
    verification: Verification | None = None
    rollback: Outcome | None = None
    restored: Verification | None = None
    problem: str | None = None

    @property
    def healthy(self) -> bool:
        """The target ends on a verified release (the promoted one, or the one it was rolled back to)."""
        if self.verification is not None and self.verification.passed:
            return True
        return self.restored is not None and self.restored.passed


def promote_verified(
    project: Releases,
    verifier: StackVerifier,
    source: str,
    target: str,
    *,
    yes: bool,
    confirm: Callable[[], bool],
    on_failure: Callable[[Verification], None] = lambda _: None,
) -> VerifiedPromotion:
    """Promote, verify the target, and on failure roll back to the target's previous verified digest."""
    outcome = project.promote(source, target, yes=yes, confirm=confirm)
    result = VerifiedPromotion(outcome)
    if not outcome.applied:
        return result
    result.verification = verifier.verify(target, trigger=f"promote from {source}")
    if result.verification.passed:
        return result
    on_failure(result.verification)
    # The promoted image has just failed, so its newest record is a failure: it cannot be the target.
    previous = records.last_verified(verifier.ledger(target).verifications(target))
    if previous is None:
        result.problem = f"{target} has no previously verified digest to roll back to; it still serves {outcome.image}"
        return result
    try:
        result.rollback = project.rollback(target, to=previous.image, yes=True, confirm=confirm)
    except DockyardError as error:
        result.problem = f"the rollback of {target} to {previous.image} failed: {error}"
        return result
    result.restored = verifier.verify(target, trigger=f"rollback after failed verification of {outcome.image}")
    return result
