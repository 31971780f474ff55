"""How a release moves through each strategy, in Dockyard's stack config: what the ``dockyard`` CLI writes.

The KubernetesApp component's strategy models (:mod:`dockyard_components.app_spec`) say which tracks run; Dockyard's
strategies below extend them with what a release means in a stack's ``dockyard:`` config: which image the stack
serves, which config keys a promotion, a rollback, a canary step or a blue-green switch writes
(:class:`ConfigWrite`), and which release is on its way in (:class:`Candidate`). ``dockyard:kubernetes.strategy``
(:class:`dockyard.model.config.KubernetesConfig`) is validated into these. Pure: no Pulumi, no I/O, so the CLI and the
program agree by construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from dockyard_components import app_spec
from dockyard_components.release import CANARY, COLORS, PREVIEW_SERVICE, Color

#: Config paths under ``dockyard:`` that releases write, as ``pulumi config set --path`` spells them.
IMAGE_REF = "image.ref"
STRATEGY = "kubernetes.strategy"
CANARY_IMAGE = f"{STRATEGY}.canaryImage"
CANARY_WEIGHT = f"{STRATEGY}.weight"
ACTIVE_COLOR = f"{STRATEGY}.activeColor"


def color_image_key(color: Color) -> str:
    """``kubernetes.strategy.blueImage`` or ``...greenImage``."""
    return f"{STRATEGY}.{color}Image"


class ReleaseError(ValueError):
    """A release move the stack's current state does not allow; the message says what the state is."""


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


class DockyardStrategy:
    """What a strategy means in a stack's config, beyond the component's tracks: the image the stack serves and the
    key that names it, what each move writes, the release on its way in, and the rules of the config. The defaults
    are a strategy with one release image (``image.ref``) and nothing beside it; a strategy overrides what differs.
    """

    if TYPE_CHECKING:
        type: str

    def served_image(self, ref: str | None) -> str | None:
        """The image the stack's traffic goes to, given ``image.ref`` (or the build's output on a building stack);
        None: no release serves yet."""
        return ref

    @property
    def served_key(self) -> str:
        """Where the stack's config names the image it serves."""
        return IMAGE_REF

    @property
    def images(self) -> dict[str, str | None]:
        """The images the strategy's own keys name, by config path (digest-pinned in promoted-only tiers)."""
        return {}

    def image_problems(self, builds: bool, ref: str | None) -> list[str]:
        """What the stack's ``image`` section must hold with this strategy: a build, a promoted reference, or neither
        (no release yet: the tracks that run ``image.ref`` run no pods until a promotion writes it)."""
        return []

    def promotion_write(self, image: str) -> ConfigWrite:
        return ConfigWrite("release", {IMAGE_REF: image})

    def rollback_write(self, image: str) -> ConfigWrite:
        return ConfigWrite("roll back", {IMAGE_REF: image})

    @property
    def candidate(self) -> Candidate | None:
        """A release on its way in but not yet fully served (a canary, an idle color)."""
        return None

    @property
    def instant_rollback(self) -> str | None:
        """An image that is still running beside the served one, so rolling back to it is a switch."""
        return None

    def unfinished(self, stack: str) -> list[str]:
        """Why the next release cannot start on ``stack`` yet (a release still in progress)."""
        return []

    @property
    def completion(self) -> tuple[str, str] | None:
        """The move that takes a promoted release all the way to serving, as (a step's name, the ``dockyard``
        command for ``$STACK``); None: a promotion serves at once."""
        return None

    def as_canary(self, stack: str) -> CanaryStrategy:
        """This strategy as a canary, for the canary moves; refused on any other."""
        raise ReleaseError(f"{stack} is not a canary stack ({self.type})")

    def as_blue_green(self, stack: str) -> BlueGreenStrategy:
        """This strategy as a blue-green pair, for the switch; refused on any other."""
        raise ReleaseError(f"{stack} is not a blue-green stack ({self.type})")


# The first docstring line of each strategy is the component's: the README's config reference shows it.


class RollingStrategy(DockyardStrategy, app_spec.RollingStrategy):
    """Kubernetes rolling update.

    A promotion and a rollback both write ``image.ref``; nothing runs beside the served release.
    """


class BlueGreenStrategy(DockyardStrategy, app_spec.BlueGreenStrategy):
    """Two color Deployments, each pinned to its own image; the Service selects ``activeColor``.

    Promotion writes the idle color's image; switching ``activeColor`` then changes only the Service selector,
    and switching back is the instant rollback (the other color still runs the previous release).
    """

    def served_image(self, ref: str | None) -> str | None:
        """The active color's image: the Service selects only that color (None until a switch to a color that
        runs a release)."""
        return self.image_of(self.active)

    @property
    def served_key(self) -> str:
        return color_image_key(self.active)

    @property
    def images(self) -> dict[str, str | None]:
        return {color_image_key(color): self.image_of(color) for color in COLORS}

    def image_problems(self, builds: bool, ref: str | None) -> list[str]:
        if not builds and ref is None:
            return []
        return [
            "image: build or ref set with the blueGreen strategy; allowed: per-color images "
            "(kubernetes.strategy.blueImage / greenImage) that promotion writes"
        ]

    def promotion_write(self, image: str) -> ConfigWrite:
        """A release lands on the idle color; the served traffic does not move until :meth:`switch_write`."""
        return ConfigWrite(f"onto the idle color {self.idle_color}", {color_image_key(self.idle_color): image})

    def switch_write(self) -> ConfigWrite:
        """Flip ``activeColor`` to the idle color: a diff of the Service selectors only."""
        idle = self.image_of(self.idle_color)
        if idle is None:
            raise ReleaseError(f"the idle color {self.idle_color} runs no release; promote one onto it first")
        return ConfigWrite(f"switch to {self.idle_color}", {ACTIVE_COLOR: self.idle_color})

    def rollback_write(self, image: str) -> ConfigWrite:
        """Switch back: the idle color still runs the previous release. Any other image is refused."""
        idle = self.image_of(self.idle_color)
        if image != idle:
            raise ReleaseError(
                f"a blue-green rollback switches back to the idle color {self.idle_color}, which runs "
                f"{idle or 'nothing'}, not {image}; promote {image} onto the idle color and switch to it instead"
            )
        return ConfigWrite(f"switch back to {self.idle_color}", {ACTIVE_COLOR: self.idle_color})

    @property
    def candidate(self) -> Candidate | None:
        idle = self.image_of(self.idle_color)
        return Candidate(self.idle_color, idle, serving=False, service=PREVIEW_SERVICE) if idle is not None else None

    @property
    def instant_rollback(self) -> str | None:
        return self.image_of(self.idle_color)

    @property
    def completion(self) -> tuple[str, str] | None:
        return "Switch to the idle color", 'dockyard switch --stack "$STACK" --yes'

    def as_blue_green(self, stack: str) -> BlueGreenStrategy:
        return self


class CanaryStrategy(DockyardStrategy, app_spec.CanaryStrategy):
    """Stable and canary Deployments behind one Service; traffic split by replica ratio (and ingress weight).

    Promotion writes ``canaryImage`` at the first of ``steps``; ``dockyard canary advance`` moves to the next step
    after analysing the current one, and past the last step makes the canary image the stable one.
    """

    @property
    def in_progress(self) -> bool:
        return self.canary_image is not None

    @property
    def next_weight(self) -> int | None:
        """The step after the current weight; None when the next move completes the canary."""
        return next((step for step in self.steps if step > self.weight), None)

    @property
    def images(self) -> dict[str, str | None]:
        return {CANARY_IMAGE: self.canary_image}

    def promotion_write(self, image: str) -> ConfigWrite:
        first = self.steps[0]
        return ConfigWrite(f"canary at {first}%", {CANARY_IMAGE: image, CANARY_WEIGHT: first})

    def advance_write(self) -> ConfigWrite:
        """The next step, or completion: the canary image becomes ``image.ref`` and the canary track goes away."""
        if self.canary_image is None:
            raise ReleaseError("no canary is in progress (dockyard promote writes one)")
        weight = self.next_weight
        if weight is None:
            return ConfigWrite(
                "canary complete: it becomes the stable release",
                {IMAGE_REF: self.canary_image, CANARY_IMAGE: None, CANARY_WEIGHT: 0},
            )
        return ConfigWrite(f"canary at {weight}%", {CANARY_WEIGHT: weight})

    def abort_write(self) -> ConfigWrite:
        """Back to 0: the canary track goes away and the stable track serves everything again."""
        if self.canary_image is None:
            raise ReleaseError("no canary is in progress")
        return ConfigWrite("canary aborted: back to 0%", {CANARY_IMAGE: None, CANARY_WEIGHT: 0})

    def rollback_write(self, image: str) -> ConfigWrite:
        """The stable track back to ``image``, and any canary in progress gone with it."""
        return ConfigWrite("roll back", {IMAGE_REF: image, CANARY_IMAGE: None, CANARY_WEIGHT: 0})

    @property
    def candidate(self) -> Candidate | None:
        return Candidate(CANARY, self.canary_image, serving=True) if self.canary_image is not None else None

    def unfinished(self, stack: str) -> list[str]:
        """A canary in progress is finished or aborted before the next release starts one."""
        if self.canary_image is None:
            return []
        return [
            f"{stack} runs a canary of {self.canary_image} at {self.weight}%: finish it "
            f"(dockyard canary advance --stack {stack}) or abort it (dockyard canary abort --stack {stack}) first"
        ]

    @property
    def completion(self) -> tuple[str, str] | None:
        return "Walk the canary to completion", 'dockyard canary advance --stack "$STACK" --auto --yes'

    def as_canary(self, stack: str) -> CanaryStrategy:
        return self


#: ``dockyard:kubernetes.strategy``: one of Dockyard's strategies, by its ``type`` (the one list of them).
Strategy = Annotated[RollingStrategy | BlueGreenStrategy | CanaryStrategy, Field(discriminator="type")]
