"""What the local chain's namespaces serve, moment by moment, while a pipeline runs.

One watch per namespace and kind (Deployments, Services) through the official Kubernetes client: the API server's
own event stream, not polling. Each namespace's picture starts from one list of both kinds (the first moment), and
each stream watches on from its list's resourceVersion: started without one, a stream's initial burst of ADDED
events would record moments in which one kind is known and the other not yet (Services routing to nothing). Every
event updates that namespace's picture, and after each one the images its Services route to are recorded. Bounded in time (the streams end when the block ends, or after ``limit_seconds``)
and in count (at most ``limit_events`` events per namespace). A stream that fails is an error of the watch, never
an empty picture: the test would otherwise read "routes to nothing" from a watch that never ran.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as kube_client
from kubernetes import config as kube_config
from kubernetes import watch as kube_watch

from tests.engine.harness import LOCAL_CONTEXT


@dataclass
class Moment:
    """After one watch event: the images each Service of the namespace routes to (ready Deployments it selects)."""

    seconds: float
    served: dict[str, frozenset[str]]


@dataclass
class NamespaceWatch:
    namespace: str
    moments: list[Moment] = field(default_factory=list)
    events: int = 0
    errors: list[str] = field(default_factory=list)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def latest(self, service: str) -> frozenset[str]:
        with self.lock:
            return self.moments[-1].served.get(service, frozenset()) if self.moments else frozenset()

    def wait_for(self, service: str, images: frozenset[str], timeout: float = 120) -> None:
        """Poll the watch's own record (no API calls) until ``service`` routes to exactly ``images``."""
        deadline = time.monotonic() + timeout
        while self.latest(service) != images:
            if self.errors:
                raise AssertionError(f"the watch of {self.namespace} failed: {self.errors}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.namespace}/{service} routes to {set(self.latest(service))}, not {images}")
            time.sleep(0.2)

    def seed(self, listed: dict[str, list[dict[str, Any]]], seconds: float) -> None:
        """The picture both kinds' lists give, as the first moment."""
        with self.lock:
            self.deployments = {obj["metadata"]["name"]: obj for obj in listed["Deployment"]}
            self.services = {obj["metadata"]["name"]: obj for obj in listed["Service"]}
            self._record(seconds)

    def apply(self, kind: str, event: dict[str, Any], seconds: float) -> None:
        obj = event["raw_object"]
        objects = self.deployments if kind == "Deployment" else self.services
        with self.lock:
            if event["type"] == "DELETED":
                objects.pop(obj["metadata"]["name"], None)
            else:
                objects[obj["metadata"]["name"]] = obj
            self.events += 1
            self._record(seconds)

    def _record(self, seconds: float) -> None:
        self.moments.append(Moment(seconds, {name: self._routed(s) for name, s in self.services.items()}))

    def _routed(self, service: dict[str, Any]) -> frozenset[str]:
        selector = service["spec"].get("selector") or {}
        return frozenset(
            container["image"]
            for deployment in self.deployments.values()
            if selector
            and all(deployment["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())
            and (deployment.get("status") or {}).get("readyReplicas", 0) > 0
            for container in deployment["spec"]["template"]["spec"]["containers"]
        )


@contextmanager
def watch_served(
    kubeconfig: str, namespaces: list[str], *, limit_seconds: int = 3600, limit_events: int = 5000
) -> Iterator[dict[str, NamespaceWatch]]:
    """Watch ``namespaces`` for the duration of the block; yields the per-namespace records, filled in as it runs.
    Raises when a stream failed, so a watch that saw nothing cannot pass for a quiet cluster."""
    api = kube_config.new_client_from_config(config_file=kubeconfig, context=LOCAL_CONTEXT)
    apps, core = kube_client.AppsV1Api(api), kube_client.CoreV1Api(api)
    watches = {namespace: NamespaceWatch(namespace) for namespace in namespaces}
    streams: list[kube_watch.Watch] = []
    stopping = threading.Event()  # closing the client ends each open response: that is not a failure of the watch
    threads = []
    started = time.monotonic()
    listers: dict[str, Callable[..., Any]] = {
        "Deployment": apps.list_namespaced_deployment,
        "Service": core.list_namespaced_service,
    }
    for namespace, record in watches.items():
        listed, versions = {}, {}
        for kind, lister in listers.items():
            # The raw JSON (camelCase, as watch events carry it), not the client's snake_case models.
            body = json.loads(lister(namespace, _preload_content=False).data)
            listed[kind], versions[kind] = body["items"], body["metadata"]["resourceVersion"]
        record.seed(listed, time.monotonic() - started)
        for kind, lister in listers.items():
            stream = kube_watch.Watch()

            def follow(
                stream: kube_watch.Watch = stream,
                kind: str = kind,
                lister: Callable[..., Any] = lister,
                record: NamespaceWatch = record,
                namespace: str = namespace,
                version: str = versions[kind],
            ) -> None:
                try:
                    for event in stream.stream(
                        lister, namespace, resource_version=version, timeout_seconds=limit_seconds
                    ):
                        record.apply(kind, event, time.monotonic() - started)
                        if record.events >= limit_events:
                            stream.stop()
                except Exception as error:  # reported through the record: the test reads it
                    if not stopping.is_set():
                        record.errors.append(f"{kind}: {error}")

            thread = threading.Thread(target=follow, daemon=True)
            thread.start()
            streams.append(stream)
            threads.append(thread)
    try:
        yield watches
    finally:
        stopping.set()
        for stream in streams:
            stream.stop()
        for thread in threads:
            thread.join(timeout=5)
        api.close()
    failed = {namespace: record.errors for namespace, record in watches.items() if record.errors}
    if failed:
        raise AssertionError(f"the watch failed: {failed}")
