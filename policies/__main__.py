"""Dockyard's CrossGuard policy pack: the delivery rules on every ``pulumi preview --policy-pack policies``.

Each rule's enforcement level (mandatory, advisory, disabled) and settings can be changed with
``--policy-pack-config`` (see policies/README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import rules
from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

DEFAULT_REGISTRIES = ["ghcr.io", "127.0.0.1:5443"]
WORKLOAD_TYPES = {
    f"kubernetes:{group}:{kind}"
    for group, kind in [
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
    ]
}


def _kind(resource_type: str) -> str:
    return resource_type.rsplit(":", 1)[-1]


def workload_rule(
    check: Callable[[str, dict[str, Any], ResourceValidationArgs], list[str]],
) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    """Run ``check`` on Kubernetes workloads and report each problem it returns."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type not in WORKLOAD_TYPES:
            return
        for problem in check(_kind(args.resource_type), args.props, args):
            report_violation(problem, None)

    return validate


def _prod_availability(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    resources = [(_kind(r.resource_type), r.props) for r in args.resources if r.resource_type.startswith("kubernetes:")]
    for problem in rules.prod_availability(resources):
        report_violation(problem, None)


def _prod_reviewers(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != "github:index/repositoryEnvironment:RepositoryEnvironment":
        return
    environments = args.get_config().get("prodEnvironments", ["prod"])
    for problem in rules.environment_without_reviewers(args.props, environments):
        report_violation(problem, None)


def _pinned_actions(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != "github:index/repositoryFile:RepositoryFile":
        return
    for problem in rules.unpinned_actions(args.props):
        report_violation(problem, None)


PolicyPack(
    name="dockyard",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        ResourceValidationPolicy(
            name="approved-registries",
            description="Images come only from approved registries.",
            config_schema=PolicyConfigSchema(
                properties={
                    "allowedRegistries": {"type": "array", "items": {"type": "string"}, "default": DEFAULT_REGISTRIES}
                }
            ),
            validate=workload_rule(
                lambda kind, props, args: rules.unapproved_registries(
                    kind, props, args.get_config().get("allowedRegistries", DEFAULT_REGISTRIES)
                )
            ),
        ),
        ResourceValidationPolicy(
            name="immutable-images",
            description="Staging and prod deploy digest-pinned images: no 'latest', no tag without a digest.",
            validate=workload_rule(lambda kind, props, _: rules.mutable_references(kind, props)),
        ),
        ResourceValidationPolicy(
            name="resource-limits",
            description="Every container has CPU and memory requests and limits.",
            validate=workload_rule(lambda kind, props, _: rules.missing_resources(kind, props)),
        ),
        ResourceValidationPolicy(
            name="pod-security",
            description="Pods run as non-root, read-only root filesystem, no privilege escalation, all capabilities dropped.",
            validate=workload_rule(lambda kind, props, _: rules.insecure_pods(kind, props)),
        ),
        ResourceValidationPolicy(
            name="no-plaintext-secret-env",
            description="Secret-looking environment variables come from Secret references, not literal values.",
            validate=workload_rule(lambda kind, props, _: rules.plaintext_secret_env(kind, props)),
        ),
        StackValidationPolicy(
            name="prod-availability",
            description="Prod Deployments run at least 2 replicas and are covered by a PodDisruptionBudget.",
            validate=_prod_availability,
        ),
        ResourceValidationPolicy(
            name="prod-environment-reviewers",
            description="The prod GitHub environment has required reviewers.",
            config_schema=PolicyConfigSchema(
                properties={"prodEnvironments": {"type": "array", "items": {"type": "string"}, "default": ["prod"]}}
            ),
            validate=_prod_reviewers,
        ),
        ResourceValidationPolicy(
            name="pinned-actions",
            description="Generated workflows pin every action to a full commit SHA.",
            validate=_pinned_actions,
        ),
    ],
)
