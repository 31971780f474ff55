"""KubernetesApp: one app per stack, deployed by digest with rolling, blue-green or canary releases."""

# No `from __future__ import annotations`: Pulumi's component provider reads the Args and output annotations
# as live types to infer the schema other languages use.

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_kubernetes as k8s
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from dockyard_components.app_spec import AppSpec
from dockyard_components.k8s_specs import (
    ADMISSION_ENFORCED,
    ADMISSION_LABEL,
    TRACK_LABEL,
    TRUST_POLICY_ANNOTATION,
    AppIdentity,
    container_spec,
    deployment_strategy,
    pod_spec,
    version_label,
)
from dockyard_components.release import CANARY, Track, deployment_name, service_name
from dockyard_components.tiers import Tier

SERVICE_PORT = 80


class StrategyType(StrEnum):
    """How a new release replaces the running one."""

    ROLLING = "rolling"
    """Kubernetes rolling update of one Deployment."""
    BLUE_GREEN = "blueGreen"
    """Two color Deployments, each pinned to its own image; the Service selects ``activeColor``."""
    CANARY = "canary"
    """Stable and canary Deployments behind one Service, split by replica ratio (and Ingress weight)."""


class StrategyArgs(TypedDict):
    type: StrategyType
    """rolling, blueGreen or canary; the other fields apply to the one type each names."""
    max_surge: NotRequired[str]
    """rolling: pods above the desired count during a rollout, a number (``1``) or percentage; ``25%`` by default."""
    max_unavailable: NotRequired[str]
    """rolling: pods that may be unavailable during a rollout, a number or percentage; ``0`` by default."""
    active_color: NotRequired[str]
    """blueGreen: the color the Service selects, blue or green."""
    blue_image: NotRequired[str]
    """blueGreen: image of the blue Deployment."""
    green_image: NotRequired[str]
    """blueGreen: image of the green Deployment."""
    weight: NotRequired[int]
    """canary: percent of pods (and Ingress traffic) for the canary; 0 by default."""
    canary_image: NotRequired[str]
    """canary: image of the canary; no canary pods unless given."""
    steps: NotRequired[Sequence[int]]
    """canary: the weights the canary advances through; 10, 25, 50, 100 by default."""
    step_soak_seconds: NotRequired[int]
    """canary: how long each step runs before its analysis."""


class ResourceAmountsArgs(TypedDict):
    cpu: str
    """A CPU quantity like 100m or 0.5."""
    memory: str
    """A memory quantity like 128Mi or 1Gi."""


class ResourcesArgs(TypedDict):
    requests: NotRequired[ResourceAmountsArgs]
    """What the scheduler reserves; 50m CPU and 64Mi memory by default."""
    limits: NotRequired[ResourceAmountsArgs]
    """The most the container may use; none by default (policy requires them in prod)."""


class AutoscalingArgs(TypedDict):
    min_replicas: int
    """Fewest pods per serving track."""
    max_replicas: int
    """Most pods per serving track."""
    cpu_utilization: NotRequired[int]
    """Target average CPU utilization, percent; 70 by default."""


class IngressArgs(TypedDict):
    host: str
    """Host name the Ingress answers, e.g. app.example.com."""
    class_name: NotRequired[str]
    """Ingress class; nginx by default (canaries use ingress-nginx's weight annotations)."""
    tls_secret_name: NotRequired[str]
    """Secret with the host's TLS certificate; no TLS section unless given."""


class KubernetesAppArgs(TypedDict):
    namespace: str
    """Namespace to create; unique per stack so stacks never collide in one cluster."""
    image: NotRequired[pulumi.Input[str]]
    """Digest-pinned release image: what the tracks that name no image of their own run (rolling, the canary's
    stable track). A blue-green app names each color's image in its strategy instead. Without it (no release yet)
    those tracks run no pods: the Service exists and has no endpoints."""
    stack: NotRequired[str]
    """Stack name in every instance label and in the app's DOCKYARD_STACK setting; the current stack's unless given."""
    tier: NotRequired[Tier]
    """dev, qa, staging or prod: a label on every object, read by admission and policy rules; dev unless given."""
    app_name: NotRequired[str]
    """The app's name (a DNS label): Deployment, Service and label names; ``dockyard-app`` unless given."""
    replicas: NotRequired[int]
    """Pods of the release (split between stable and canary during a canary); 1 by default."""
    port: NotRequired[int]
    """Port the container listens on (also its PORT variable); 8080 by default."""
    health_path: NotRequired[str]
    """HTTP path of the startup, readiness and liveness probes; ``/health`` by default."""
    resources: NotRequired[ResourcesArgs]
    """Container requests and limits."""
    strategy: NotRequired[StrategyArgs]
    """Release strategy; a rolling update unless given."""
    autoscaling: NotRequired[AutoscalingArgs]
    """A HorizontalPodAutoscaler per serving track; fixed replicas unless given."""
    ingress: NotRequired[IngressArgs]
    """An Ingress for the Service; in-cluster only unless given."""
    env: NotRequired[Mapping[str, str]]
    """Non-secret settings, injected as environment variables from a ConfigMap."""
    app_secrets: NotRequired[pulumi.Input[Mapping[str, pulumi.Input[str]]]]
    """Secret environment variables, kept Pulumi secrets and stored in a Kubernetes Secret."""
    docker_config_json: NotRequired[pulumi.Input[str]]
    """Registry credentials (``~/.docker/config.json`` document) for the image pull Secret; none unless given."""
    trust_policy: NotRequired[str]
    """The namespace's trust policy (a JSON document): the namespace is labelled for the admission webhook, which
    admits only Pods whose images the policy trusts; no admission check unless given."""
    termination_grace_period_seconds: NotRequired[int]
    """How long a stopping pod may drain; 30 by default."""
    revision_history_limit: NotRequired[int]
    """Old ReplicaSets kept per Deployment; 5 by default."""
    rollout_timeout_seconds: NotRequired[int]
    """How long ``pulumi up`` waits for each rollout to become ready; 600 by default."""
    node_pool: NotRequired[str]
    """Node pool the pods run in: nodes labelled ``dockyard.dev/node-pool=<pool>``, whose NoSchedule taint they
    tolerate; any untainted node unless given."""


#: The arguments that are the app's spec (the rest say where it runs and what it is handed).
_PLACEMENT = ("namespace", "image", "stack", "tier", "app_secrets", "docker_config_json", "trust_policy")


def app_spec(name: str, args: KubernetesAppArgs) -> AppSpec:
    """``args`` validated into an :class:`AppSpec`: one error naming every bad field, before anything registers."""
    given = {key: _plain(value) for key, value in args.items() if key not in _PLACEMENT}
    try:
        return AppSpec.model_validate(given)
    except ValidationError as error:
        problems = [
            f"{'.'.join(to_camel(str(part)) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()
        ]
        raise ValueError(f"KubernetesApp {name}: invalid arguments: " + "; ".join(problems)) from None


def _plain(value: Any) -> Any:
    """Enum members as their values, nested: what the spec's literal types compare against."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


@dataclass(frozen=True)
class _PodInputs:
    """What every Deployment's pods read: the settings' ConfigMap, the app's Secret and the pull Secret."""

    config_map: k8s.core.v1.ConfigMap
    secret_name: pulumi.Output[str] | None
    pull_secret: pulumi.Output[str] | None


class KubernetesApp(pulumi.ComponentResource):
    """Namespace, config, secrets, Deployments per release track, Service, Ingress, HPA, PDB and NetworkPolicy."""

    namespace: pulumi.Output[str]
    """Namespace the app runs in."""
    service_name: pulumi.Output[str]
    """Service that receives the app's traffic."""
    url: pulumi.Output[str]
    """Where the app answers: the Ingress host, or the in-cluster Service DNS name."""
    deployments: dict[str, k8s.apps.v1.Deployment]
    """Deployments by track (stable, canary, blue, green)."""

    def __init__(self, name: str, args: KubernetesAppArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dockyard:index:KubernetesApp", name, None, opts)
        settings = app_spec(name, args)
        stack = args.get("stack") or pulumi.get_stack()
        identity = AppIdentity(
            app=settings.app_name, stack=stack, namespace=args["namespace"], tier=Tier(args.get("tier", Tier.DEV)).value
        )
        ns = self._namespace(name, identity, args.get("trust_policy"))
        pods = self._pod_inputs(name, identity, settings, stack, ns, args)
        release = args.get("image")
        # A track with no release yet (no image of its own and no release image) gets no Deployment and no pods.
        tracks = settings.deployed_tracks(release is not None)
        self.deployments = self._deployments(name, identity, settings, pods, tracks, release)
        self.service_name, self.url = self._services(name, identity, settings, tracks, ns)
        self._autoscalers(name, identity, settings, tracks, ns)
        self._guards(name, identity, settings, ns)
        self.namespace = ns
        self.register_outputs(
            {
                "namespace": self.namespace,
                "serviceName": self.service_name,
                "url": self.url,
                "tracks": [t.name for t in tracks],
            }
        )

    def _namespace(self, name: str, identity: AppIdentity, trust_policy: str | None) -> pulumi.Output[str]:
        # Every object of this stack lives here; the name carries the stack so stacks share clusters safely.
        labels = {**identity.labels(), "pod-security.kubernetes.io/enforce": "restricted"}
        if trust_policy is not None:
            labels[ADMISSION_LABEL] = ADMISSION_ENFORCED
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=identity.namespace,
                labels=labels,
                annotations={TRUST_POLICY_ANNOTATION: trust_policy} if trust_policy is not None else None,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return namespace.metadata.name

    def _pod_inputs(
        self,
        name: str,
        identity: AppIdentity,
        settings: AppSpec,
        stack: str,
        ns: pulumi.Output[str],
        args: KubernetesAppArgs,
    ) -> _PodInputs:
        """What the pods read: settings, app secrets, pull credentials."""
        child = pulumi.ResourceOptions(parent=self)
        # Auto-named on purpose: the provider treats ConfigMap and Secret data as immutable, so a changed value or a
        # rotated credential replaces the object. With a fixed name that replacement is delete-before-create, and the
        # engine then replaces every Deployment that names it, deleting it first: the app goes down. Auto-named, the
        # new object is created before the old one is deleted, and the Deployments are updated in place: a rolling
        # update that also picks the values up.
        unnamed = k8s.meta.v1.ObjectMetaArgs(namespace=ns, labels=identity.labels())

        # Non-secret settings, injected as environment variables.
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config", metadata=unnamed, data={**settings.env, "DOCKYARD_STACK": stack}, opts=child
        )
        secret_name: pulumi.Output[str] | None = None
        app_secrets = args.get("app_secrets")
        if app_secrets is not None:
            # App secrets: the values stay Pulumi secrets in state and in this Secret's inputs.
            secret = k8s.core.v1.Secret(
                f"{name}-secrets",
                metadata=unnamed,
                type="Opaque",
                string_data=pulumi.Output.secret(app_secrets),
                opts=child,
            )
            secret_name = secret.metadata.name
        pull_secret_name: pulumi.Output[str] | None = None
        docker_config_json = args.get("docker_config_json")
        if docker_config_json is not None:
            # Lets the kubelet pull from a private registry with the registry component's credentials.
            pull_secret = k8s.core.v1.Secret(
                f"{name}-registry",
                metadata=unnamed,
                type="kubernetes.io/dockerconfigjson",
                string_data={".dockerconfigjson": pulumi.Output.secret(docker_config_json)},
                opts=child,
            )
            pull_secret_name = pull_secret.metadata.name
        return _PodInputs(config_map, secret_name, pull_secret_name)

    def _deployments(
        self,
        name: str,
        identity: AppIdentity,
        settings: AppSpec,
        pods: _PodInputs,
        tracks: Sequence[Track],
        release: pulumi.Input[str] | None,
    ) -> dict[str, k8s.apps.v1.Deployment]:
        """One Deployment per track that runs a release: which exist, and the image and replicas of each, is the
        strategy's to say."""
        return {
            track.name: self._deployment(
                name,
                identity,
                settings,
                track,
                track.image_or(release) if release is not None else str(track.image),
                pods.config_map,
                pods.secret_name,
                pods.pull_secret,
            )
            for track in tracks
        }

    def _services(
        self, name: str, identity: AppIdentity, settings: AppSpec, tracks: Sequence[Track], ns: pulumi.Output[str]
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """The app's Service and Ingress, and the Services (with Ingresses) the strategy runs beside them; returns
        the app's Service name and URL."""
        labels = identity.labels()
        service = self._service(name, service_name(identity.app), identity, settings.service_track, labels, ns)
        if settings.ingress is not None:
            self._ingress(name, "ingress", identity.app, settings, service.metadata.name, labels, ns, {})
        for side in settings.side_services(tracks):
            beside = self._service(
                name, service_name(identity.app, side.role), identity, side.track, labels, ns, side.role
            )
            if side.ingress_annotations is not None:
                ingress_name = service_name(identity.app, side.role)
                self._ingress(
                    name,
                    f"{side.role}-ingress",
                    ingress_name,
                    settings,
                    beside.metadata.name,
                    labels,
                    ns,
                    side.ingress_annotations,
                )
        if settings.ingress is not None:
            return service.metadata.name, pulumi.Output.from_input(f"https://{settings.ingress.host}")
        url = pulumi.Output.concat("http://", service.metadata.name, ".", ns, ".svc.cluster.local:", str(SERVICE_PORT))
        return service.metadata.name, url

    def _autoscalers(
        self, name: str, identity: AppIdentity, settings: AppSpec, tracks: Sequence[Track], ns: pulumi.Output[str]
    ) -> None:
        """A HorizontalPodAutoscaler per serving track that runs (the canary keeps its share of pods)."""
        if settings.autoscaling is None:
            return
        for track in tracks:
            if track.name != CANARY:
                self._autoscaler(
                    name, identity.app, settings, self.deployments[track.name], identity.labels(), ns, track.name
                )

    def _guards(self, name: str, identity: AppIdentity, settings: AppSpec, ns: pulumi.Output[str]) -> None:
        """The disruption budget and the network policies."""
        child = pulumi.ResourceOptions(parent=self)

        def meta(object_name: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=ns, labels=identity.labels())

        minimum_pods = settings.autoscaling.min_replicas if settings.autoscaling else settings.replicas
        if minimum_pods > 1:
            # Voluntary disruptions (node drains) take at most one pod at a time.
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pdb",
                metadata=meta(identity.app),
                spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                    max_unavailable=1,
                    selector=k8s.meta.v1.LabelSelectorArgs(match_labels=identity.selector()),
                ),
                opts=child,
            )

        # Deny all ingress traffic in the namespace by default...
        k8s.networking.v1.NetworkPolicy(
            f"{name}-deny-all",
            metadata=meta("default-deny-ingress"),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(), policy_types=["Ingress"]
            ),
            opts=child,
        )
        # ...then allow only the app port.
        k8s.networking.v1.NetworkPolicy(
            f"{name}-allow-http",
            metadata=meta(f"{identity.app}-allow-http"),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=identity.selector()),
                policy_types=["Ingress"],
                ingress=[
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                        ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=settings.port, protocol="TCP")]
                    )
                ],
            ),
            opts=child,
        )

    def _deployment(
        self,
        name: str,
        identity: AppIdentity,
        settings: AppSpec,
        track: Track,
        image: pulumi.Input[str],
        config_map: k8s.core.v1.ConfigMap,
        secret_name: pulumi.Output[str] | None,
        pull_secret_name: pulumi.Output[str] | None,
    ) -> k8s.apps.v1.Deployment:
        selector = {**identity.selector(), TRACK_LABEL: track.name}
        version = pulumi.Output.from_input(image).apply(version_label)
        pod_labels = pulumi.Output.all(identity.labels(), version).apply(
            lambda parts: {**parts[0], TRACK_LABEL: track.name, "app.kubernetes.io/version": parts[1]}
        )
        container = container_spec(settings, image, config_map.metadata.name, secret_name)
        autoscaled = settings.autoscaling is not None and track.name != "canary"
        # With an autoscaler the Deployment starts at the HPA's floor (never the API default of 1 pod), and later
        # updates leave the count to the HPA (ignore_changes) instead of resetting what it scaled to.
        replicas = settings.autoscaling.min_replicas if settings.autoscaling and autoscaled else track.replicas
        # One release track; the image is the digest-pinned reference.
        return k8s.apps.v1.Deployment(
            f"{name}-{track.name}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=deployment_name(identity.app, track.name),
                namespace=config_map.metadata.namespace,
                labels=pod_labels,
                # The stack is the source of truth: an update takes back fields changed by hand (`kubectl scale`)
                # instead of failing on a server-side-apply conflict. Replicas an HPA owns are ignore_changes.
                annotations={"pulumi.com/patchForce": "true"},
            ),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=replicas,
                revision_history_limit=settings.revision_history_limit,
                strategy=deployment_strategy(settings),
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=pod_labels),
                    spec=pod_spec(settings, selector, container, pull_secret_name, spread=track.replicas > 1),
                ),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                ignore_changes=["spec.replicas"] if autoscaled else None,
                # mode=cluster: `pulumi up` fails with the provider's own message when the rollout does not finish.
                custom_timeouts=pulumi.CustomTimeouts(
                    create=f"{settings.rollout_timeout_seconds}s", update=f"{settings.rollout_timeout_seconds}s"
                ),
            ),
        )

    def _service(
        self,
        name: str,
        service_name: str,
        identity: AppIdentity,
        track: str | None,
        labels: Mapping[str, str],
        ns: pulumi.Output[str],
        role: str = "service",
    ) -> k8s.core.v1.Service:
        if track in self.deployments:
            # Derived from the Deployment's own selector: a real dependency edge, and never a typo.
            selector: pulumi.Input[Mapping[str, str]] = self.deployments[track].spec.selector.match_labels
        elif track is not None:
            # The track has no release yet: the selector it will have, matching no pod until it runs one.
            selector = {**identity.selector(), TRACK_LABEL: track}
        else:
            selector = identity.selector()
        return k8s.core.v1.Service(
            f"{name}-{role}",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=service_name, namespace=ns, labels=dict(labels)),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                selector=selector,
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=SERVICE_PORT, target_port="http")],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.deployments.values())),
        )

    def _ingress(
        self,
        name: str,
        role: str,
        ingress_name: str,
        settings: AppSpec,
        service_name: pulumi.Input[str],
        labels: Mapping[str, str],
        ns: pulumi.Output[str],
        annotations: Mapping[str, str],
    ) -> k8s.networking.v1.Ingress:
        assert settings.ingress is not None
        ingress = settings.ingress
        backend = k8s.networking.v1.IngressBackendArgs(
            service=k8s.networking.v1.IngressServiceBackendArgs(
                name=service_name, port=k8s.networking.v1.ServiceBackendPortArgs(name="http")
            )
        )
        return k8s.networking.v1.Ingress(
            f"{name}-{role}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=ingress_name, namespace=ns, labels=dict(labels), annotations=dict(annotations) or None
            ),
            spec=k8s.networking.v1.IngressSpecArgs(
                ingress_class_name=ingress.class_name,
                tls=(
                    [k8s.networking.v1.IngressTLSArgs(hosts=[ingress.host], secret_name=ingress.tls_secret_name)]
                    if ingress.tls_secret_name
                    else None
                ),
                rules=[
                    k8s.networking.v1.IngressRuleArgs(
                        host=ingress.host,
                        http=k8s.networking.v1.HTTPIngressRuleValueArgs(
                            paths=[k8s.networking.v1.HTTPIngressPathArgs(path="/", path_type="Prefix", backend=backend)]
                        ),
                    )
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _autoscaler(
        self,
        name: str,
        app: str,
        settings: AppSpec,
        deployment: k8s.apps.v1.Deployment,
        labels: Mapping[str, str],
        ns: pulumi.Output[str],
        track: str,
    ) -> k8s.autoscaling.v2.HorizontalPodAutoscaler:
        assert settings.autoscaling is not None
        scaling = settings.autoscaling
        # Scales the track on average CPU utilization between the configured bounds.
        return k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-{track}-hpa",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{app}-{track}", namespace=ns, labels=dict(labels)),
            spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
                    api_version="apps/v1", kind="Deployment", name=deployment.metadata.name
                ),
                min_replicas=scaling.min_replicas,
                max_replicas=scaling.max_replicas,
                metrics=[
                    k8s.autoscaling.v2.MetricSpecArgs(
                        type="Resource",
                        resource=k8s.autoscaling.v2.ResourceMetricSourceArgs(
                            name="cpu",
                            target=k8s.autoscaling.v2.MetricTargetArgs(
                                type="Utilization", average_utilization=scaling.cpu_utilization
                            ),
                        ),
                    )
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
