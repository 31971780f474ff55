"""The admission webhook over HTTPS: ``POST /validate`` answers AdmissionReviews, ``GET /healthz`` says it serves.

Reads each namespace's policy from the API server (remembered for a few seconds, so a burst of Pods costs one read)
and the Pods' pull Secrets for registry logins. Acceptances are remembered per digest and policy in a cache of the
webhook's own (:class:`~dockyard.model.trust.TrustCache`): what the webhook admits rests only on what it verified.
Anything it cannot check is refused with the reason; whether the API server then fails open or closed when the
webhook itself is unreachable is the registration's ``failurePolicy`` (:mod:`dockyard.admission.registration`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import sys
import threading
import time
from collections.abc import Mapping
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client as kube
from kubernetes import config as kube_config

from dockyard.admission.namespace import NamespacePolicy
from dockyard.admission.review import Decision, Images, decide, response
from dockyard.model.credentials import RegistryCredentials
from dockyard.model.trust import TrustCache, TrustPolicyError, check_images, registry_tools
from dockyard_components.image_ref import parse_image_reference

#: How long a namespace's policy is remembered: a changed policy binds new Pods within this many seconds.
NAMESPACE_TTL_SECONDS = 5.0


class Webhook:
    """Decides AdmissionReviews with the cluster's namespaces and Secrets (read through ``api``)."""

    def __init__(self, api: kube.CoreV1Api, work_dir: Path, cache: TrustCache | None = None) -> None:
        self.api = api
        self.work_dir = work_dir
        self.cache = cache or TrustCache(work_dir / "trust")
        self._namespaces: dict[str, tuple[float, NamespacePolicy | None]] = {}
        self._lock = threading.Lock()

    def review(self, document: Mapping[str, Any]) -> dict[str, Any]:
        request = document.get("request") or {}
        namespace = str(request.get("namespace") or "")
        try:
            policy = self._policy(namespace)
        except (TrustPolicyError, kube.ApiException) as error:
            reason = error.reason if isinstance(error, kube.ApiException) else str(error)
            decision = Decision(False, f"cannot read the trust policy of namespace {namespace}: {reason}")
        else:
            decision = decide(request, policy, lambda p, i, s: self._check(namespace, p, i, s))
        return response(str(request.get("uid", "")), decision)

    def _policy(self, namespace: str) -> NamespacePolicy | None:
        with self._lock:
            remembered = self._namespaces.get(namespace)
        if remembered is not None and time.monotonic() - remembered[0] < NAMESPACE_TTL_SECONDS:
            return remembered[1]
        metadata = self.api.read_namespace(namespace).metadata
        annotations = metadata.annotations if metadata is not None else None
        policy = NamespacePolicy.read(annotations)
        with self._lock:
            self._namespaces[namespace] = (time.monotonic(), policy)
        return policy

    def _check(
        self, namespace: str, policy: NamespacePolicy, pinned: Images, secrets: list[str]
    ) -> dict[str, list[str]]:
        by_host: dict[str, Images] = {}
        for what, image in pinned.items():
            by_host.setdefault(parse_image_reference(image).registry, {})[what] = image
        refused: dict[str, list[str]] = {}
        for host, group in by_host.items():
            credentials = self._credentials(namespace, secrets, host, policy.registry_ca)
            tools = partial(registry_tools, host, credentials, policy.policy)
            refused |= check_images(policy.policy, group, tools, self.cache)
        return refused

    def _credentials(self, namespace: str, secrets: list[str], host: str, ca: str | None) -> RegistryCredentials:
        """The login the Pod's pull Secrets hold for ``host`` (anonymous without one)."""
        username, password = "", None
        for name in secrets:
            try:
                data = self.api.read_namespaced_secret(name, namespace).data or {}
                auths = json.loads(base64.b64decode(data.get(".dockerconfigjson", "")) or b"{}").get("auths", {})
            except (kube.ApiException, ValueError):
                continue  # a missing or unreadable Secret: the kubelet could not pull with it either
            entry = next((e for key, e in auths.items() if key.removeprefix("https://").rstrip("/") == host), None)
            if entry is not None:
                username, password = _login(entry)
                break
        return RegistryCredentials(username, password, self._ca_file(ca))

    def _ca_file(self, ca: str | None) -> str | None:
        if ca is None:
            return None
        path = self.work_dir / f"ca-{hashlib.sha256(ca.encode()).hexdigest()[:16]}.pem"
        if not path.exists():
            partial = path.with_suffix(f".{threading.get_ident()}.tmp")
            partial.write_text(ca)
            partial.replace(path)
        return str(path)


def _login(entry: Mapping[str, str]) -> tuple[str, str | None]:
    if entry.get("username"):
        return str(entry["username"]), entry.get("password")
    user, _, password = base64.b64decode(entry.get("auth", "")).decode().partition(":")
    return user, password or None


def _handler(webhook: Webhook) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = urlsplit(self.path).path == "/healthz"
            self._send(HTTPStatus.OK if found else HTTPStatus.NOT_FOUND, b"ok\n", "text/plain")

        def do_POST(self) -> None:
            # The API server adds its deadline as a query (``/validate?timeout=15s``).
            if urlsplit(self.path).path != "/validate":
                self._send(HTTPStatus.NOT_FOUND, b"", "text/plain")
                return
            started = time.monotonic()
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                request = json.loads(body).get("request") or {}
            except (ValueError, AttributeError):
                self._send(HTTPStatus.BAD_REQUEST, b"not an AdmissionReview\n", "text/plain")
                return
            try:
                answer = webhook.review({"request": request})
            except Exception as error:  # an answer, never a dropped connection
                refusal = Decision(False, f"the admission webhook failed: {type(error).__name__}: {error}")
                answer = response(str(request.get("uid", "")), refusal)
            verdict = "admitted" if answer["response"]["allowed"] else "refused"
            print(
                f"{request.get('operation')} {request.get('kind', {}).get('kind')} {request.get('namespace')}/"
                f"{request.get('name') or '(new)'}: {verdict} in {1000 * (time.monotonic() - started):.0f} ms",
                file=sys.stderr,
                flush=True,
            )
            try:
                self._send(HTTPStatus.OK, json.dumps(answer).encode(), "application/json")
            except (OSError, ssl.SSLError):
                # The API server stopped waiting (its timeoutSeconds): the check is cached, its retry is answered fast.
                print(f"  the API server had stopped waiting for {request.get('uid')}", file=sys.stderr, flush=True)

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per decision (above) instead of one per request

    return Handler


def serve(host: str, port: int, cert: Path, key: Path, kubeconfig: Path, work_dir: Path) -> None:
    """Serve until killed."""
    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    api = kube.CoreV1Api(kube_config.new_client_from_config(config_file=str(kubeconfig)))
    server = ThreadingHTTPServer((host, port), _handler(Webhook(api, work_dir)))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"dockyard admission webhook on https://{host}:{port}/validate", file=sys.stderr, flush=True)
    server.serve_forever()
