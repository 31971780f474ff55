"""The live Kubernetes API behind :class:`~dockyard.verify.kube.ClusterReader`: the official ``kubernetes`` client.

:class:`KubeApi` answers the cluster checks' reads and turns every failure into a :class:`VerifierError` that names the
stack, the API server and the next step, with no credential in it. :func:`connect` reads the stack's
``dockyard:kubeconfig`` secret when it has one, else the ambient kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``)
with the stack's ``kubernetes.context``: the same cluster the Pulumi provider deploys to.

Apart from the checks because the client takes about half a second to import, which only a cluster read should pay.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import kubernetes
import urllib3
import yaml
from kubernetes import client as kube_client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, ValidationError

from dockyard.model.config import LOCAL_CLUSTER_CONTEXT
from dockyard.model.stack import StackView
from dockyard.verify.common import VerifierError
from dockyard.verify.kube import SERVICE_NAME_LABEL, ServiceAnswer, read_reasons

#: (connect, read) seconds for each API request.
REQUEST_TIMEOUT = (5.0, 20.0)
#: Fields of a kubeconfig user that hold credentials; their values are masked in every message.
_SECRET_FIELDS = frozenset(
    {"token", "password", "client-key-data", "id-token", "refresh-token", "client-secret", "access-token"}
)
_STORE_KUBECONFIG = "store one for the stack: pulumi config set --secret dockyard:kubeconfig --stack {stack} < FILE"
_LOCAL_KUBECONFIG = "scripts/local-cluster.sh start writes it; source scripts/local-env.sh exports its KUBECONFIG"
_T = TypeVar("_T")


class KubeconfigError(VerifierError):
    """No kubeconfig for the stack, no such context in it, or one the client cannot use; the message says which."""


def _plain(found: BaseModel) -> dict[str, Any]:
    """An object of the client as the API's JSON (camelCase keys, unset fields left out)."""
    return found.model_dump(by_alias=True, exclude_none=True, mode="json")


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def next_step(context: str | None) -> str:
    """What to do when the cluster of ``context`` does not answer."""
    if context == LOCAL_CLUSTER_CONTEXT:
        return "start the local cluster: scripts/local-cluster.sh start"
    flag = f" --context {context}" if context else ""
    return f"check that the cluster is up and reachable from here (kubectl{flag} cluster-info)"


@dataclass(frozen=True)
class Masker:
    """Replaces every credential of a kubeconfig with ``***`` in a text that may quote it."""

    secrets: tuple[str, ...] = ()

    @classmethod
    def of(cls, documents: Sequence[Mapping[str, Any]]) -> Masker:
        found: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, Mapping):
                for key, value in node.items():
                    if key in _SECRET_FIELDS and isinstance(value, str):
                        found.add(value)
                    elif key == "env" and isinstance(value, list):  # an exec plugin's environment
                        found.update(str(item.get("value")) for item in value if isinstance(item, Mapping))
                    else:
                        walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        for document in documents:
            walk(document.get("users") or [])
        # Longest first, so a secret that contains another is masked whole; very short values are no secret.
        return cls(tuple(sorted((s for s in found if len(s) >= 6), key=len, reverse=True)))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


@dataclass
class KubeApi:
    """:class:`ClusterReader` on the official client; every failure is a :class:`VerifierError` naming the stack,
    the API server and the next step, with no credential in it."""

    api: kube_client.ApiClient
    stack: str
    context: str | None
    source: str
    mask: Masker
    timeout: tuple[float, float] = REQUEST_TIMEOUT

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    @property
    def _context(self) -> str:
        return f"context {self.context}" if self.context else "the current context"

    def read_deployment(self, namespace: str, name: str, /) -> Mapping[str, Any] | None:
        apps = kube_client.AppsV1Api(self.api)
        found = self._ask(
            namespace,
            f"read Deployment {namespace}/{name}",
            lambda: apps.read_namespaced_deployment(name, namespace, _request_timeout=self.timeout),
        )
        return None if found is None else _plain(found)

    def list_pods(self, namespace: str, selector: Mapping[str, str], /) -> list[Mapping[str, Any]]:
        core = kube_client.CoreV1Api(self.api)
        found = self._ask(
            namespace,
            f"list pods in namespace {namespace}",
            lambda: core.list_namespaced_pod(
                namespace, label_selector=_selector(selector), _request_timeout=self.timeout
            ),
        )
        return [_plain(pod) for pod in found.items] if found else []

    def list_pod_events(self, namespace: str, pod: str, /) -> list[Mapping[str, Any]]:
        core = kube_client.CoreV1Api(self.api)
        found = self._ask(
            namespace,
            f"list events of pod {namespace}/{pod}",
            lambda: core.list_namespaced_event(
                namespace,
                field_selector=f"involvedObject.kind=Pod,involvedObject.name={pod}",
                _request_timeout=self.timeout,
            ),
        )
        events = [_plain(event) for event in found.items] if found else []
        return sorted(events, key=lambda event: str(event.get("lastTimestamp") or event.get("eventTime") or ""))

    def list_endpoint_slices(self, namespace: str, service: str, /) -> list[Mapping[str, Any]]:
        discovery = kube_client.DiscoveryV1Api(self.api)
        found = self._ask(
            namespace,
            f"list EndpointSlices in namespace {namespace}",
            lambda: discovery.list_namespaced_endpoint_slice(
                namespace, label_selector=f"{SERVICE_NAME_LABEL}={service}", _request_timeout=self.timeout
            ),
        )
        return [_plain(endpoint_slice) for endpoint_slice in found.items] if found else []

    def get_through_service(self, namespace: str, service: str, path: str, /) -> ServiceAnswer:
        """GET ``path`` of the Service's ``http`` port through the API server's service proxy. The app's own answer
        comes back as it is (a 503 of its health path too); the proxy's (no ready endpoint, no such Service) and a
        request that got no answer are status 0 with the reason."""
        core = kube_client.CoreV1Api(self.api)
        try:
            # Unread (_preload_content=False): the client would parse a JSON body and hand back its repr.
            response = cast(
                urllib3.BaseHTTPResponse,
                core.connect_get_namespaced_service_proxy_with_path(
                    f"{service}:http",
                    namespace,
                    path.lstrip("/"),
                    _preload_content=False,
                    _request_timeout=self.timeout,
                ),
            )
        except ApiException as error:
            status, text = int(error.status or 0), str(error.body or error.reason or "")
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                answer = json.loads(text)
                if answer.get("kind") == "Status":  # the API server's own answer, not the app's
                    hint = f" (the user of {self._context} needs get on services/proxy)" if status == 403 else ""
                    return ServiceAnswer(0, self.mask(f"the API server: {answer.get('message') or status}{hint}"))
            return ServiceAnswer(status, text[:500])
        except urllib3.exceptions.HTTPError as error:
            return ServiceAnswer(0, self.mask(self._unreachable(f"{error.__class__.__name__}: {error}")))
        return ServiceAnswer(int(response.status), response.data.decode(errors="replace")[:500])

    def _ask(self, namespace: str, what: str, call: Callable[[], _T]) -> _T | None:
        """``call()``, which asks the API ``what`` in ``namespace``; None when the API answers 404."""
        try:
            return call()
        except ApiException as error:
            if error.status == 404:
                return None
            raise VerifierError(self.mask(self._refused(namespace, what, error))) from None
        except urllib3.exceptions.HTTPError as error:
            reason = getattr(error, "reason", None) or error
            raise VerifierError(self.mask(self._unreachable(f"{reason.__class__.__name__}: {reason}"))) from None
        except ValidationError as error:  # an answer the client's models reject: a server this client cannot read
            first = error.errors(include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise VerifierError(
                f"{self.stack}: the answer of the Kubernetes API at {self.server} to {what} does not fit the "
                f"kubernetes client {kubernetes.__version__} ({error.title}.{where}: {first['msg']})"
            ) from None

    def _unreachable(self, reason: str) -> str:
        return (
            f"{self.stack}: cannot reach the Kubernetes API at {self.server} ({self._context} of {self.source}): "
            f"{reason}; {next_step(self.context)}"
        )

    def _refused(self, namespace: str, what: str, error: ApiException) -> str:
        status = int(error.status or 0)
        if status == 0:  # the client's wrapping of a TLS failure: nothing reached the API
            return self._unreachable(" ".join(str(error.reason or "").split()))
        message = ""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            message = str(json.loads(error.body or "").get("message") or "")
        answered = f"HTTP {status} {error.reason or ''}".strip() + (f": {message[:200]}" if message else "")
        head = f"{self.stack}: the Kubernetes API at {self.server} answered {answered} when asked to {what}"
        if status == 401:
            return f"{head}; the credentials of {self._context} are not accepted: renew them in {self.source}"
        if status == 403:
            return (
                f"{head}; the user of {self._context} needs get and list on deployments, pods, events and "
                f"endpointslices (discovery.k8s.io) in namespace {namespace}"
            )
        return f"{head}; try again, and if it persists: {next_step(self.context)}"


def ambient_kubeconfig() -> list[Path]:
    """Where kubectl and the Pulumi provider look without a kubeconfig of the stack's own: every path in
    ``$KUBECONFIG``, else ``~/.kube/config``."""
    listed = [Path(p).expanduser() for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return listed or [Path.home() / ".kube" / "config"]


def _parsed(stack: str, text: str, source: str) -> dict[str, Any]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        # The parser's message quotes the offending line, which may hold a key: give the position only.
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise KubeconfigError(f"{stack}: {source} is not valid YAML{where}") from None
    if not isinstance(document, dict):
        raise KubeconfigError(f"{stack}: {source} is not a kubeconfig (a YAML mapping with clusters and contexts)")
    return document


def _no_kubeconfig(stack: str, context: str | None) -> str:
    where = os.pathsep.join(str(p) for p in ambient_kubeconfig())
    step = _LOCAL_KUBECONFIG if context == LOCAL_CLUSTER_CONTEXT else f"export KUBECONFIG, or {_STORE_KUBECONFIG}"
    return f"{stack}: no dockyard:kubeconfig secret and no kubeconfig at {where}; " + step.format(stack=stack)


def _missing_context(stack: str, source: str, documents: Sequence[Mapping[str, Any]], context: str | None) -> str:
    """Why ``context`` cannot be used from ``documents``; empty when it can."""
    names = [str(c.get("name")) for d in documents for c in d.get("contexts") or [] if isinstance(c, Mapping)]
    if context is None:
        if any(d.get("current-context") for d in documents):
            return ""
        return f"{stack}: {source} has no current-context and the stack names none; set dockyard:kubernetes.context"
    if context in names:
        return ""
    step = _LOCAL_KUBECONFIG if context == LOCAL_CLUSTER_CONTEXT else f"add it, or {_STORE_KUBECONFIG}"
    return f"{stack}: {source} has no context {context!r} (it has: {', '.join(names) or 'none'}); " + step.format(
        stack=stack
    )


def _from_secret(document: Mapping[str, Any], context: str | None, scratch: str) -> kube_client.ApiClient:
    api: kube_client.ApiClient = kube_config.new_client_from_config_dict(
        config_dict=document, context=context, persist_config=False, temp_file_path=scratch
    )
    return api


def _from_files(files: str, context: str | None, scratch: str) -> kube_client.ApiClient:
    # new_client_from_config takes no temp_file_path, so embedded key data would stay in /tmp until the process
    # exits: this is the same loading with the files kept in ``scratch``.
    configuration = kube_client.Configuration()
    kube_config.load_kube_config(
        config_file=files,
        context=context,
        client_configuration=configuration,
        persist_config=False,
        temp_file_path=scratch,
    )
    return kube_client.ApiClient(configuration)


@contextlib.contextmanager
def connect(stack: str, *, kubeconfig: str | None, context: str | None) -> Iterator[KubeApi]:
    """The API of ``stack``'s cluster: from ``kubeconfig`` (the stack's secret) when given, else from the ambient
    kubeconfig. Certificates and keys the client writes to files live in a private directory removed on exit."""
    with tempfile.TemporaryDirectory(prefix="dockyard-kube-") as scratch:
        if kubeconfig is not None:
            source = "the stack's dockyard:kubeconfig secret"
            documents = [_parsed(stack, kubeconfig, source)]
            load = functools.partial(_from_secret, documents[0], context, scratch)
        else:
            paths = [p for p in ambient_kubeconfig() if p.is_file()]
            if not paths:
                raise KubeconfigError(_no_kubeconfig(stack, context))
            source = os.pathsep.join(str(p) for p in paths)
            documents = [_parsed(stack, p.read_text(), str(p)) for p in paths]
            load = functools.partial(_from_files, source, context, scratch)
        mask = Masker.of(documents)
        problem = _missing_context(stack, source, documents, context)
        if problem:
            raise KubeconfigError(problem)
        try:
            api = load()
        except (kube_config.ConfigException, ValueError, TypeError, KeyError, OSError) as error:
            which = f"context {context}" if context else "the current context"
            raise KubeconfigError(mask(f"{stack}: cannot use {which} of {source}: {error}")) from None
        with contextlib.closing(api):
            yield KubeApi(api, stack, context, source, mask)


def live_reasons(stack: StackView, namespace: str, deployments: Collection[str]) -> list[str]:
    """Why ``deployments``' pods in ``stack``'s cluster are not serving (:func:`.kube.read_reasons`), through the
    same kubeconfig and context the verifier and the provider use."""
    kubeconfig = stack.secret("dockyard:kubeconfig")
    with connect(stack.name, kubeconfig=kubeconfig, context=stack.env.kubernetes.context) as api:
        return read_reasons(api, namespace, deployments)
