"""Cluster checks over the Kubernetes API's objects: how the ``cluster`` stacks are verified.

Fetching and judging are apart. :class:`ClusterReader` is everything the checks read (a Deployment, the pods of a
selector, the EndpointSlices of a Service), answered with the API's own JSON objects; :mod:`.kube_api` answers it
with the official ``kubernetes`` client. The judging functions here (:func:`rollout_problems`, :func:`pod_problems`,
:func:`endpoint_problems`, :func:`cluster_checks`) are pure over those objects, so they are tested without a cluster.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlparse

import httpx

from dockyard.releases.ledger import Check
from dockyard_components.image_ref import parse_image_reference, short_image

HTTP_TIMEOUT = 5.0
#: The label the EndpointSlice controller puts on every slice of a Service.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
#: The traffic check: requests through the Service (``/`` and the health path in turn), a pause between each: the
#: analysis window is about TRAFFIC_REQUESTS x TRAFFIC_INTERVAL seconds.
TRAFFIC_REQUESTS = 10
TRAFFIC_INTERVAL = 0.5


class ClusterReader(Protocol):
    """The reads the cluster checks make, answered with the API's JSON objects (camelCase keys)."""

    def read_deployment(self, namespace: str, name: str, /) -> Mapping[str, Any] | None:
        """The Deployment, or None when there is none of that name."""

    def list_pods(self, namespace: str, selector: Mapping[str, str], /) -> list[Mapping[str, Any]]:
        """The pods whose labels match every entry of ``selector``."""

    def list_endpoint_slices(self, namespace: str, service: str, /) -> list[Mapping[str, Any]]:
        """The EndpointSlices of the Service ``service``."""


class ServiceAnswer(NamedTuple):
    """What a request through a Service got: the app's HTTP status and body, or status 0 and why nothing answered."""

    status: int
    body: str


class ServiceProber(Protocol):
    """Requests to a Service's pods the way clients reach them (:class:`.kube_api.KubeApi`: the API server's service
    proxy, which picks a ready endpoint as the Service does)."""

    def get_through_service(self, namespace: str, service: str, path: str, /) -> ServiceAnswer: ...


class LiveCluster(ClusterReader, ServiceProber, Protocol):
    """What verifying a stack whose pods run asks of its cluster: the objects, and requests through the Service."""


class PodEventReader(Protocol):
    """The reads that say why a stack's pods are not ready (:class:`.kube_api.KubeApi` has them)."""

    def read_deployment(self, namespace: str, name: str, /) -> Mapping[str, Any] | None: ...

    def list_pods(self, namespace: str, selector: Mapping[str, str], /) -> list[Mapping[str, Any]]: ...

    def list_pod_events(self, namespace: str, pod: str, /) -> list[Mapping[str, Any]]:
        """The events whose involved object is the pod ``pod``, oldest first."""


# --- judging, pure over the API's objects -----------------------------------------------------------------------


def template_problems(name: str, pod_spec: Mapping[str, Any], image: str) -> list[str]:
    """Every container (init containers too) of a Deployment's pod template runs exactly ``image``."""
    containers = [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]
    return [
        f"{name}: container {container.get('name')} runs {container.get('image')}, expected {image}"
        for container in containers
        if container.get("image") != image
    ]


def rollout_problems(name: str, deployment: Mapping[str, Any], image: str) -> list[str]:
    """Why ``deployment`` is not completely rolled out to ``image`` (like ``kubectl rollout status``)."""
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    generation = deployment.get("metadata", {}).get("generation", 0)
    wanted = spec.get("replicas", 1)
    problems = template_problems(name, spec.get("template", {}).get("spec", {}), image)
    if status.get("observedGeneration", 0) < generation:
        problems.append(f"{name}: generation {generation} not observed yet")
    for field_name, label in (
        ("updatedReplicas", "updated"),
        ("readyReplicas", "ready"),
        ("availableReplicas", "available"),
    ):
        if status.get(field_name, 0) < wanted:
            problems.append(f"{name}: {status.get(field_name, 0)} of {wanted} replicas {label}")
    if status.get("replicas", 0) > status.get("updatedReplicas", 0):
        problems.append(f"{name}: {status['replicas'] - status.get('updatedReplicas', 0)} old replica(s) remain")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            problems.append(f"{name}: progress deadline exceeded ({condition.get('message', '')})")
    return problems


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _live(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Pods that are not terminating: a rollout's leaving pods are the old release by design."""
    return [p for p in pods if not p.get("metadata", {}).get("deletionTimestamp")]


def _wrong_images(pod: Mapping[str, Any], image: str) -> list[str]:
    """Containers of ``pod`` not running ``image``: by the runtime's imageID when it reports one (the digest it
    really pulled), else by the image the pod spec names."""
    digest = parse_image_reference(image).digest
    named = {c.get("name"): c.get("image") for c in pod.get("spec", {}).get("containers") or []}
    statuses = pod.get("status", {}).get("containerStatuses") or []
    if not statuses:
        return ["no container has started"]
    wrong = []
    for status in statuses:
        image_id = status.get("imageID")
        runs = image_id or named.get(status.get("name")) or status.get("image")
        if not (str(image_id).endswith(f"@{digest}") if image_id else runs == image):
            wrong.append(f"{status.get('name')} runs {runs}")
    return wrong


def verified_pods(pods: Sequence[Mapping[str, Any]], image: str) -> set[str]:
    """Names of the live pods that are ready and run exactly ``image``."""
    return {
        str(pod.get("metadata", {}).get("name")) for pod in _live(pods) if _ready(pod) and not _wrong_images(pod, image)
    }


def pod_problems(name: str, pods: Sequence[Mapping[str, Any]], image: str, wanted: int) -> list[str]:
    """Every live pod of the Deployment is ready and runs ``image``; at least ``wanted`` of them."""
    problems = []
    for pod in _live(pods):
        pod_name = pod.get("metadata", {}).get("name", "?")
        wrong = _wrong_images(pod, image)
        if wrong:
            problems.append(f"pod {pod_name}: {'; '.join(wrong)}, expected {image}")
        if not _ready(pod):
            problems.append(f"pod {pod_name} is not ready ({pod.get('status', {}).get('phase', 'unknown')})")
    good = len(verified_pods(pods, image))
    if good < wanted:
        problems.append(f"{name}: {good} of {wanted} pods ready with {parse_image_reference(image).digest}")
    return problems


def pod_reasons(pod: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> list[str]:
    """Why ``pod`` is not serving, in its own words: its containers' waiting reasons (ErrImagePull, CrashLoopBackOff)
    and its Warning events (probe failures, pull and scheduling failures), each once, newest wording kept."""
    name = pod.get("metadata", {}).get("name", "?")
    found: dict[str, None] = {}
    statuses = pod.get("status", {})
    for status in [*(statuses.get("initContainerStatuses") or []), *(statuses.get("containerStatuses") or [])]:
        waiting = (status.get("state") or {}).get("waiting") or {}
        # ContainerCreating and PodInitializing are a pod on its way, not a reason.
        if waiting.get("reason") and waiting["reason"] not in ("ContainerCreating", "PodInitializing"):
            message = f": {waiting['message']}" if waiting.get("message") else ""
            found[f"container {status.get('name')} waiting: {waiting['reason']}{message}"] = None
    for event in events:
        if event.get("type") == "Warning" and event.get("message"):
            found[" ".join(str(event["message"]).split())] = None
    return [f"pod {name}: {reason}" for reason in found]


def read_reasons(reader: PodEventReader, namespace: str, deployments: Collection[str]) -> list[str]:
    """Why the pods of ``deployments`` are not serving, pod by pod (:func:`pod_reasons`); a ready pod's past warnings
    (a probe that failed while it started) are not why, and a Deployment that does not exist has nothing to say."""
    lines: list[str] = []
    for name in sorted(deployments):
        deployment = reader.read_deployment(namespace, name)
        if deployment is None:
            continue
        selector = deployment.get("spec", {}).get("selector", {}).get("matchLabels", {})
        for pod in reader.list_pods(namespace, selector):
            if _ready(pod):
                continue
            lines += pod_reasons(pod, reader.list_pod_events(namespace, str(pod.get("metadata", {}).get("name"))))
    return lines


def ready_endpoints(slices: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The endpoints that receive traffic: ``conditions.ready`` true or unset (the API's rule for nil)."""
    return [
        endpoint
        for endpoint_slice in slices
        for endpoint in endpoint_slice.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready") is not False
    ]


def endpoint_problems(service: str, slices: Sequence[Mapping[str, Any]], verified: Collection[str]) -> list[str]:
    """The Service has ready endpoints, and each ready pod behind it is one that passed the pod checks."""
    if not slices:
        return [f"Service {service} has no EndpointSlice (no such Service, or it selects no pod)"]
    ready = ready_endpoints(slices)
    if not ready:
        total = sum(len(s.get("endpoints") or []) for s in slices)
        return [f"Service {service} has no ready endpoint ({total} not ready)"]
    strangers = sorted(
        str(target.get("name"))
        for endpoint in ready
        if (target := endpoint.get("targetRef") or {}).get("kind") == "Pod" and target.get("name") not in verified
    )
    if strangers:
        return [f"Service {service} sends traffic to pods that did not pass the pod checks: {', '.join(strangers)}"]
    return []


def health_check(url: str, health_path: str, http: httpx.Client | None = None) -> Check:
    """The health path answers 200 through the Ingress at ``url``."""
    target = f"{url.rstrip('/')}{health_path}"
    try:
        with contextlib.ExitStack() as stack:
            client = http or stack.enter_context(httpx.Client(timeout=HTTP_TIMEOUT))
            response = client.get(target)
    except httpx.HTTPError as error:
        return Check("health", False, f"GET {target}: {error.__class__.__name__}: {error}")
    if response.status_code != 200:
        return Check("health", False, f"GET {target} answered HTTP {response.status_code}, want 200")
    return Check("health", True, f"GET {target} answered 200")


def _answer_problem(path: str, answer: ServiceAnswer) -> str | None:
    if answer.status == 0:
        return f"GET {path}: {answer.body}"
    if answer.status != 200:
        return f"GET {path}: HTTP {answer.status}, want 200"
    try:
        json.loads(answer.body)
    except ValueError:
        return f"GET {path}: HTTP 200 but the body is not JSON"
    return None


def traffic_check(
    prober: ServiceProber,
    *,
    namespace: str,
    service: str,
    health_path: str,
    requests: int | None = None,
    interval: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Check:
    """The app answers through its Service: ``requests`` GETs of ``/`` and the health path in turn, ``interval``
    apart (default :data:`TRAFFIC_REQUESTS`, :data:`TRAFFIC_INTERVAL`), each 200 with a JSON body. Every failure in
    the window counts (a canary's pods take a share of them)."""
    requests = TRAFFIC_REQUESTS if requests is None else requests
    interval = TRAFFIC_INTERVAL if interval is None else interval
    failures: list[str] = []
    for n in range(requests):
        path = "/" if n % 2 == 0 else health_path
        problem = _answer_problem(path, prober.get_through_service(namespace, service, path))
        if problem:
            failures.append(problem)
        if n < requests - 1:
            sleep(interval)
    if failures:
        first = "; ".join(dict.fromkeys(failures))
        return Check(
            "traffic", False, f"{len(failures)} of {requests} requests through Service {service} failed: {first}"
        )
    return Check("traffic", True, f"{requests} requests through Service {service} (GET / and {health_path}): all 200")


def _through_ingress(url: str | None) -> bool:
    parsed = urlparse(url or "")
    return parsed.scheme == "https" and not (parsed.hostname or "").endswith(".svc.cluster.local")


def cluster_checks(
    reader: ClusterReader,
    *,
    namespace: str,
    expected: Mapping[str, str],
    service: str,
    health_path: str,
    url: str | None,
    http: httpx.Client | None = None,
) -> list[Check]:
    """Rollout, pods and the Service's ready endpoints from the API; the health path too when an Ingress serves
    ``url``. A reader that cannot read raises :class:`VerifierError`."""
    rollout: list[str] = []
    pods: list[str] = []
    verified: set[str] = set()
    for name, image in sorted(expected.items()):
        deployment = reader.read_deployment(namespace, name)
        if deployment is None:
            rollout.append(f"{name}: no such Deployment in namespace {namespace}")
            continue
        rollout += rollout_problems(name, deployment, image)
        spec = deployment.get("spec", {})
        found = reader.list_pods(namespace, spec.get("selector", {}).get("matchLabels", {}))
        pods += pod_problems(name, found, image, int(spec.get("replicas", 1)))
        verified |= verified_pods(found, image)
    slices = reader.list_endpoint_slices(namespace, service)
    endpoints = endpoint_problems(service, slices, verified)
    done = ", ".join(f"{name}={short_image(image)}" for name, image in sorted(expected.items()))
    checks = [
        Check("rollout", not rollout, "; ".join(rollout) or f"complete: {done}"),
        Check(
            "pods",
            not pods and not rollout,
            "; ".join(pods)
            or (
                "no verdict while the rollout is incomplete"
                if rollout
                else "every live pod is ready with the expected digest"
            ),
        ),
        Check(
            "endpoints",
            not endpoints,
            "; ".join(endpoints) or f"Service {service}: {len(ready_endpoints(slices))} ready endpoint(s)",
        ),
    ]
    if url is not None and _through_ingress(url):
        checks.append(health_check(url, health_path, http))
    return checks
