"""The shape of one app on Kubernetes, validated: replicas, port, probes' path, resources, release strategy
(rolling, blue-green, canary), autoscaling, ingress and settings.

:class:`~dockyard_components.kubernetes_app.KubernetesApp` validates its Input-shaped arguments into an
:class:`AppSpec`; Dockyard's stack config (``dockyard:kubernetes``) extends the same model, so a limit or rule is
decided once, here. The strategies also say how a release moves through them (:class:`ConfigWrite`): pure functions
the ``dockyard`` CLI applies to a stack's config.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from dockyard_components.image_ref import ImageReferenceError, parse_image_reference
from dockyard_components.quantity import parse_quantity
from dockyard_components.release import (
    ACTIVE_COLOR,
    CANARY,
    CANARY_IMAGE,
    CANARY_WEIGHT,
    COLORS,
    IMAGE_REF,
    PREVIEW_SERVICE,
    STABLE,
    Candidate,
    Color,
    ConfigWrite,
    Track,
    color_image_key,
    other_color,
    split_replicas,
)


class ReleaseError(ValueError):
    """A release move the stack's current state does not allow; the message says what the state is."""


class Model(BaseModel):
    """camelCase keys (snake_case names accepted too), typos refused, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        strict=False,
    )


# --- domain types ---------------------------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")
_CPU = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]{1,3})?)$")
_MEMORY = re.compile(r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$")
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PERCENT_OR_INT = re.compile(r"^([0-9]+|[0-9]{1,3}%)$")


def matching(pattern: re.Pattern[str], allowed: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"allowed: {allowed}")
        return value

    return check


def _image_reference(value: str) -> str:
    try:
        reference = parse_image_reference(value)
    except ImageReferenceError as error:
        raise ValueError(str(error)) from None
    if reference.tag == "latest" and reference.digest is None:
        raise ValueError("allowed: a digest-pinned reference (repo@sha256:...) or an immutable tag, never 'latest'")
    return value


def _percent_or_int(value: str | int) -> str | int:
    if isinstance(value, int) or _PERCENT_OR_INT.match(value):
        # Kubernetes reads a string as a percentage only: "1" (as other languages pass a count) means one pod.
        return int(value) if isinstance(value, str) and value.isdigit() else value
    raise ValueError("allowed: a whole number of pods (e.g. 1) or a percentage (e.g. 25%)")


DnsLabel = Annotated[str, AfterValidator(matching(_DNS_LABEL, "a DNS label: a-z, 0-9, '-', at most 63 chars"))]
Hostname = Annotated[str, AfterValidator(matching(_HOSTNAME, "a lower-case DNS host name like app.example.com"))]
Cpu = Annotated[str, AfterValidator(matching(_CPU, "a CPU quantity like 100m or 0.5"))]
Memory = Annotated[str, AfterValidator(matching(_MEMORY, "a memory quantity like 128Mi or 1Gi"))]
EnvName = Annotated[str, AfterValidator(matching(ENV_NAME_PATTERN, "an environment variable name like LOG_LEVEL"))]
ImageRef = Annotated[str, AfterValidator(_image_reference)]
PercentOrInt = Annotated[str | int, AfterValidator(_percent_or_int)]


class ResourceAmounts(Model):
    """CPU and memory quantities."""

    cpu: Cpu
    memory: Memory


class ResourcesConfig(Model):
    """Container requests and limits (limits are required in prod)."""

    requests: ResourceAmounts = ResourceAmounts(cpu="50m", memory="64Mi")
    limits: ResourceAmounts | None = None

    @model_validator(mode="after")
    def _requests_within_limits(self) -> ResourcesConfig:
        # The API server refuses a pod whose request exceeds its limit, and the rollout would wait for it forever.
        if self.limits is None:
            return self
        default = "" if "requests" in self.model_fields_set else " (the default)"
        problems = [
            f"requests.{name}: {request!r}{default} is more than limits.{name} {limit!r}; "
            "allowed: a request at most its limit"
            for name, request, limit in (
                ("cpu", self.requests.cpu, self.limits.cpu),
                ("memory", self.requests.memory, self.limits.memory),
            )
            if parse_quantity(request) > parse_quantity(limit)
        ]
        if problems:
            raise ValueError(" | ".join(problems))
        return self


class RollingStrategy(Model):
    """Kubernetes rolling update."""

    type: Literal["rolling"]
    max_surge: PercentOrInt = "25%"
    max_unavailable: PercentOrInt = 0

    def served_image(self, ref: str | None) -> str | None:
        """The one release image: ``image.ref`` (or the build's output on a building stack)."""
        return ref

    def tracks(self, replicas: int) -> list[Track]:
        return [Track(STABLE, replicas)]

    def promotion_write(self, image: str) -> ConfigWrite:
        return ConfigWrite("release", {IMAGE_REF: image})

    def rollback_write(self, image: str) -> ConfigWrite:
        return ConfigWrite("roll back", {IMAGE_REF: image})

    def service_track(self, ingress: bool) -> str | None:
        """The track the app's Service selects; None: every track."""
        return None

    @property
    def candidate(self) -> Candidate | None:
        """A release on its way in but not yet fully served (a canary, an idle color): none for rolling."""
        return None

    @property
    def instant_rollback(self) -> str | None:
        """An image that is still running beside the served one, so rolling back to it is a switch: none."""
        return None


class BlueGreenStrategy(Model):
    """Two color Deployments, each pinned to its own image; the Service selects ``activeColor``.

    Promotion writes the idle color's image; switching ``activeColor`` then changes only the Service selector,
    and switching back is the instant rollback (the other color still runs the previous release).
    """

    type: Literal["blueGreen"]
    active_color: Literal["blue", "green"] | None = Field(default=None, description="color the Service selects")
    blue_image: ImageRef | None = Field(default=None, description="image of the blue Deployment")
    green_image: ImageRef | None = Field(default=None, description="image of the green Deployment")

    @model_validator(mode="after")
    def _active_color_has_image(self) -> BlueGreenStrategy:
        if self.active_color is None:
            raise ValueError("activeColor: missing; allowed: blue or green")
        if self.image_of(self.active_color) is None:
            raise ValueError(f"{self.active_color}Image: missing for the active color; allowed: an image reference")
        return self

    def image_of(self, color: str) -> str | None:
        return self.blue_image if color == "blue" else self.green_image

    @property
    def active(self) -> Color:
        return self.active_color or "blue"

    @property
    def idle_color(self) -> Color:
        return other_color(self.active)

    def served_image(self, ref: str | None) -> str | None:
        """The active color's image: the Service selects only that color."""
        return self.image_of(self.active)

    def tracks(self, replicas: int) -> list[Track]:
        # Both colors stay warm at full size: switching back is instant.
        return [Track(color, replicas, image) for color in COLORS if (image := self.image_of(color)) is not None]

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

    def service_track(self, ingress: bool) -> str | None:
        return self.active

    @property
    def candidate(self) -> Candidate | None:
        idle = self.image_of(self.idle_color)
        return Candidate(self.idle_color, idle, serving=False, service=PREVIEW_SERVICE) if idle is not None else None

    @property
    def instant_rollback(self) -> str | None:
        return self.image_of(self.idle_color)


DEFAULT_CANARY_STEPS = (10, 25, 50, 100)


def _canary_steps(steps: list[int]) -> list[int]:
    if not steps or any(not 1 <= step <= 100 for step in steps) or steps != sorted(set(steps)):
        raise ValueError("allowed: increasing percentages between 1 and 100, e.g. [10, 25, 50, 100]")
    return steps


class CanaryStrategy(Model):
    """Stable and canary Deployments behind one Service; traffic split by replica ratio (and ingress weight).

    Promotion writes ``canaryImage`` at the first of ``steps``; ``dockyard canary advance`` moves to the next step
    after analysing the current one, and past the last step makes the canary image the stable one.
    """

    type: Literal["canary"]
    weight: int = Field(default=0, ge=0, le=100, description="percent of pods (and Ingress traffic) for the canary")
    canary_image: ImageRef | None = Field(default=None, description="image of the canary; none → no canary pods")
    steps: Annotated[list[int], AfterValidator(_canary_steps)] = Field(
        default_factory=lambda: list(DEFAULT_CANARY_STEPS), description="canary weights, one per advance"
    )
    step_soak_seconds: int = Field(default=0, ge=0, le=3600, description="how long each step runs before its analysis")

    @model_validator(mode="after")
    def _weight_needs_a_canary(self) -> CanaryStrategy:
        if self.weight > 0 and self.canary_image is None:
            raise ValueError(
                f"weight: {self.weight} without canaryImage; allowed: 0 until a promotion writes canaryImage"
            )
        return self

    @property
    def in_progress(self) -> bool:
        return self.canary_image is not None

    @property
    def next_weight(self) -> int | None:
        """The step after the current weight; None when the next move completes the canary."""
        return next((step for step in self.steps if step > self.weight), None)

    def served_image(self, ref: str | None) -> str | None:
        """The stable track's image; the canary serves only its share until it completes."""
        return ref

    def tracks(self, replicas: int) -> list[Track]:
        stable, canary = split_replicas(replicas, self.weight, self.canary_image is not None)
        tracks = [Track(STABLE, stable)]
        if canary and self.canary_image is not None:
            tracks.append(Track(CANARY, canary, self.canary_image))
        return tracks

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

    def service_track(self, ingress: bool) -> str | None:
        # With an Ingress, the ingress-nginx canary Ingress sends the weighted share to the canary's own Service;
        # without one every track serves and the replica ratio splits the traffic.
        return STABLE if ingress else None

    @property
    def candidate(self) -> Candidate | None:
        return Candidate(CANARY, self.canary_image, serving=True) if self.canary_image is not None else None

    @property
    def instant_rollback(self) -> str | None:
        return None


Strategy = Annotated[RollingStrategy | BlueGreenStrategy | CanaryStrategy, Field(discriminator="type")]


class AutoscalingConfig(Model):
    """A HorizontalPodAutoscaler per serving track."""

    min_replicas: int = Field(ge=1, le=1000)
    max_replicas: int = Field(ge=1, le=1000)
    cpu_utilization: int = Field(default=70, ge=1, le=100, description="target average CPU utilization, percent")

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"maxReplicas {self.max_replicas} < minReplicas {self.min_replicas}; allowed: max ≥ min")
        return self


class IngressConfig(Model):
    """An Ingress for the Service (ingress-nginx annotations for canaries)."""

    host: Hostname
    class_name: str = "nginx"
    tls_secret_name: DnsLabel | None = None


class AppSpec(Model):
    """One app's Deployments, Service and guard rails: what :class:`~dockyard_components.kubernetes_app.KubernetesApp`
    deploys, validated (every limit and rule below refuses bad input before anything is registered)."""

    app_name: DnsLabel = "dockyard-app"
    replicas: int = Field(default=1, ge=1, le=100)
    port: int = Field(default=8080, ge=1, le=65535)
    health_path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9._~/-]*$")] = "/health"
    resources: ResourcesConfig = ResourcesConfig()
    strategy: Strategy = RollingStrategy(type="rolling")
    autoscaling: AutoscalingConfig | None = None
    ingress: IngressConfig | None = None
    env: dict[EnvName, str] = Field(default_factory=dict, description="non-secret settings, in a ConfigMap")
    termination_grace_period_seconds: int = Field(default=30, ge=0, le=3600)
    revision_history_limit: int = Field(default=5, ge=0, le=50)
    rollout_timeout_seconds: int = Field(
        default=600, ge=10, le=3600, description="mode=cluster: how long `pulumi up` waits for each rollout"
    )

    @property
    def tracks(self) -> list[Track]:
        """The Deployments the strategy runs, with the replicas and image of each."""
        return self.strategy.tracks(self.replicas)

    @property
    def service_track(self) -> str | None:
        """The track the app's Service selects (None: every track)."""
        return self.strategy.service_track(self.ingress is not None)
