"""Pure builders for the Kubernetes objects of one app: labels, replica splits, pod and deployment specs.

Kept apart from the component so every policy-carrying property (limits, non-root, probes, spread) is unit-tested
without Pulumi.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from dockyard_components.app_spec import AppSpec
from dockyard_components.image_ref import parse_image_reference

MANAGED_BY = "pulumi"
PART_OF = "dockyard"
TRACK_LABEL = "dockyard.dev/track"
#: Lets admission and CrossGuard policies apply tier rules (digest pinning in staging/prod, prod availability).
TIER_LABEL = "dockyard.dev/tier"
#: Selects a namespace for the admission webhook (dockyard.admission): its Pods run only images its policy trusts.
ADMISSION_LABEL = "dockyard.dev/admission"
ADMISSION_ENFORCED = "enforce"
#: The namespace's trust policy (JSON) that the admission webhook enforces; written by the stack's program.
TRUST_POLICY_ANNOTATION = "dockyard.dev/trust-policy"
NON_ROOT_UID = 65532
#: A node pool is the nodes with this label, tainted NoSchedule with the same key and value: only pods that choose
#: the pool (``nodePool``) run there, and they run nowhere else.
NODE_POOL_KEY = "dockyard.dev/node-pool"
TMP_VOLUME = "tmp"


@dataclass(frozen=True)
class AppIdentity:
    """Names and labels shared by every object of one app in one stack."""

    app: str
    stack: str
    namespace: str
    tier: str

    @property
    def instance(self) -> str:
        return f"{self.app}-{self.stack}"

    def selector(self) -> dict[str, str]:
        """Labels that never change over the app's life: safe for immutable selectors."""
        return {"app.kubernetes.io/name": self.app, "app.kubernetes.io/instance": self.instance}

    def labels(self, component: str = "server") -> dict[str, str]:
        return {
            **self.selector(),
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/managed-by": MANAGED_BY,
            TIER_LABEL: self.tier,
        }


def version_label(image_ref: str) -> str:
    """A label-safe version for an image: its tag, or ``sha256-<12 hex>`` of its digest."""
    reference = parse_image_reference(image_ref)
    if reference.digest:
        return f"sha256-{reference.digest.removeprefix('sha256:')[:12]}"
    return (reference.tag or "unknown")[:63]


def container_spec(
    settings: AppSpec,
    image: pulumi.Input[str],
    config_map: pulumi.Input[str],
    secret: pulumi.Input[str] | None,
) -> k8s.core.v1.ContainerArgs:
    """The app container: digest-pinned image, probes on the health path, limits, locked-down security context."""
    env_from = [k8s.core.v1.EnvFromSourceArgs(config_map_ref=k8s.core.v1.ConfigMapEnvSourceArgs(name=config_map))]
    if secret is not None:
        env_from.append(k8s.core.v1.EnvFromSourceArgs(secret_ref=k8s.core.v1.SecretEnvSourceArgs(name=secret)))
    probe = k8s.core.v1.HTTPGetActionArgs(path=settings.health_path, port="http")
    resources = settings.resources
    return k8s.core.v1.ContainerArgs(
        name="app",
        image=image,
        image_pull_policy="IfNotPresent",
        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=settings.port, protocol="TCP")],
        env=[k8s.core.v1.EnvVarArgs(name="PORT", value=str(settings.port))],
        env_from=env_from,
        # Startup gives a slow start up to 60 s; readiness gates traffic; liveness restarts a hung process.
        startup_probe=k8s.core.v1.ProbeArgs(http_get=probe, period_seconds=2, failure_threshold=30),
        readiness_probe=k8s.core.v1.ProbeArgs(http_get=probe, period_seconds=5, failure_threshold=3),
        liveness_probe=k8s.core.v1.ProbeArgs(http_get=probe, period_seconds=10, failure_threshold=3),
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": resources.requests.cpu, "memory": resources.requests.memory},
            limits=({"cpu": resources.limits.cpu, "memory": resources.limits.memory} if resources.limits else None),
        ),
        security_context=k8s.core.v1.SecurityContextArgs(
            run_as_non_root=True,
            run_as_user=NON_ROOT_UID,
            run_as_group=NON_ROOT_UID,
            read_only_root_filesystem=True,
            allow_privilege_escalation=False,
            privileged=False,
            capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
        ),
        # A read-only root filesystem still needs a writable /tmp.
        volume_mounts=[k8s.core.v1.VolumeMountArgs(name=TMP_VOLUME, mount_path="/tmp")],
        # Serve on while the Services drop the pod's endpoint, then SIGTERM (the app's graceful shutdown): a scale-down
        # or a rollout refused requests on this machine's real node without it. The kubelet sleeps: no shell needed.
        lifecycle=(
            k8s.core.v1.LifecycleArgs(
                pre_stop=k8s.core.v1.LifecycleHandlerArgs(
                    sleep=k8s.core.v1.SleepActionArgs(seconds=settings.drain_seconds)
                )
            )
            if settings.drain_seconds
            else None
        ),
    )


def pod_spec(
    settings: AppSpec,
    pod_labels: dict[str, str],
    container: k8s.core.v1.ContainerArgs,
    pull_secret: pulumi.Input[str] | None,
    spread: bool,
) -> k8s.core.v1.PodSpecArgs:
    spread_constraints = (
        [
            k8s.core.v1.TopologySpreadConstraintArgs(
                max_skew=1,
                topology_key="kubernetes.io/hostname",
                when_unsatisfiable="ScheduleAnyway",
                label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=pod_labels),
            )
        ]
        if spread
        else None
    )
    pool = settings.node_pool
    return k8s.core.v1.PodSpecArgs(
        containers=[container],
        node_selector={NODE_POOL_KEY: pool} if pool else None,
        tolerations=(
            [k8s.core.v1.TolerationArgs(key=NODE_POOL_KEY, operator="Equal", value=pool, effect="NoSchedule")]
            if pool
            else None
        ),
        automount_service_account_token=False,
        enable_service_links=False,
        image_pull_secrets=[k8s.core.v1.LocalObjectReferenceArgs(name=pull_secret)] if pull_secret else None,
        security_context=k8s.core.v1.PodSecurityContextArgs(
            run_as_non_root=True,
            run_as_user=NON_ROOT_UID,
            run_as_group=NON_ROOT_UID,
            fs_group=NON_ROOT_UID,
            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
        ),
        termination_grace_period_seconds=settings.termination_grace_period_seconds,
        topology_spread_constraints=spread_constraints,
        volumes=[k8s.core.v1.VolumeArgs(name=TMP_VOLUME, empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs())],
    )


def deployment_strategy(settings: AppSpec) -> k8s.apps.v1.DeploymentStrategyArgs:
    max_surge, max_unavailable = settings.strategy.rolling_update()
    return k8s.apps.v1.DeploymentStrategyArgs(
        type="RollingUpdate",
        rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge=max_surge, max_unavailable=max_unavailable),
    )
