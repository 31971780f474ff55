"""The podman builder as a Pulumi dynamic resource: daemonless build, test stage, push, digest out.

A dynamic provider needs no provider plugin of its own (the engine runs it through the Python SDK), and its ``diff``
decides exactly when to rebuild: only when something that shapes the image changes, never for a password rotation.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic as dynamic

#: Inputs that shape the pushed image: any change rebuilds (a replacement, since an image is immutable). Not among
#: them: ``cache_repo``, the optional registry layer cache, which only makes a build faster.
REBUILD_KEYS = (
    "image_name",
    "tags",
    "context",
    "dockerfile",
    "target",
    "test_target",
    "platform",
    "build_args",
    "labels",
    "context_hash",
)
BUILD_TIMEOUT_SECONDS = 1800


class PodmanBuildError(Exception):
    """podman failed; the message carries the end of its output (never the password)."""


def _lines(values: Mapping[str, str]) -> str:
    return "\n".join(f"{key}={value}" for key, value in sorted(values.items()))


def run_build(props: Mapping[str, Any]) -> str:
    """Run ``scripts/podman-build.sh`` for ``props``; return the pushed manifest digest."""
    script = resources.files("components").joinpath("scripts/podman-build.sh").read_text()
    password = props.get("password")
    environment = {
        **os.environ,
        "IMAGE_NAME": props["image_name"],
        "TAGS": " ".join(props["tags"]),
        "CONTEXT": str(Path(props["project_dir"]) / props["context"]),
        "DOCKERFILE": props["dockerfile"],
        "TARGET": props["target"],
        "TEST_TARGET": props.get("test_target") or "",
        "PLATFORM": props["platform"],
        "BUILD_ARGS": _lines(props["build_args"]),
        "LABELS": _lines(props["labels"]),
        "REGISTRY": props["registry_server"],
        "REGISTRY_USER": props["username"],
        "REGISTRY_LOGIN": "true" if password else "false",
        "CACHE_REPO": props.get("cache_repo") or "",
    }
    try:
        result = subprocess.run(
            ["bash", "-c", script],
            input=password or "",
            env=environment,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PodmanBuildError(f"podman build of {props['image_name']} took over {BUILD_TIMEOUT_SECONDS}s") from None
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-25:])
        raise PodmanBuildError(f"podman build/push of {props['image_name']} failed:\n{tail}")
    digest = str(result.stdout).strip()
    if not digest.startswith("sha256:"):
        raise PodmanBuildError(f"podman push of {props['image_name']} reported no digest: {digest!r}")
    return digest


class PodmanBuildProvider(dynamic.ResourceProvider):
    """Builds on create and on any change of :data:`REBUILD_KEYS`; deleting keeps the pushed image (rollbacks)."""

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        digest = run_build(props)
        outputs = {key: value for key, value in props.items() if key != "password"}
        return dynamic.CreateResult(id_=digest, outs={**outputs, "digest": digest})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [key for key in REBUILD_KEYS if olds.get(key) != news.get(key)]
        return dynamic.DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # Pushed images stay in the registry: promoted stacks and rollbacks still reference their digests.
        return None


class PodmanBuild(dynamic.Resource):
    """One podman build + push. Output ``digest`` is the pushed manifest digest.

    The optional input ``cache_repo`` (a repository without a tag) becomes the script's ``CACHE_REPO``: layers are
    pulled from and pushed to it, so a fresh CI runner reuses the previous build's layers.
    """

    digest: pulumi.Output[str]

    def __init__(self, name: str, props: Mapping[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(
            PodmanBuildProvider(),
            name,
            {**props, "digest": None},
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["password"])),
        )
