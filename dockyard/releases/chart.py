"""A Helm chart from the objects a stack renders: render mode's manifests, made templates (pure).

:func:`make_chart` takes the rendered objects and returns the chart's files. ``helm template`` of the chart gives
back the same objects, except for what Helm owns and what a chart must not hold:

- each Deployment's image is ``.Values.images.<track>`` (its ``app.kubernetes.io/version`` label follows it), and
  ``values.schema.json`` refuses any value that is not pinned to a ``sha256`` digest;
- Secret values are never in the chart (it is pushed to a registry): each is ``.Values.secrets.<role>.<key>``, given
  at install time and ``required``;
- ``app.kubernetes.io/managed-by`` is ``{{ .Release.Service }}`` (Helm), and every object carries ``helm.sh/chart``.

The chart keeps the stack's Namespace (it carries the ``restricted`` pod-security label) and every object names its
namespace, as render mode writes them: Helm's release record goes to a namespace that already exists.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from dockyard.releases.errors import DockyardError
from dockyard_components.image_ref import ImageReferenceError, parse_image_reference
from dockyard_components.k8s_specs import TRACK_LABEL, version_label

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
VERSION_LABEL = "app.kubernetes.io/version"
#: The label Helm's own chart starters put on every object: which chart and version made it.
CHART_LABEL = "helm.sh/chart"
#: What values.schema.json allows as an image: a reference pinned to a sha256 digest, never a tag alone.
DIGEST_PINNED_PATTERN = r"^[^@\s]+@sha256:[0-9a-f]{64}$"
#: The values key of each Secret type the app renders: its own settings, and the registry pull credentials.
SECRET_ROLES = {"Opaque": "app", "kubernetes.io/dockerconfigjson": "imagePull"}

HELPERS = """\
{{/* helm.sh/chart: the chart's name and version, label-safe (63 characters, ending alphanumeric). */}}
{{- define "dockyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" | trimSuffix "." -}}
{{- end -}}

{{/* app.kubernetes.io/version of a digest-pinned image, as render mode writes it: sha256-<first 12 hex>. */}}
{{- define "dockyard.version" -}}
{{- printf "sha256-%s" (trunc 12 (last (splitList "@sha256:" .))) -}}
{{- end -}}
"""


class ChartError(DockyardError):
    """The rendered objects cannot become a chart (a tag-only image, an unknown Secret, no release yet)."""


@dataclass(frozen=True)
class ChartRelease:
    """What names and versions a chart: the stack's app and the release it serves."""

    app: str
    stack: str
    #: The digest-pinned image the stack serves: the chart's appVersion, and its version's suffix.
    image: str

    @property
    def name(self) -> str:
        return f"{self.app}-{self.stack}"[:63].rstrip("-")

    @property
    def version(self) -> str:
        """The chart version's release part: SemVer 2 with the digest as the pre-release, ``0.0.0-sha256-<12 hex>``
        (the chart's own version adds its content's, ``.c<10 hex>``)."""
        return f"0.0.0-{version_label(self.image)}"


class _Templater:
    """Swaps values for placeholders while an object is dumped, then the placeholders for template actions."""

    PREFIX = "DOCKYARD_HELM_PLACEHOLDER_"

    def __init__(self) -> None:
        self.actions: dict[str, str] = {}

    def action(self, expression: str) -> str:
        token = f"{self.PREFIX}{len(self.actions):04d}"
        self.actions[token] = "{{ " + expression + " }}"
        return token

    def render(self, document: Mapping[str, Any]) -> str:
        head = {key: document[key] for key in ("apiVersion", "kind", "metadata") if key in document}
        ordered = {**head, **{key: document[key] for key in sorted(document) if key not in head}}
        text = yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False, width=1_000_000)
        # A literal "{{" in a value (an env setting, an annotation) would be read as a template action.
        text = text.replace("{{", '{{ "{{" }}')
        if text.count(self.PREFIX) != len(self.actions):
            raise ChartError(f"{document.get('kind')} {document['metadata'].get('name')} holds {self.PREFIX}")
        for token, action in self.actions.items():
            # A plain upper-case word: YAML writes it unquoted, so the action is the whole value.
            text = text.replace(token, action)
        return text


def _track(deployment: Mapping[str, Any]) -> str:
    template_labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
    track = template_labels.get(TRACK_LABEL) or (deployment["metadata"].get("labels") or {}).get(TRACK_LABEL)
    if not isinstance(track, str) or not re.fullmatch(r"[a-z][a-z0-9]*", track):
        raise ChartError(f"Deployment {deployment['metadata'].get('name')} has no {TRACK_LABEL} label")
    return track


def _digest_pinned(image: str, where: str) -> str:
    try:
        pinned = parse_image_reference(image).is_digest_pinned
    except ImageReferenceError as error:
        raise ChartError(f"{where}: {error}") from None
    if not pinned:
        raise ChartError(f"{where} runs {image}, which is not digest-pinned; a chart pins sha256 digests")
    return image


def _labels(labels: dict[str, Any] | None, helm: _Templater, top_level: bool) -> dict[str, Any] | None:
    if labels is None and not top_level:
        return None
    labels = dict(labels or {})
    if top_level or MANAGED_BY_LABEL in labels:
        labels[MANAGED_BY_LABEL] = helm.action(".Release.Service | quote")
    if top_level:
        labels[CHART_LABEL] = helm.action('include "dockyard.chart" . | quote')
    return labels


def _deployment(obj: dict[str, Any], helm: _Templater, images: dict[str, str]) -> None:
    name = obj["metadata"].get("name")
    track = _track(obj)
    if track in images:
        raise ChartError(f"two Deployments run the {track} track")
    pod = obj["spec"]["template"]
    found = {container["image"] for container in pod["spec"]["containers"]}
    if len(found) != 1:
        raise ChartError(f"Deployment {name} runs {len(found)} images; a chart's track runs one")
    images[track] = _digest_pinned(found.pop(), f"Deployment {name}")
    image = f'(index .Values.images "{track}")'
    for container in pod["spec"]["containers"]:
        container["image"] = helm.action(f"{image} | quote")
    for metadata in (obj["metadata"], pod["metadata"]):
        if VERSION_LABEL in (metadata.get("labels") or {}):
            metadata["labels"][VERSION_LABEL] = helm.action(f'include "dockyard.version" {image} | quote')


def _secret(obj: dict[str, Any], helm: _Templater, secrets: dict[str, set[str]]) -> None:
    kind = obj.get("type", "Opaque")
    role = SECRET_ROLES.get(kind)
    if role is None:
        raise ChartError(f"Secret {obj['metadata'].get('name')} has type {kind}; allowed: {', '.join(SECRET_ROLES)}")
    keys = secrets.setdefault(role, set())
    # Values as given at install time are plain strings: `data` wants them base64-encoded, `stringData` as they are.
    for field, encode in (("data", " | b64enc"), ("stringData", "")):
        for key in obj.get(field) or {}:
            keys.add(key)
            message = json.dumps(f"secrets.{role}[{key}]: give the value at install time (--values from your store)")
            value = f'index .Values.secrets "{role}" {json.dumps(key)}'
            obj[field][key] = helm.action(f"required {message} ({value}){encode} | quote")


def _schema(images: Mapping[str, str], secrets: Mapping[str, set[str]]) -> dict[str, Any]:
    strings = {"type": "string"}
    return {
        "$comment": "Written by dockyard chart: the images are digest-pinned; secrets are given at install time.",
        "type": "object",
        "required": ["images", "secrets"],
        "additionalProperties": False,
        "properties": {
            "images": {
                "type": "object",
                "description": "The image each release track runs, pinned to a sha256 digest (a tag is refused).",
                "required": sorted(images),
                "additionalProperties": False,
                "properties": {track: {"type": "string", "pattern": DIGEST_PINNED_PATTERN} for track in sorted(images)},
            },
            "secrets": {
                "type": "object",
                "required": sorted(secrets),
                "additionalProperties": False,
                "properties": {
                    role: {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {key: strings for key in sorted(keys)},
                    }
                    for role, keys in sorted(secrets.items())
                },
            },
        },
    }


def _template_name(obj: Mapping[str, Any], taken: set[str]) -> str:
    stem = f"{str(obj['kind']).lower()}-{obj['metadata'].get('name', 'unnamed')}"
    name, n = f"templates/{stem}.yaml", 1
    while name in taken:
        n += 1
        name = f"templates/{stem}-{n}.yaml"
    taken.add(name)
    return name


@dataclass(frozen=True)
class Chart:
    """A chart's name, the version its Chart.yaml names, and its files by path inside the chart directory."""

    name: str
    version: str
    files: Mapping[str, str]


def make_chart(release: ChartRelease, objects: Sequence[Mapping[str, Any]]) -> Chart:
    """The chart of ``objects``; :class:`ChartError` when an object cannot be made a template. ``release.image`` must
    be one of the images the Deployments run."""
    helm_objects: list[tuple[dict[str, Any], _Templater]] = []
    images: dict[str, str] = {}
    secrets: dict[str, set[str]] = {}
    for original in objects:
        obj = copy.deepcopy(dict(original))
        helm = _Templater()
        obj["metadata"] = dict(obj.get("metadata") or {})
        obj["metadata"]["labels"] = _labels(obj["metadata"].get("labels"), helm, top_level=True)
        template = (obj.get("spec") or {}).get("template")
        if isinstance(template, dict) and isinstance(template.get("metadata"), dict):
            template["metadata"]["labels"] = _labels(template["metadata"].get("labels"), helm, top_level=False)
        if obj.get("kind") == "Deployment":
            _deployment(obj, helm, images)
        elif obj.get("kind") == "Secret":
            _secret(obj, helm, secrets)
        helm_objects.append((obj, helm))
    if not images:
        raise ChartError(f"{release.stack} runs no Deployment yet (no release): there is nothing to chart")
    if _digest_pinned(release.image, f"the release of {release.stack}") not in images.values():
        raise ChartError(f"no Deployment of {release.stack} runs its release {release.image}")
    values = (
        "# The image each release track runs, pinned to a sha256 digest (values.schema.json refuses a tag).\n"
        + yaml.safe_dump({"images": dict(sorted(images.items()))}, sort_keys=False)
        + "# Secret values are never in the chart: give them at install time (--values from your secret store).\n"
        + yaml.safe_dump({"secrets": {role: {} for role in sorted(secrets)}}, sort_keys=False)
    )
    files = {
        "values.yaml": values,
        "values.schema.json": json.dumps(_schema(images, secrets), indent=2) + "\n",
        "templates/_helpers.tpl": HELPERS,
    }
    taken: set[str] = set()
    for obj, helm in helm_objects:
        files[_template_name(obj, taken)] = helm.render(obj)
    # The release's digest, then the content's: a config change without a new release is a new version too, never
    # different content under a version a GitOps controller has already pulled. ("c": a pre-release part that is all
    # digits must not start with 0.)
    content = hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()
    version = f"{release.version}.c{content[:10]}"
    chart = {
        "apiVersion": "v2",
        "name": release.name,
        "description": f"{release.app} as the {release.stack} stack renders it, pinned to its release digests",
        "type": "application",
        "version": version,
        "appVersion": str(parse_image_reference(release.image).digest),
    }
    return Chart(release.name, version, {"Chart.yaml": yaml.safe_dump(chart, sort_keys=False), **files})
