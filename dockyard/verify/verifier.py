"""``dockyard verify``: is what a stack deployed healthy? The check behind every release move that looks first.

Two ways to look, chosen by the stack's ``kubernetes.mode``:

- ``render`` (and ``helm``): the manifests in the render directory must pin exactly the stack's images in every Deployment,
  and the image itself must start and answer on this machine (:mod:`dockyard.verify.local_run`).
- ``cluster``: through the Kubernetes API (:mod:`dockyard.verify.kube`), every Deployment is rolled out with the
  expected image, every live pod is ready and runs the expected digest, the Service has ready endpoints, and with an
  Ingress the health path answers 200 through it.

What is checked is a :class:`Subject`, from the stack's strategy: what the stack serves, or the release on its way in
(the canary track, or the idle color of a blue-green pair through its preview Service). Every outcome is appended to
the stack's records (:mod:`dockyard.releases.records`: the backend's database, or the ledger beside a file backend),
where the metrics and rollbacks read it; a stack with ``dockyard:signing`` also attests it on the digest in the
registry (:mod:`dockyard.releases.attestations`), where the promotion gate reads it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx

from dockyard.model.config import EnvironmentConfig
from dockyard.model.notifications import Event
from dockyard.model.rendered import rendered_objects
from dockyard.model.stack import StackView
from dockyard.releases import notify
from dockyard.releases.attestations import publish
from dockyard.releases.history import Update
from dockyard.releases.ledger import Check, Verification
from dockyard.releases.notify import Announce, ReleaseEvent
from dockyard.releases.project import actor, output_text
from dockyard.releases.records import VerificationRecords
from dockyard.verify.common import VerifierError
from dockyard.verify.kube import LiveCluster, cluster_checks, template_problems, traffic_check
from dockyard.verify.local_run import HEALTH_TIMEOUT, LocalRun
from dockyard_components.image_ref import ImageReferenceError, parse_image_reference, short_image
from dockyard_components.release import deployment_name, service_name


@dataclass(frozen=True)
class Subject:
    """What one verification checks: the image under test, the Deployments and the Service it looks at."""

    image: str
    #: Deployment → the image it must run.
    deployments: Mapping[str, str]
    #: The Service whose ready endpoints must be pods that passed the pod checks.
    service: str
    #: None: what the stack serves; else the candidate track checked (``canary``, ``blue``, ``green``).
    track: str | None = None
    #: Whether that track takes user traffic (an idle color does not).
    serving: bool = True


def expected_images(env: EnvironmentConfig, served: str | None) -> dict[str, str]:
    """Deployment name → image it must run, from the same tracks the program deploys (``served``: the stack's
    ``image_ref``, which the tracks without an image of their own run; None: they have no release, no Deployment)."""
    app = env.kubernetes.app_name
    return {
        deployment_name(app, track.name): track.image_or(served) if served is not None else str(track.image)
        for track in env.kubernetes.deployed_tracks(served is not None)
    }


def subject_of(stack: str, env: EnvironmentConfig, served: str | None, *, candidate: bool) -> Subject:
    """What the stack serves, or (``candidate``) the release its strategy has on the way in."""
    app = env.kubernetes.app_name
    everything = expected_images(env, served)
    if not candidate:
        if served is None:
            raise VerifierError(
                f"{stack} serves no release yet (no image_ref output): nothing to verify; a release on its way in "
                f"is checked with dockyard verify --stack {stack} --candidate"
            )
        return Subject(served, everything, service_name(app))
    coming = env.kubernetes.strategy.candidate
    if coming is None:
        raise VerifierError(
            f"{stack} has no release on its way in (no canary in progress, no idle color): "
            f"dockyard verify --stack {stack} checks what it serves"
        )
    # A canary serves beside the stable track, behind the same Service: check both tracks. An idle color serves
    # nobody yet: check it alone, through the Service that reaches only it.
    deployments = everything if coming.serving else {deployment_name(app, coming.track): coming.image}
    return Subject(coming.image, deployments, service_name(app, coming.service), coming.track, coming.serving)


# --- rendered manifests -----------------------------------------------------------------------------------------


def rendered_deployments(directory: Path) -> dict[str, dict[str, Any]]:
    """Every Deployment under ``directory`` (``**/*.yaml``) by name."""
    return {str(o["metadata"]["name"]): o for o in rendered_objects(directory) if o.get("kind") == "Deployment"}


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


LocalCheck = Callable[[str, StackView, float], list[Check]]


class StackFacts(Protocol):
    """What the verifier reads of a project (:class:`~dockyard.releases.project.Project`; a fake in unit tests)."""

    @property
    def directory(self) -> Path: ...

    @property
    def name(self) -> str: ...

    def view(self, stack: str, /) -> StackView: ...

    def outputs(self, stack: str, /) -> dict[str, Any]: ...

    def history(self, stack: str, /, limit: int | None = None) -> list[Update]: ...

    def secret_config(self, stack: str, key: str, /) -> str | None: ...

    def ledger(self) -> VerificationRecords: ...

    @property
    def backend(self) -> str: ...

    def lock(self, stack: str, /) -> contextlib.AbstractContextManager[None]: ...


#: (project, stack, the outcome) → attests the outcome in the registry; returns where it lives.
Attest = Callable[["StackFacts", StackView, Verification], str]


def run_locally(image: str, stack: StackView, timeout: float) -> list[Check]:
    return LocalRun(image, stack.env, stack.credentials, timeout).run()


@dataclass
class Verifier:
    """Verifies stacks of ``project`` and records each outcome; ``kube`` replaces the live cluster in tests.

    A digest answers its health path the same way on this machine each time it is run, so one verifier (one CLI
    command, e.g. a canary walk) runs each digest locally once and reuses that answer at every step; the live API
    is read again at every step.
    """

    project: StackFacts
    health_timeout: float = HEALTH_TIMEOUT
    kube: LiveCluster | None = None
    http: httpx.Client | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    local_check: LocalCheck = run_locally
    attest: Attest = publish
    announce: Announce = notify.announce
    _ran: dict[str, list[Check]] = field(default_factory=dict, init=False, repr=False)

    def verifications(self, stack_name: str, /) -> list[Verification]:
        return self.project.ledger().verifications(stack_name)

    def verify(self, stack_name: str, /, *, candidate: bool = False, trigger: str = "verify") -> Verification:
        """Check what ``stack_name`` serves (or its ``candidate``) and append the outcome to its ledger."""
        view = self.project.view(stack_name)
        env = view.env
        with self.project.lock(stack_name), ThreadPoolExecutor(max_workers=1) as pool:
            updates = pool.submit(self._update_checks, stack_name)  # one engine read beside the other
            outputs = self.project.outputs(stack_name)
            served = output_text(outputs, "image_ref") or None
            subject = subject_of(stack_name, env, served, candidate=candidate)
            checks = updates.result()
            try:
                checks += self._checks(view, subject, outputs)
            except Exception as error:  # a verifier that cannot look has not verified anything: record a failure
                checks.append(Check("verifier", False, f"{error.__class__.__name__}: {error}"))
            record = Verification(
                stack=stack_name,
                image=subject.image,
                passed=all(check.passed for check in checks),
                at=self.now(),
                actor=actor(),
                mode=env.kubernetes.mode,
                trigger=trigger,
                checks=tuple(checks),
                track=subject.track,
                serving=subject.serving,
            )
            self.project.ledger().append(record)
            if env.signs_with_key:
                # After the ledger: a registry that is down loses no outcome, and the error says what to re-run.
                self.attest(self.project, view, record)
        if not record.passed:
            failed = "; ".join(f"{check.name}: {check.detail}" for check in record.failed_checks)
            detail = f"{trigger}: {failed}"
            self.announce(
                view,
                ReleaseEvent(
                    Event.VERIFY_FAILED, self.project.name, stack_name, record.actor, record.image, None, detail
                ),
            )
        return record

    def _update_checks(self, stack_name: str) -> list[Check]:
        last = next(iter(self.project.history(stack_name, limit=1)), None)
        if last is None:
            return [Check("update", False, "the stack has no update")]
        when = last.at.isoformat(timespec="seconds")
        return [Check("update", last.result == "succeeded", f"last update ({when}) {last.result}")]

    def _checks(self, view: StackView, subject: Subject, outputs: Mapping[str, Any]) -> list[Check]:
        stack_name, env = view.name, view.env
        try:
            pinned = parse_image_reference(subject.image).is_digest_pinned
        except ImageReferenceError as error:
            return [Check("image", False, str(error))]
        if not pinned:
            return [Check("image", False, f"{subject.image} is not digest-pinned")]
        if env.kubernetes.renders:
            directory = self.project.directory / env.kubernetes.rendered_to(stack_name)
            served = output_text(outputs, "image_ref") or subject.image
            return [manifest_check(directory, expected_images(env, served)), *self._run(subject.image, view)]
        namespace = output_text(outputs, "namespace")
        if not namespace:
            return [Check("rollout", False, f"{stack_name} has no namespace output (pulumi up --stack {stack_name})")]
        with self._reader(stack_name, env) as reader:
            checks = cluster_checks(
                reader,
                namespace=namespace,
                expected=subject.deployments,
                service=subject.service,
                health_path=env.kubernetes.health_path,
                url=output_text(outputs, "url") if subject.track is None else None,
                http=self.http,
            )
            if env.kubernetes.runs_containers:
                checks.append(
                    traffic_check(
                        reader, namespace=namespace, service=subject.service, health_path=env.kubernetes.health_path
                    )
                )
        if not env.kubernetes.runs_containers:
            # The local cluster's kwok nodes never run a container: the digest under test answers here instead.
            checks += self._run(subject.image, view)
        return checks

    def _run(self, image: str, view: StackView) -> list[Check]:
        if image not in self._ran:
            self._ran[image] = self.local_check(image, view, self.health_timeout)
        return self._ran[image]

    @contextlib.contextmanager
    def _reader(self, stack_name: str, env: EnvironmentConfig) -> Iterator[LiveCluster]:
        """The live API of the stack's cluster: its ``dockyard:kubeconfig`` secret, else the ambient kubeconfig (as
        the provider does); ``kube`` when given."""
        if self.kube is not None:
            yield self.kube
            return
        from dockyard.verify.kube_api import connect  # the official client: only a cluster read pays its import

        kubeconfig = self.project.secret_config(stack_name, "dockyard:kubeconfig")
        with connect(stack_name, kubeconfig=kubeconfig, context=env.kubernetes.context) as reader:
            yield reader
