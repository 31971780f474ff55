"""Reaching the app on the local cluster's real node as a client does: its Service's ClusterIP from this host
(kube-proxy's iptables rules) and a watcher that records every answer while an update runs (the lease that keeps
the node up while a module's pods are on it is tests/local_services.py's)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TypeVar

from tests.engine.harness import Workspace, live

T = TypeVar("T")


def eventually(what: str, probe: Callable[[], T | None], timeout: float = 90) -> T:
    """Poll ``probe`` until it returns something; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(1)


#: Straight to the ClusterIP: a proxy from the environment must not answer for kube-proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def health(ip: str) -> tuple[int, str]:
    """GET http://<ClusterIP>/health: (status, version); (0, reason) when nothing answered."""
    try:
        with _DIRECT.open(f"http://{ip}/health", timeout=3) as response:
            return response.status, str(json.loads(response.read())["version"])
    except urllib.error.HTTPError as error:
        return error.code, ""
    except OSError as error:
        return 0, str(error)


def service_ip(workspace: Workspace, stack: str = "local", service: str = "dockyard-app") -> str:
    return str(live(workspace, stack, "services")[service]["spec"]["clusterIP"])


class ServiceWatcher:
    """GETs the Service's /health every 0.25 s in a thread: what a client saw during an update."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.answers: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.answers.append(health(self.ip))
            self._stop.wait(0.25)

    def __enter__(self) -> ServiceWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
