"""What the local chain's namespaces serve, moment by moment, while a pipeline runs.

One ``kubectl get deployments,services --watch`` per namespace (the API server's own event stream, not polling):
every event updates that namespace's picture, and after each one the images its Services route to are recorded.
Bounded in time (the watch is stopped when the pipeline ends, or after ``limit_seconds``) and in count (at most
``limit_events`` events per namespace).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

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
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)

    def latest(self, service: str) -> frozenset[str]:
        return self.moments[-1].served.get(service, frozenset()) if self.moments else frozenset()

    def wait_for(self, service: str, images: frozenset[str], timeout: float = 120) -> None:
        """Poll the watch's own record (no API calls) until ``service`` routes to exactly ``images``."""
        deadline = time.monotonic() + timeout
        while self.latest(service) != images:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.namespace}/{service} routes to {set(self.latest(service))}, not {images}")
            time.sleep(0.2)

    def images_seen(self) -> set[str]:
        return {image for moment in self.moments for images in moment.served.values() for image in images}

    def apply(self, event: dict[str, Any], seconds: float) -> None:
        obj = event["object"]
        kind, name = obj.get("kind"), obj["metadata"]["name"]
        objects = self.deployments if kind == "Deployment" else self.services
        if event["type"] == "DELETED":
            objects.pop(name, None)
        else:
            objects[name] = obj
        self.events += 1
        self.moments.append(Moment(seconds, {svc: self._routed(s) for svc, s in self.services.items()}))

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


def _stream(process: subprocess.Popen[str]) -> Iterator[dict[str, Any]]:
    """The JSON documents kubectl writes one after another (``-o json`` with ``--output-watch-events``)."""
    decoder, buffer = json.JSONDecoder(), ""
    assert process.stdout is not None
    for line in process.stdout:
        buffer += line
        while buffer.strip():
            try:
                document, end = decoder.raw_decode(buffer.lstrip())
            except json.JSONDecodeError:
                break
            buffer = buffer.lstrip()[end:]
            yield document


@contextmanager
def watch_served(
    kubeconfig: str, namespaces: list[str], *, limit_seconds: int = 3600, limit_events: int = 5000
) -> Iterator[dict[str, NamespaceWatch]]:
    """Watch ``namespaces`` for the duration of the block; yields the per-namespace records, filled in as it runs."""
    watches = {namespace: NamespaceWatch(namespace) for namespace in namespaces}
    started = time.monotonic()
    processes = []
    threads = []
    for namespace, record in watches.items():
        process = subprocess.Popen(
            [
                "kubectl", "--kubeconfig", kubeconfig, "--context", LOCAL_CONTEXT, "get", "deployments,services",
                "-n", namespace, "--watch", "--output-watch-events", "-o", "json",
                f"--request-timeout={limit_seconds}s",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip

        def follow(process: subprocess.Popen[str] = process, record: NamespaceWatch = record) -> None:
            for event in _stream(process):
                record.apply(event, time.monotonic() - started)
                if record.events >= limit_events:
                    process.terminate()
                    return

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
        processes.append(process)
        threads.append(thread)
    try:
        yield watches
    finally:
        for process in processes:
            process.terminate()
        for thread in threads:
            thread.join(timeout=30)
