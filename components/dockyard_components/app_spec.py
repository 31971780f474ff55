"""The shape of one app on Kubernetes, validated: replicas, port, probes' path, resources, release strategy
(rolling, blue-green, canary), autoscaling, ingress and settings.

:class:`~dockyard_components.kubernetes_app.KubernetesApp` validates its Input-shaped arguments into an
:class:`AppSpec`; Dockyard's stack config (``dockyard:kubernetes``) extends the same model, so a limit or rule is
decided once, here. The strategies say which Deployments (tracks) run, with which image and replicas, and which
track the app's Service selects.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from dockyard_components.image_ref import ImageReferenceError, parse_image_reference
from dockyard_components.quantity import parse_quantity
from dockyard_components.release import (
    CANARY,
    CANARY_SERVICE,
    COLORS,
    PREVIEW_SERVICE,
    STABLE,
    Color,
    SideService,
    Track,
    other_color,
    split_replicas,
)


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


#: How each Deployment rolls out a new pod template, unless the rolling strategy says otherwise.
DEFAULT_MAX_SURGE = "25%"
DEFAULT_MAX_UNAVAILABLE = 0


class ReleaseStrategy(Model):
    """What every strategy answers: its Deployments (tracks), the track the app's Service selects, the Services
    beside it, and how each Deployment rolls out. A new strategy is one subclass here."""

    @abstractmethod
    def tracks(self, replicas: int) -> list[Track]:
        """The Deployments the strategy runs, with the replicas and image of each."""

    def service_track(self, ingress: bool) -> str | None:
        """The track the app's Service selects; None: every track."""
        return None

    def side_services(self, tracks: Sequence[str], ingress: bool) -> list[SideService]:
        """The Services beside the app's own (and their Ingresses), given the tracks that run."""
        return []

    def rolling_update(self) -> tuple[str | int, str | int]:
        """(maxSurge, maxUnavailable) of each Deployment's own rollout."""
        return DEFAULT_MAX_SURGE, DEFAULT_MAX_UNAVAILABLE


class RollingStrategy(ReleaseStrategy):
    """Kubernetes rolling update."""

    type: Literal["rolling"]
    max_surge: PercentOrInt = DEFAULT_MAX_SURGE
    max_unavailable: PercentOrInt = DEFAULT_MAX_UNAVAILABLE

    def tracks(self, replicas: int) -> list[Track]:
        return [Track(STABLE, replicas)]

    def rolling_update(self) -> tuple[str | int, str | int]:
        return self.max_surge, self.max_unavailable


class BlueGreenStrategy(ReleaseStrategy):
    """Two color Deployments, each pinned to its own image; the Service selects ``activeColor``.

    Both colors run at full size, so changing ``activeColor`` changes only the Service selector, and the idle color
    (with its own ``preview`` Service) still runs the release it ran before.
    """

    type: Literal["blueGreen"]
    active_color: Literal["blue", "green"] | None = Field(default=None, description="color the Service selects")
    blue_image: ImageRef | None = Field(default=None, description="image of the blue Deployment")
    green_image: ImageRef | None = Field(default=None, description="image of the green Deployment")

    @model_validator(mode="after")
    def _active_color_named(self) -> BlueGreenStrategy:
        # A color without an image has no release yet and runs no pods; the Service still selects activeColor, so
        # until the first switch to a color that runs a release it has no endpoints.
        if self.active_color is None:
            raise ValueError("activeColor: missing; allowed: blue or green")
        return self

    def image_of(self, color: str) -> str | None:
        return self.blue_image if color == "blue" else self.green_image

    @property
    def active(self) -> Color:
        return self.active_color or "blue"

    @property
    def idle_color(self) -> Color:
        return other_color(self.active)

    def tracks(self, replicas: int) -> list[Track]:
        # Both colors stay warm at full size: switching back is instant.
        return [Track(color, replicas, image) for color in COLORS if (image := self.image_of(color)) is not None]

    def service_track(self, ingress: bool) -> str | None:
        return self.active

    def side_services(self, tracks: Sequence[str], ingress: bool) -> list[SideService]:
        # The idle color's own Service: smoke-test the next release before switching activeColor. It is there even
        # while the idle color runs no release (no endpoints), so a switch only ever changes Service selectors.
        return [SideService(PREVIEW_SERVICE, self.idle_color)]


DEFAULT_CANARY_STEPS = (10, 25, 50, 100)


def _canary_steps(steps: list[int]) -> list[int]:
    if not steps or any(not 1 <= step <= 100 for step in steps) or steps != sorted(set(steps)):
        raise ValueError("allowed: increasing percentages between 1 and 100, e.g. [10, 25, 50, 100]")
    return steps


class CanaryStrategy(ReleaseStrategy):
    """Stable and canary Deployments behind one Service; traffic split by replica ratio (and ingress weight).

    ``weight`` is the canary's share; ``steps`` are the weights a release advances the canary through.
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
            raise ValueError(f"weight: {self.weight} without canaryImage; allowed: 0 while there is no canaryImage")
        return self

    def tracks(self, replicas: int) -> list[Track]:
        stable, canary = split_replicas(replicas, self.weight, self.canary_image is not None)
        tracks = [Track(STABLE, stable)]
        if canary and self.canary_image is not None:
            tracks.append(Track(CANARY, canary, self.canary_image))
        return tracks

    def service_track(self, ingress: bool) -> str | None:
        # With an Ingress, the ingress-nginx canary Ingress sends the weighted share to the canary's own Service;
        # without one every track serves and the replica ratio splits the traffic.
        return STABLE if ingress else None

    def side_services(self, tracks: Sequence[str], ingress: bool) -> list[SideService]:
        if not ingress or CANARY not in tracks:
            return []
        weighted = {
            "nginx.ingress.kubernetes.io/canary": "true",
            "nginx.ingress.kubernetes.io/canary-weight": str(self.weight),
        }
        return [SideService(CANARY_SERVICE, CANARY, weighted)]


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
    drain_seconds: int = Field(
        default=5,
        ge=0,
        le=300,
        description="how long a terminating pod keeps serving before the app gets SIGTERM (lifecycle.preStop.sleep), "
        "so that Services stop sending it requests first (kube-proxy and load balancers follow the endpoints with a "
        "delay); 0: none; below terminationGracePeriodSeconds",
    )
    revision_history_limit: int = Field(default=5, ge=0, le=50)
    rollout_timeout_seconds: int = Field(
        default=600, ge=10, le=3600, description="mode=cluster: how long `pulumi up` waits for each rollout"
    )
    node_pool: DnsLabel | None = Field(
        default=None,
        description="run the pods only on nodes labelled dockyard.dev/node-pool=<pool>, tolerating that pool's "
        "NoSchedule taint (local cluster: `real`, the node that runs containers; unset: any untainted node)",
    )

    @model_validator(mode="after")
    def _drained_before_killed(self) -> AppSpec:
        if self.drain_seconds and self.drain_seconds >= self.termination_grace_period_seconds:
            raise ValueError(
                f"drainSeconds {self.drain_seconds} ≥ terminationGracePeriodSeconds "
                f"{self.termination_grace_period_seconds}: the pod would be killed before the app is told to stop; "
                "allowed: drainSeconds < terminationGracePeriodSeconds, or 0"
            )
        return self

    @property
    def tracks(self) -> list[Track]:
        """The Deployments the strategy runs, with the replicas and image of each."""
        return self.strategy.tracks(self.replicas)

    def deployed_tracks(self, has_release: bool) -> list[Track]:
        """The tracks that get a Deployment: those with an image of their own, and, when there is a release image,
        those that run it. A track with no release yet runs no pods (no placeholder image)."""
        return [track for track in self.tracks if track.image is not None or has_release]

    @property
    def service_track(self) -> str | None:
        """The track the app's Service selects (None: every track)."""
        return self.strategy.service_track(self.ingress is not None)

    def side_services(self, tracks: Sequence[Track]) -> list[SideService]:
        """The Services beside the app's own, for the tracks that run."""
        return self.strategy.side_services([track.name for track in tracks], self.ingress is not None)
