"""The vocabulary of a release, shared by the program and the ``dockyard`` CLI: tracks, replica splits, config writes.

The strategy models in :mod:`dockyard.config` say what a release means for each strategy (which image a stack
serves, which config keys a promotion writes, which tracks exist, how a canary steps and a blue-green pair switches);
they answer in the terms defined here. Pure: no Pulumi, no I/O, so the CLI and the program agree by construction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

ImageT = TypeVar("ImageT")
Color = Literal["blue", "green"]
COLORS: tuple[Color, Color] = ("blue", "green")

#: Config paths under ``dockyard:`` that releases write, as ``pulumi config set --path`` spells them.
IMAGE_REF = "image.ref"
STRATEGY = "kubernetes.strategy"
CANARY_IMAGE = f"{STRATEGY}.canaryImage"
CANARY_WEIGHT = f"{STRATEGY}.weight"
ACTIVE_COLOR = f"{STRATEGY}.activeColor"

#: Track names (the ``dockyard.dev/track`` label and the Deployment name suffix).
STABLE = "stable"
CANARY = "canary"

#: Suffixes of the Services beside the app's own: the idle color's (blue-green) and the canary's (with an Ingress).
PREVIEW_SERVICE = "preview"
CANARY_SERVICE = "canary"


def color_image_key(color: Color) -> str:
    """``kubernetes.strategy.blueImage`` or ``...greenImage``."""
    return f"{STRATEGY}.{color}Image"


def other_color(color: Color) -> Color:
    return "green" if color == "blue" else "blue"


@dataclass(frozen=True)
class Track:
    """One Deployment of the app: ``stable`` (rolling), ``stable`` and ``canary``, or ``blue`` and ``green``."""

    name: str
    replicas: int
    #: The image the track runs; None for the track that runs the stack's release image (``image.ref``, or what
    #: a building stack pushed), which only the program knows before the build.
    image: str | None = None

    def image_or(self, release: ImageT) -> ImageT | str:
        """The image this track runs, given the stack's release image."""
        return release if self.image is None else self.image


@dataclass(frozen=True)
class Candidate:
    """A release on its way in but not yet fully served: the canary track, or the idle color of a blue-green pair."""

    track: str
    image: str
    #: Whether the track takes user traffic while it is a candidate (a canary does, an idle color does not).
    serving: bool
    #: The Service that sends traffic to this track alone (``preview`` for an idle color); None: the app's own.
    service: str | None = None


ConfigValue = str | int | None


@dataclass(frozen=True)
class ConfigWrite:
    """Values a release move sets in a stack's config: ``dockyard:`` path → value, ``None`` removes the key.

    ``what`` names the move for people (``canary 25%``, ``switch to green``).
    """

    what: str
    values: Mapping[str, ConfigValue]


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
