"""A merge request's environment as config: its stack's name, its lifetime, and its stack file made from a template.

``dockyard env create --from dev --mr 42 --image repo@sha256:...`` makes the stack ``dev-mr-42``
(``Pulumi.dev-mr-42.yaml``): the template's file with what must differ for a second copy of it on the same cluster
and registry, the merge request's digest, and ``dockyard:mergeRequest`` (id, template, expiry). Everything here is
pure; :mod:`dockyard.releases.mr_env` runs the engine, and the pipeline generator reads the names and the default TTL.

Why ``<template>-mr-<id>``: the stack names the template it was made from (its secrets decrypt with the template's
passphrase, since the file carries the template's ``encryptionsalt``), so a destroy or sweep that finds the stack in
the backend but no file (a CI job on a fresh checkout) can make the file again from the template.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from dockyard.model.config import NAMESPACE, EnvironmentConfig, MergeRequestConfig, written_keys
from dockyard.model.durations import parse_duration

#: How long an environment lives unless ``--ttl`` says otherwise; each re-run for the merge request extends it.
DEFAULT_TTL = "72h"
#: An environment kept longer is a forgotten one: a merge request open that long gets its env back on its next push.
MAX_TTL = timedelta(days=30)
_STACK = re.compile(r"^(?P<template>.+)-mr-(?P<mr>[1-9][0-9]{0,9})$")
_MR = re.compile(r"^[1-9][0-9]{0,9}$")


def stack_name(template: str, mr: int) -> str:
    """The stack of merge request ``mr``'s environment made from ``template``."""
    return f"{template}-mr-{mr}"


def parse_stack_name(name: str) -> tuple[str, int] | None:
    """``(template, mr)`` of a merge request environment's stack name; None for any other stack."""
    match = _STACK.match(name)
    return (match["template"], int(match["mr"])) if match else None


def parse_mr(text: str) -> int:
    """A merge (pull) request number: GitLab's ``CI_MERGE_REQUEST_IID``, GitHub's pull request number."""
    if not _MR.match(text.strip()):
        raise ValueError(f"--mr {text!r}: expected the merge request's number, e.g. 42")
    return int(text)


def parse_ttl(text: str) -> timedelta:
    """``--ttl``: ``90m``, ``72h``, ``7d``, ``2w``; at most :data:`MAX_TTL`."""
    ttl = parse_duration(text, "--ttl")
    if ttl > MAX_TTL:
        raise ValueError(f"--ttl {text!r}: longer than {MAX_TTL.days}d; allowed: at most {MAX_TTL.days}d")
    return ttl


def expired(record: MergeRequestConfig, now: datetime) -> bool:
    """Whether ``dockyard env sweep`` at ``now`` destroys the environment: its expiry has passed."""
    return record.expires <= now


def timestamp(moment: datetime) -> str:
    """An expiry as the stack file holds it: UTC, to the second, ``Z``."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def recorded(config: Mapping[str, Any]) -> MergeRequestConfig | None:
    """The ``dockyard:mergeRequest`` of a stack file's written keys (:func:`written_keys`), None when it has none or
    it does not validate (such a stack is never swept: nothing says it expired)."""
    value = config.get("mergeRequest")
    try:
        return MergeRequestConfig.model_validate(value, by_alias=True) if isinstance(value, dict) else None
    except ValidationError:
        return None


def derived_document(
    template: str,
    document: Mapping[str, Any],
    env: EnvironmentConfig,
    *,
    mr: int,
    image: str | None,
    expires: datetime,
) -> dict[str, Any]:
    """The stack file of merge request ``mr``'s environment, from the template's parsed file and validated config.

    Kept: the tier and its rules, the registry, resources, settings, the trust policy, every secret (as ciphertext,
    with the template's ``encryptionsalt``). Changed, so two copies never collide: the namespace
    (``<template's namespace>-mr-<id>``), the Ingress host (``mr-<id>-`` before its first label: the same wildcard
    DNS name and certificate as the template's), the render directory. Dropped: the build (it deploys ``image``),
    a canary or blue-green strategy (one digest, no release history: rolling), the promotion chain, GitHub's
    environment and workflows (the template's own), and an Ingress TLS Secret (it lives in the template's namespace).
    """
    result = copy.deepcopy(dict(document))
    config: dict[str, Any] = dict(result.get("config") or {})
    keys = written_keys(result)
    kubernetes: dict[str, Any] = copy.deepcopy(keys.get("kubernetes") or {})
    kubernetes["namespace"] = f"{env.kubernetes.namespace_of(template)}-mr-{mr}"
    kubernetes.pop("renderDirectory", None)
    if env.kubernetes.strategy.type != "rolling":
        kubernetes["strategy"] = {"type": "rolling"}
    if isinstance(kubernetes.get("ingress"), dict):
        ingress = kubernetes["ingress"]
        ingress.pop("tlsSecretName", None)
        ingress["host"] = f"mr-{mr}-{ingress['host']}"
    keys |= {
        "image": {"ref": image} if image else {},
        "kubernetes": kubernetes,
        "mergeRequest": {"id": mr, "template": template, "expires": timestamp(expires)},
    }
    for dropped in ("github", "promotion"):
        keys.pop(dropped, None)
    prefix = f"{NAMESPACE}:"
    others = {key: value for key, value in config.items() if not key.startswith(prefix)}
    result["config"] = others | {f"{prefix}{key}": value for key, value in keys.items()}
    return result
