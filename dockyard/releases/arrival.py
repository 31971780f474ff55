"""A release's arrival in a target stack's own registry: when the target names another registry or repository than
the one the source's digest is in, promotion copies the digest there, with its signatures and attestations, before
the target's gates judge it; the trust policy then verifies the copy, and the target's config names the copy.

The copy is regctl's (``image copy --digest-tags --referrers``: the digest is kept, and cosign's
``sha256-<hex>.sig``/``.att`` tags and OCI referrers go with it). It is safe to repeat: a digest already in the target
costs a few HEAD requests, and a re-run after an interrupted copy, or after the source gained an attestation (a
verification), completes it.
"""

from __future__ import annotations

from dockyard.model.credentials import RegistryCredentials, password_source
from dockyard.model.registry import RegistryConfig, local_start_command
from dockyard.model.stack import StackView
from dockyard.releases.gates import CopyAnswer
from dockyard.releases.regctl import Regctl, RegctlError
from dockyard_components.cosign import ToolUnavailableError
from dockyard_components.image_ref import parse_image_reference


def arriving_reference(image: str, registry: RegistryConfig) -> str:
    """Where ``image`` (``registry/repo@sha256:…``) is once in ``registry``: its image name at the same digest."""
    return f"{registry.image_name}@{parse_image_reference(image).digest}"


def logins(image: str, source: StackView, target: StackView) -> dict[str, RegistryCredentials]:
    """Who regctl is on each registry: the source's credentials where the digest is, the target's where it goes.
    On one host (another repository) the target's alone: they must push there, and one host has one login."""
    source_host = parse_image_reference(image).registry or source.env.registry.host
    return {source_host: source.credentials, target.env.registry.host: target.credentials}


def copy_release(image: str, source: StackView, target: StackView) -> CopyAnswer:
    """Copy ``image`` from ``source``'s registry into ``target``'s; the copy's reference, or one line saying which
    registries were involved, why it failed and how to recover."""
    arriving = arriving_reference(image, target.env.registry)
    try:
        with Regctl(logins(image, source, target)) as regctl:
            regctl.copy(image, arriving)
    except (RegctlError, ToolUnavailableError) as error:
        return CopyAnswer(None, copy_problem(image, source, target, str(error)))
    return CopyAnswer(arriving)


def copy_problem(image: str, source: StackView, target: StackView, reason: str) -> str:
    """Why a copy failed, naming both registries, and the way back (nothing was written to the target's config)."""
    source_host = parse_image_reference(image).registry or source.env.registry.host
    target_host = target.env.registry.host
    hosts = dict.fromkeys([source_host, target_host])
    start = next((command for host in hosts if (command := local_start_command(host))), None)
    answer = " and ".join(hosts) + (" answer" if len(hosts) > 1 else " answers")
    # On one host regctl is logged in as the target alone (see logins).
    used = (source, target) if len(hosts) > 1 else (target,)
    passwords = " and ".join(f"{view.name}'s {password_source(view.env.registry.password_env)}" for view in used)
    return (
        f"cannot copy {image} into {target.name}'s registry {target.env.registry.image_name}: {reason} "
        f"(check that {answer}{f' ({start})' if start else ''} and that {passwords} "
        f"{'are' if len(used) > 1 else 'is'} right, then promote again: the copy resumes)"
    )
