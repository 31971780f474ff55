"""The live side of cluster verification: the official client, configured from a stack's kubeconfig secret or the
ambient kubeconfig, against a recording API server on 127.0.0.1, and what a user reads when it fails."""

from __future__ import annotations

import base64
import json
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import kubernetes
import pytest
import yaml

from dockyard.verify import VerifierError
from dockyard.verify.kube import SERVICE_NAME_LABEL, ServiceAnswer, read_reasons
from dockyard.verify.kube_api import KubeconfigError, connect
from tests.unit.test_verify import NAMESPACE, SELECTOR, SERVICE, deployment, endpoint_slice, healthy_pods, run_checks

TOKEN = "sentinel-kube-token-5f1e9c"
KEY = b"-----BEGIN EC PRIVATE KEY-----\nsentinel-client-key\n-----END EC PRIVATE KEY-----\n"
SELECTOR_QUERY = ",".join(f"{k}={v}" for k, v in sorted(SELECTOR.items()))
LOCAL = "dockyard-local"


@dataclass
class ApiServer:
    """Answers the three reads of the verifier like kube-apiserver; ``refuse`` answers every request with that
    status instead. Records the path, query and Authorization header of each request."""

    url: str = ""
    deployment: dict[str, Any] | None = field(default_factory=deployment)
    pods: list[dict[str, Any]] = field(default_factory=healthy_pods)
    #: Pod name → its events (``/api/v1/namespaces/<ns>/events`` with an involvedObject field selector).
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    refuse: tuple[int, str] | None = None
    #: Path under the Service's proxy → the app's status and raw body.
    app: dict[str, tuple[int, str]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, list[str]], str]] = field(default_factory=list)

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any] | str]:
        if self.refuse:
            code, message = self.refuse
            return code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code}
        proxy = f"/api/v1/namespaces/{NAMESPACE}/services/{SERVICE}:http/proxy"
        if path.startswith(proxy):
            if not self.app:
                message = f'no endpoints available for service "{SERVICE}"'
                return 503, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message}
            return self.app[path.removeprefix(proxy) or "/"]
        if path == f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/dockyard-app-stable" and self.deployment:
            return 200, {"apiVersion": "apps/v1", **self.deployment}
        if path == f"/api/v1/namespaces/{NAMESPACE}/pods" and query.get("labelSelector") == [SELECTOR_QUERY]:
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": self.pods}
        if path == f"/api/v1/namespaces/{NAMESPACE}/events":
            wanted = dict(term.split("=", 1) for term in query.get("fieldSelector", [""])[0].split(","))
            assert wanted["involvedObject.kind"] == "Pod", wanted
            items = self.events.get(wanted["involvedObject.name"], [])
            return 200, {"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": items}
        if path == f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices" and query.get(
            "labelSelector"
        ) == [f"{SERVICE_NAME_LABEL}={SERVICE}"]:
            items = [endpoint_slice(*(p["metadata"]["name"] for p in healthy_pods()))]
            return 200, {
                "kind": "EndpointSliceList",
                "apiVersion": "discovery.k8s.io/v1",
                "metadata": {},
                "items": items,
            }
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}


@pytest.fixture
def api_server() -> Iterator[ApiServer]:
    server = ApiServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            query = parse_qs(parsed.query)
            path = unquote(parsed.path)  # as kube-apiserver reads it (the client quotes `:` in a proxy's name)
            server.requests.append((path, query, self.headers.get("Authorization", "")))
            code, body = server.answer(path, query)
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def kubeconfig(server: str, context: str = "staging", user: dict[str, Any] | None = None, **extra: Any) -> str:
    cluster = {"server": server, **extra}
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": context,
            # Named after the context: merged kubeconfigs keep the first entry of a name, as kubectl does.
            "clusters": [{"name": f"c-{context}", "cluster": cluster}],
            "users": [{"name": f"u-{context}", "user": user if user is not None else {"token": TOKEN}}],
            "contexts": [
                {"name": context, "context": {"cluster": f"c-{context}", "user": f"u-{context}"}},
                {"name": "spare", "context": {"cluster": f"c-{context}", "user": f"u-{context}"}},
            ],
        }
    )


@pytest.fixture
def no_ambient(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No KUBECONFIG, and an empty home: the ambient kubeconfig is whatever the test writes."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


# --- configuration ----------------------------------------------------------------------------------------------


def test_the_stacks_kubeconfig_secret_drives_the_official_client(api_server: ApiServer, no_ambient: Path) -> None:
    with connect("staging", kubeconfig=kubeconfig(api_server.url), context="staging") as api:
        assert api.server == api_server.url
        checks = run_checks(api)
    assert all(check.passed for check in checks.values()), checks
    assert [path for path, _, _ in api_server.requests] == [
        f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/dockyard-app-stable",
        f"/api/v1/namespaces/{NAMESPACE}/pods",
        f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices",
    ]
    assert {auth for _, _, auth in api_server.requests} == {f"Bearer {TOKEN}"}


def test_without_a_secret_the_context_comes_from_every_kubeconfig_in_KUBECONFIG(  # noqa: N802
    api_server: ApiServer, no_ambient: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(kubeconfig("https://elsewhere.example.test:6443", context="elsewhere"))
    local = tmp_path / "local.yaml"
    local.write_text(kubeconfig(api_server.url, context=LOCAL))
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing.yaml'}:{other}:{local}")
    with connect("local", kubeconfig=None, context=LOCAL) as api:
        assert api.server == api_server.url
        assert api.source == f"{other}:{local}"
        assert run_checks(api)["rollout"].passed


def test_without_a_secret_or_KUBECONFIG_it_is_the_home_kubeconfig(  # noqa: N802
    api_server: ApiServer, no_ambient: Path
) -> None:
    (no_ambient / ".kube").mkdir()
    (no_ambient / ".kube" / "config").write_text(kubeconfig(api_server.url, context=LOCAL))
    with connect("local", kubeconfig=None, context=None) as api:  # the current-context
        assert run_checks(api)["rollout"].passed


def test_no_kubeconfig_anywhere_says_where_it_looked_and_what_to_run(no_ambient: Path) -> None:
    with pytest.raises(KubeconfigError) as local, connect("local", kubeconfig=None, context=LOCAL):
        pass
    assert str(local.value) == (
        f"local: no dockyard:kubeconfig secret and no kubeconfig at {no_ambient}/.kube/config; "
        "scripts/local-cluster.sh start writes it; source scripts/local-env.sh exports its KUBECONFIG"
    )
    with pytest.raises(KubeconfigError) as real, connect("prod", kubeconfig=None, context="prod"):
        pass
    assert "export KUBECONFIG, or store one for the stack: pulumi config set --secret dockyard:kubeconfig" in str(
        real.value
    )


def test_a_missing_context_is_named_with_the_ones_there_are(
    api_server: ApiServer, no_ambient: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with (
        pytest.raises(KubeconfigError) as secret,
        connect("prod", kubeconfig=kubeconfig(api_server.url), context="prod"),
    ):
        pass
    assert str(secret.value) == (
        "prod: the stack's dockyard:kubeconfig secret has no context 'prod' (it has: staging, spare); add it, or "
        "store one for the stack: pulumi config set --secret dockyard:kubeconfig --stack prod < FILE"
    )
    stale = tmp_path / "kubeconfig"
    stale.write_text(kubeconfig(api_server.url, context="kind-kind"))
    monkeypatch.setenv("KUBECONFIG", str(stale))
    with pytest.raises(KubeconfigError) as local, connect("local", kubeconfig=None, context=LOCAL):
        pass
    assert f"local: {stale} has no context 'dockyard-local' (it has: kind-kind, spare)" in str(local.value)
    assert "scripts/local-cluster.sh start writes it" in str(local.value)
    unnamed = yaml.safe_load(kubeconfig(api_server.url))
    del unnamed["current-context"]
    with (
        pytest.raises(KubeconfigError, match="has no current-context and the stack names none"),
        connect("dev", kubeconfig=yaml.safe_dump(unnamed), context=None),
    ):
        pass
    assert api_server.requests == []


def test_a_broken_secret_is_reported_without_quoting_it(no_ambient: Path) -> None:
    broken = f"users:\n- name: u\n  user: {{token: {TOKEN}\n"
    with pytest.raises(KubeconfigError) as error, connect("dev", kubeconfig=broken, context=None):
        pass
    assert str(error.value).startswith("dev: the stack's dockyard:kubeconfig secret is not valid YAML (line ")
    assert TOKEN not in str(error.value)


def test_key_material_is_private_to_the_run_and_removed_after(no_ambient: Path) -> None:
    text = kubeconfig(
        "https://staging.example.test:6443",
        user={
            "client-certificate-data": base64.b64encode(b"CERT").decode(),
            "client-key-data": base64.b64encode(KEY).decode(),
        },
        **{"certificate-authority-data": base64.b64encode(b"CA").decode()},
    )
    for _ in range(2):  # the client caches written files by content: the second run must not get a removed one
        with connect("staging", kubeconfig=text, context="staging") as api:
            configuration = api.api.configuration
            key, certificate = Path(configuration.key_file), Path(configuration.cert_file)
            assert key.read_bytes() == KEY
            assert certificate.read_bytes() == b"CERT"
            assert Path(configuration.ssl_ca_cert).read_bytes() == b"CA"
            assert key.stat().st_mode & 0o077 == 0
            assert key.parent.name.startswith("dockyard-kube-")
        assert not key.exists(), "key material is removed after use"
        assert not key.parent.exists()


def test_tls_settings_come_from_the_context(no_ambient: Path) -> None:
    with connect("staging", kubeconfig=kubeconfig("https://staging.example.test:6443"), context="staging") as api:
        assert api.api.configuration.verify_ssl is True
    insecure = kubeconfig("https://staging.example.test:6443", **{"insecure-skip-tls-verify": True})
    with connect("staging", kubeconfig=insecure, context="staging") as api:
        assert api.api.configuration.verify_ssl is False


def test_exec_credential_plugins_work(api_server: ApiServer, no_ambient: Path) -> None:
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": "sentinel-exec-token-81c2"},
    }
    plugin = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": sys.executable,
        "args": ["-c", f"print({json.dumps(json.dumps(credential))})"],
        "interactiveMode": "Never",
    }
    with connect("dev", kubeconfig=kubeconfig(api_server.url, user={"exec": plugin}), context="staging") as api:
        assert run_checks(api)["rollout"].passed
    assert {auth for _, _, auth in api_server.requests} == {"Bearer sentinel-exec-token-81c2"}


# --- the API's answers ------------------------------------------------------------------------------------------


def test_an_unreachable_local_cluster_names_the_stack_the_server_and_the_script(
    no_ambient: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = f"https://127.0.0.1:{port}"
    config = tmp_path / "kubeconfig"
    config.write_text(
        kubeconfig(
            server,
            context=LOCAL,
            user={
                "token": TOKEN,
                "client-certificate-data": base64.b64encode(b"CERT").decode(),
                "client-key-data": base64.b64encode(KEY).decode(),
            },
            **{"insecure-skip-tls-verify": True},
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    with pytest.raises(VerifierError) as error, connect("local", kubeconfig=None, context=LOCAL) as api:
        run_checks(api)
    message = str(error.value)
    assert message.startswith(
        f"local: cannot reach the Kubernetes API at {server} (context dockyard-local of {config}): "
    )
    assert "Connection refused" in message
    assert message.endswith("; start the local cluster: scripts/local-cluster.sh start")
    assert TOKEN not in message
    assert "sentinel-client-key" not in message


def test_an_unreachable_cluster_elsewhere_points_at_kubectl(no_ambient: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        pytest.raises(VerifierError, match=r"\(kubectl --context staging cluster-info\)$"),
        connect("staging", kubeconfig=kubeconfig(f"http://127.0.0.1:{port}"), context="staging") as api,
    ):
        run_checks(api)


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (
            401,
            f"token {TOKEN} is not valid",  # a server that quotes what it was sent: still masked
            "staging: the Kubernetes API at {server} answered HTTP 401 Unauthorized: token *** is not valid when "
            "asked to read Deployment dockyard-app-staging/dockyard-app-stable; the credentials of context staging "
            "are not accepted: renew them in the stack's dockyard:kubeconfig secret",
        ),
        (
            403,
            'deployments.apps "dockyard-app-stable" is forbidden: User "verifier" cannot get resource',
            "staging: the Kubernetes API at {server} answered HTTP 403 Forbidden: deployments.apps "
            '"dockyard-app-stable" is forbidden: User "verifier" cannot get resource when asked to read Deployment '
            "dockyard-app-staging/dockyard-app-stable; the user of context staging needs get and list on deployments, "
            "pods, events and endpointslices (discovery.k8s.io) in namespace dockyard-app-staging",
        ),
        (
            500,
            "etcdserver: request timed out",
            "staging: the Kubernetes API at {server} answered HTTP 500 Internal Server Error: etcdserver: request "
            "timed out when asked to read Deployment dockyard-app-staging/dockyard-app-stable; try again, and if it "
            "persists: check that the cluster is up and reachable from here (kubectl --context staging cluster-info)",
        ),
    ],
)
def test_refusals_say_what_was_refused_and_what_to_do(
    api_server: ApiServer, no_ambient: Path, status: int, message: str, expected: str
) -> None:
    api_server.refuse = (status, message)
    with (
        pytest.raises(VerifierError) as error,
        connect("staging", kubeconfig=kubeconfig(api_server.url), context="staging") as api,
    ):
        run_checks(api)
    assert str(error.value) == expected.format(server=api_server.url)
    assert TOKEN not in str(error.value)


def test_a_missing_deployment_is_a_failed_check_not_an_error(api_server: ApiServer, no_ambient: Path) -> None:
    api_server.deployment = None
    with connect("staging", kubeconfig=kubeconfig(api_server.url), context="staging") as api:
        checks = run_checks(api)
    assert checks["rollout"].detail == f"dockyard-app-stable: no such Deployment in namespace {NAMESPACE}"
    assert not checks["pods"].passed
    assert not checks["endpoints"].passed, "its Service sends traffic to pods no check vouched for"


def test_an_answer_the_client_cannot_read_names_the_field(api_server: ApiServer, no_ambient: Path) -> None:
    del api_server.pods[0]["status"]["containerStatuses"][0]["restartCount"]  # the API always sends it
    with (
        pytest.raises(VerifierError) as error,
        connect("staging", kubeconfig=kubeconfig(api_server.url), context="staging") as api,
    ):
        run_checks(api)
    assert str(error.value) == (
        f"staging: the answer of the Kubernetes API at {api_server.url} to list pods in namespace {NAMESPACE} does "
        f"not fit the kubernetes client {kubernetes.__version__} (V1ContainerStatus.restartCount: Input should be a "
        "valid integer)"
    )


def test_a_pods_warning_events_are_read_through_the_official_client(api_server: ApiServer, no_ambient: Path) -> None:
    (first, second, *_) = [pod["metadata"]["name"] for pod in api_server.pods]
    api_server.pods[0]["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    probe = "Readiness probe failed: HTTP probe failed with statuscode: 503"

    def event(kind: str, reason: str, message: str, at: str) -> dict[str, Any]:
        involved = {"kind": "Pod", "name": first, "namespace": NAMESPACE}
        meta = {"name": f"{first}.{reason}.{at[-3:-1]}", "namespace": NAMESPACE}
        return {"metadata": meta, "involvedObject": involved, "type": kind, "reason": reason, "message": message,
                "lastTimestamp": at}  # fmt: skip

    api_server.events[first] = [
        event("Warning", "Unhealthy", probe, "2026-12-05T10:00:09Z"),
        event("Normal", "Pulled", "Successfully pulled image", "2026-12-05T10:00:01Z"),
    ]
    # A ready pod whose startup probe once failed: not why anything does not serve.
    api_server.events[second] = [event("Warning", "Unhealthy", "Startup probe failed: connection refused", "...0Z")]
    with connect("staging", kubeconfig=kubeconfig(api_server.url), context="staging") as api:
        found = read_reasons(api, NAMESPACE, ["dockyard-app-stable"])
    assert found == [f"pod {first}: {probe}"]
    asked = [query for path, query, _ in api_server.requests if path.endswith("/events")]
    assert [query["fieldSelector"] for query in asked] == [[f"involvedObject.kind=Pod,involvedObject.name={first}"]]


def test_requests_through_the_service_go_by_the_api_servers_proxy(api_server: ApiServer, no_ambient: Path) -> None:
    """The app's answers come back as they are (its 503 too); the proxy's own refusal is no answer, with its reason."""
    api_server.app = {"/": (200, '{"app": "dockyard"}'), "/health": (503, '{"status": "failing"}')}
    with connect("staging", kubeconfig=kubeconfig(api_server.url), context="staging") as api:
        assert api.get_through_service(NAMESPACE, SERVICE, "/") == ServiceAnswer(200, '{"app": "dockyard"}')
        assert api.get_through_service(NAMESPACE, SERVICE, "/health") == ServiceAnswer(503, '{"status": "failing"}')
        api_server.app = {}
        refused = api.get_through_service(NAMESPACE, SERVICE, "/health")
    assert refused == ServiceAnswer(0, f'the API server: no endpoints available for service "{SERVICE}"')
    assert [path for path, _, _ in api_server.requests] == [
        f"/api/v1/namespaces/{NAMESPACE}/services/{SERVICE}:http/proxy/",
        f"/api/v1/namespaces/{NAMESPACE}/services/{SERVICE}:http/proxy/health",
        f"/api/v1/namespaces/{NAMESPACE}/services/{SERVICE}:http/proxy/health",
    ]
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in api_server.requests)
