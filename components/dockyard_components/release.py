"""The vocabulary of an app's release tracks: track names, replica splits, the names of Deployments and Services.

The strategy models in :mod:`dockyard_components.app_spec` say which tracks each strategy runs and which track the
app's Service selects; they answer in the terms defined here. Pure: no Pulumi, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

ImageT = TypeVar("ImageT")
Color = Literal["blue", "green"]
COLORS: tuple[Color, Color] = ("blue", "green")

#: Track names (the ``dockyard.dev/track`` label and the Deployment name suffix).
STABLE = "stable"
CANARY = "canary"

#: Suffixes of the Services beside the app's own: the idle color's (blue-green) and the canary's (with an Ingress).
PREVIEW_SERVICE = "preview"
CANARY_SERVICE = "canary"


def other_color(color: Color) -> Color:
    return "green" if color == "blue" else "blue"


@dataclass(frozen=True)
class Track:
    """One Deployment of the app: ``stable`` (rolling), ``stable`` and ``canary``, or ``blue`` and ``green``."""

    name: str
    replicas: int
    #: The image the track runs; None for the track that runs the app's release image (the component's ``image``
    #: argument), which only the program knows (a building program, only after the build).
    image: str | None = None

    def image_or(self, release: ImageT) -> ImageT | str:
        """The image this track runs, given the app's release image."""
        return release if self.image is None else self.image


@dataclass(frozen=True)
class SideService:
    """A Service beside the app's own that selects one track alone: the idle color's preview, the canary's own."""

    role: str
    """Its name suffix and role (:data:`PREVIEW_SERVICE`, :data:`CANARY_SERVICE`)."""
    track: str
    """The one track it selects."""
    ingress_annotations: Mapping[str, str] | None = field(default=None)
    """Annotations of a second Ingress that sends a share of the app's traffic to it (None: no Ingress of its own)."""


def split_replicas(total: int, weight: int, has_canary: bool) -> tuple[int, int]:
    """(stable, canary) replicas so the canary's share of pods is at least ``weight`` percent.

    The canary gets ``ceil(total * weight / 100)`` pods (so any weight above 0 gets at least one), and the stable
    track keeps at least one pod unless the weight is 100.
    """
    if not 0 <= weight <= 100:
        raise ValueError(f"canary weight {weight} is outside 0..100")
    if not has_canary or weight == 0:
        return total, 0
    canary = math.ceil(total * weight / 100)
    stable = total - canary
    if stable == 0 and weight < 100:
        stable, canary = 1, max(total - 1, 1)
    return stable, canary


def service_name(app: str, role: str | None = None) -> str:
    """The app's Service (``role`` None) or one of the Services beside it (``preview``, ``canary``)."""
    return f"{app}-{role}" if role else app


def deployment_name(app: str, track: str) -> str:
    return f"{app}-{track}"
