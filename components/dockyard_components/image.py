"""AppImage: build once (test stage first), tag traceably, push, and expose the digest-pinned reference."""

# No `from __future__ import annotations`: Pulumi's component provider reads the Args and output annotations
# as live types to infer the schema other languages use.

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import pulumi

from dockyard_components.build_context import context_hash
from dockyard_components.podman_build import PodmanBuild
from dockyard_components.tags import BuildMetadata, metadata_build_args, metadata_labels, source_date_epoch


class Builder(StrEnum):
    """What builds the image."""

    DOCKER = "docker"
    """pulumi-docker: needs a Docker daemon (BuildKit)."""
    PODMAN = "podman"
    """Daemonless: a dynamic resource runs the podman CLI (what CI runners and this project's local stacks use)."""


class IntegrationArgs(TypedDict):
    """Integration tests against service containers (podman only): after the test stage, before the push."""

    compose: str
    """Compose file, relative to the build context; its ``service`` and every service it ``depends_on`` run."""
    service: str
    """Service whose image is ``target`` and whose exit status is the tests' verdict."""
    target: str
    """Dockerfile stage that holds the integration tests (built, run, never pushed)."""
    env: NotRequired[Mapping[str, str]]
    """Variables for the Compose file's ``${VAR}`` interpolation (over the builder's environment)."""


class AppImageArgs(TypedDict):
    image_name: pulumi.Input[str]
    """``registry/repository`` to push to."""
    registry_server: pulumi.Input[str]
    """Registry host[:port] to log in to."""
    username: pulumi.Input[str]
    """Registry user."""
    tags: Sequence[str]
    """Human-readable tags (see dockyard_components.tags.image_tags); the first is the build's primary tag."""
    password: NotRequired[pulumi.Input[str]]
    """Registry password, kept a Pulumi secret; left out for a registry that needs none."""
    builder: NotRequired[Builder]
    """docker or podman (the default)."""
    context: NotRequired[str]
    """Build context directory, absolute or relative to the program's directory; ``app`` unless given."""
    dockerfile: NotRequired[str]
    """Dockerfile path inside the context; ``Dockerfile`` unless given."""
    target: NotRequired[str]
    """Stage that is pushed; the Dockerfile's last stage unless given."""
    test_target: NotRequired[str]
    """Stage that must build (its RUN steps run the tests) before anything is pushed; no test stage unless given."""
    test_reports_target: NotRequired[str]
    """podman only: a stage holding only the test run's ``go-test.json`` and ``coverage.out``, exported before the
    test stage runs (so a failing test keeps its reports too); ``test_reports`` then names the folder."""
    platforms: NotRequired[Sequence[str]]
    """Target platforms (``os/arch``); ``[linux/amd64]`` unless given. Two or more (podman only): one image index,
    cross-compiled (the Dockerfile's ``FROM --platform=$BUILDPLATFORM`` stages), the tests run once on the build
    platform; ``digest`` is the index's."""
    platform: NotRequired[str]
    """One target platform: the shorthand for ``platforms=[platform]`` (kept for callers written before
    ``platforms``)."""
    build_args: NotRequired[Mapping[str, str]]
    """Extra build args (base images and the like)."""
    metadata: NotRequired[BuildMetadata]
    """OCI label values (created, revision, version, source), also passed as build args; none unless given."""
    cache_repo: NotRequired[str]
    """podman only: registry/repository (no tag) that build layers are pulled from and pushed to."""
    password_source: NotRequired[str]
    """podman only: where the password is set (e.g. a config key), named when the registry refuses it."""
    integration: NotRequired[IntegrationArgs]
    """podman only: run these integration tests after the test stage; a failure pushes nothing."""
    secrets: NotRequired[pulumi.Input[Mapping[str, pulumi.Input[str]]]]
    """podman only: build secrets, id to value, read in the Dockerfile with ``RUN --mount=type=secret,id=<id>``; kept
    a Pulumi secret and in no layer, history entry, image config or log."""


@dataclass(frozen=True)
class ImageBuild:
    """An :class:`AppImageArgs` with every default applied: what both builders build."""

    builder: Builder
    context: Path
    dockerfile: str
    target: str | None
    test_target: str | None
    platforms: tuple[str, ...]
    build_args: Mapping[str, str]
    labels: Mapping[str, str]
    password: pulumi.Output[str] | None
    timestamp: int
    """Seconds since the epoch for every time in the image (history, files): the commit's (``metadata.created``),
    0 without metadata, never the clock, so that two builds of one commit push one digest."""

    @staticmethod
    def of(args: AppImageArgs) -> "ImageBuild":
        metadata = args.get("metadata")
        password = args.get("password")
        if "platform" in args and "platforms" in args:
            raise ValueError("AppImageArgs: give platform or platforms, not both")
        platforms = tuple(args["platforms"]) if "platforms" in args else (args.get("platform", "linux/amd64"),)
        if not platforms:
            raise ValueError("AppImageArgs: platforms is empty; give at least one (e.g. linux/amd64)")
        return ImageBuild(
            builder=Builder(args.get("builder", Builder.PODMAN)),
            # Relative to the program's directory: the working directory of a Pulumi program and of its providers.
            context=Path(args.get("context", "app")),
            dockerfile=args.get("dockerfile", "Dockerfile"),
            target=args.get("target"),
            test_target=args.get("test_target"),
            platforms=platforms,
            build_args={**args.get("build_args", {}), **(metadata_build_args(metadata) if metadata else {})},
            labels=metadata_labels(metadata) if metadata else {},
            password=pulumi.Output.secret(password) if password is not None else None,
            timestamp=source_date_epoch(metadata["created"]) if metadata else 0,
        )


def _secret_props(secrets: pulumi.Input[Mapping[str, pulumi.Input[str]]] | None) -> dict[str, pulumi.Input[Any]]:
    """The build's ``secrets`` as one secret Output and its ids in the clear (what a diff compares); none without."""
    if secrets is None:
        return {}
    values = pulumi.Output.secret(secrets)
    ids = pulumi.Output.unsecret(values.apply(lambda found: sorted(found)))
    return {"secrets": values, "secret_ids": ids}


def _integration_props(integration: IntegrationArgs | None) -> dict[str, Any]:
    """The build's integration stage as one plain input (a change rebuilds); none without."""
    if integration is None:
        return {}
    return {"integration": {**integration, "env": dict(integration.get("env", {}))}}


class AppImage(pulumi.ComponentResource):
    """One application image, built and pushed once; ``ref`` is ``registry/repository@sha256:<digest>``.

    Both builders take the same inputs and give the same outputs. The rebuild trigger is the hash of the files the
    build actually sends (``.dockerignore`` honored), so unchanged sources mean no diff and no build.
    """

    ref: pulumi.Output[str]
    """Digest-pinned reference of what was pushed."""
    digest: pulumi.Output[str]
    """``sha256:...`` manifest digest."""
    tags: pulumi.Output[list[str]]
    """Tags pushed alongside."""
    context_hash: pulumi.Output[str]
    """Hash of the build context that was sent."""
    test_reports: pulumi.Output[str]
    """Folder with the test run's ``junit.xml`` and ``coverage.out`` (beside the build log, or
    ``$DOCKYARD_TEST_REPORTS``); empty when the build exported none."""

    def __init__(self, name: str, args: AppImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dockyard:index:AppImage", name, None, opts)
        if not args["tags"]:
            raise ValueError(f"{name}: at least one tag is required")
        build = ImageBuild.of(args)
        if len(build.platforms) > 1 and build.builder != Builder.PODMAN:
            # pulumi-docker's Image (v4) builds one platform.
            raise ValueError(f"{name}: {len(build.platforms)} platforms need the podman builder")
        if args.get("secrets") is not None and build.builder != Builder.PODMAN:
            # pulumi-docker's Image (v4) has no build secrets; a build arg would put the value in the image history.
            raise ValueError(f"{name}: build secrets need the podman builder")
        if args.get("integration") is not None and build.builder != Builder.PODMAN:
            raise ValueError(f"{name}: integration tests need the podman builder (pulumi-docker runs no containers)")
        sources_hash = context_hash(build.context, build.dockerfile)
        if build.builder == Builder.PODMAN:
            digest, test_reports = self._build_with_podman(name, args, build, sources_hash)
        else:
            digest, test_reports = (
                self._build_with_docker(name, args, build, sources_hash),
                pulumi.Output.from_input(""),
            )

        self.digest = digest
        self.ref = pulumi.Output.concat(args["image_name"], "@", digest)
        self.tags = pulumi.Output.from_input(list(args["tags"]))
        self.context_hash = pulumi.Output.from_input(sources_hash)
        self.test_reports = test_reports
        self.register_outputs(
            {
                "ref": self.ref,
                "digest": self.digest,
                "tags": self.tags,
                "contextHash": self.context_hash,
                "testReports": self.test_reports,
            }
        )

    def _build_with_podman(
        self, name: str, args: AppImageArgs, build: ImageBuild, sources_hash: str
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        # Runs the podman CLI only when something that shapes the image changed (see PodmanBuildProvider.diff).
        podman = PodmanBuild(
            f"{name}-podman-build",
            {
                "image_name": args["image_name"],
                "tags": list(args["tags"]),
                "project_dir": str(Path.cwd()),
                "context": str(build.context),
                "dockerfile": build.dockerfile,
                "target": build.target,
                "test_target": build.test_target,
                "reports_target": args.get("test_reports_target"),
                # One string, comma separated (podman's --platform): a one-platform build's inputs are what they were
                # before platforms existed, so upgrading rebuilds nothing.
                "platform": ",".join(build.platforms),
                "timestamp": build.timestamp,
                "build_args": dict(build.build_args),
                "labels": dict(build.labels),
                "context_hash": sources_hash,
                "registry_server": args["registry_server"],
                "username": args["username"],
                "password": build.password,
                "cache_repo": args.get("cache_repo"),
                "password_source": args.get("password_source"),
                **_integration_props(args.get("integration")),
                **_secret_props(args.get("secrets")),
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        return podman.digest, podman.test_reports

    def _build_with_docker(
        self, name: str, args: AppImageArgs, build: ImageBuild, sources_hash: str
    ) -> pulumi.Output[str]:
        # Imported on use: stacks that build with podman or do not build skip loading the docker SDK.
        import pulumi_docker as docker

        registry = docker.RegistryArgs(
            server=args["registry_server"],
            username=args["username"],
            password=build.password,
        )
        primary = pulumi.Output.concat(args["image_name"], ":", args["tags"][0])
        # The tags that move (branch, major.minor, major) are what the next commit's build finds, pushed by this one
        # with inline cache metadata; the commit's own tag exists only when the same commit is built again.
        cache_tags = [*args["tags"][1:], args["tags"][0]]
        cache = docker.CacheFromArgs(images=[pulumi.Output.concat(args["image_name"], ":", tag) for tag in cache_tags])

        def stage(target: str | None) -> docker.DockerBuildArgs:
            return docker.DockerBuildArgs(
                context=str(build.context),
                dockerfile=str(build.context / build.dockerfile),
                target=target,
                platform=build.platforms[0],
                # Inline cache metadata lets the next build use the pushed image as its cache-from source.
                args={**build.build_args, "BUILDKIT_INLINE_CACHE": "1"},
                cache_from=cache,
                builder_version=docker.BuilderVersion.BUILDER_BUILD_KIT,
            )

        depends: list[pulumi.Resource] = []
        if build.test_target:
            # The test stage's RUN steps are the test suite; nothing is pushed unless it builds.
            tested = docker.Image(
                f"{name}-test",
                image_name=pulumi.Output.concat(args["image_name"], ":test-", sources_hash[:12]),
                build=stage(build.test_target),
                skip_push=True,
                opts=pulumi.ResourceOptions(parent=self),
            )
            depends.append(tested)
        # The pushed image; its repo digest is the immutable reference every environment deploys.
        image = docker.Image(
            f"{name}-image",
            image_name=primary,
            build=stage(build.target),
            registry=registry,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
        )
        for tag in args["tags"][1:]:
            target_name = pulumi.Output.concat(args["image_name"], ":", tag)
            # Extra human-readable tags point at the same manifest.
            tagged = docker.Tag(
                f"{name}-tag-{tag}",
                source_image=image.repo_digest,
                target_image=target_name,
                opts=pulumi.ResourceOptions(parent=self),
            )
            docker.RegistryImage(
                f"{name}-push-{tag}",
                name=tagged.target_image,
                opts=pulumi.ResourceOptions(parent=self),
            )
        return image.repo_digest.apply(lambda ref: ref.split("@", 1)[1])
