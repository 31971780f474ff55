"""AppImage: build once (test stage first), tag traceably, push, and expose the digest-pinned reference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, NotRequired, TypedDict

import pulumi

from components.build_context import context_hash
from components.podman_build import PodmanBuild
from components.tags import BuildMetadata

Builder = Literal["docker", "podman"]


class AppImageArgs(TypedDict):
    builder: Builder
    """docker (pulumi-docker, needs a Docker daemon) or podman (daemonless; a dynamic resource runs the podman CLI)."""
    image_name: pulumi.Input[str]
    """``registry/repository`` to push to."""
    registry_server: pulumi.Input[str]
    """Registry host[:port] to log in to."""
    username: pulumi.Input[str]
    """Registry user."""
    password: pulumi.Input[str] | None
    """Registry password, a Pulumi secret."""
    context: str
    """Build context directory, relative to the Pulumi project."""
    dockerfile: str
    """Dockerfile path inside the context."""
    target: str
    """Stage that is pushed."""
    test_target: str | None
    """Stage that must build (its RUN steps run the tests) before anything is pushed."""
    platform: str
    """Target platform, e.g. linux/amd64."""
    build_args: Mapping[str, str]
    """Extra build args (base images and the like)."""
    tags: Sequence[str]
    """Human-readable tags (see components.tags.image_tags); the first is the build's primary tag."""
    metadata: BuildMetadata
    """OCI label values: created, revision, version, source."""
    cache_repo: NotRequired[str | None]
    """podman only: registry/repository (no tag) that build layers are pulled from and pushed to."""


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

    def __init__(self, name: str, args: AppImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dockyard:index:AppImage", name, None, opts)
        if not args["tags"]:
            raise ValueError(f"{name}: at least one tag is required")
        sources_hash = context_hash(Path(args["context"]), args["dockerfile"])
        build_args = {**args["build_args"], **args["metadata"].build_args()}
        if args["builder"] == "podman":
            digest = self._build_with_podman(name, args, build_args, sources_hash)
        else:
            digest = self._build_with_docker(name, args, build_args, sources_hash)

        self.digest = digest
        self.ref = pulumi.Output.concat(args["image_name"], "@", digest)
        self.tags = pulumi.Output.from_input(list(args["tags"]))
        self.context_hash = pulumi.Output.from_input(sources_hash)
        self.register_outputs(
            {"ref": self.ref, "digest": self.digest, "tags": self.tags, "contextHash": self.context_hash}
        )

    def _build_with_podman(
        self, name: str, args: AppImageArgs, build_args: Mapping[str, str], sources_hash: str
    ) -> pulumi.Output[str]:
        # Runs the podman CLI only when something that shapes the image changed (see PodmanBuildProvider.diff).
        build = PodmanBuild(
            f"{name}-podman-build",
            {
                "image_name": args["image_name"],
                "tags": list(args["tags"]),
                "project_dir": str(Path.cwd()),
                "context": args["context"],
                "dockerfile": args["dockerfile"],
                "target": args["target"],
                "test_target": args["test_target"],
                "platform": args["platform"],
                "build_args": dict(build_args),
                "labels": args["metadata"].labels(),
                "context_hash": sources_hash,
                "registry_server": args["registry_server"],
                "username": args["username"],
                "password": pulumi.Output.secret(args["password"]) if args["password"] is not None else None,
                "cache_repo": args.get("cache_repo"),
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        return build.digest

    def _build_with_docker(
        self, name: str, args: AppImageArgs, build_args: Mapping[str, str], sources_hash: str
    ) -> pulumi.Output[str]:
        # Imported on use: stacks that build with podman or do not build skip loading the docker SDK.
        import pulumi_docker as docker

        registry = docker.RegistryArgs(
            server=args["registry_server"],
            username=args["username"],
            password=pulumi.Output.secret(args["password"]) if args["password"] is not None else None,
        )
        primary = pulumi.Output.concat(args["image_name"], ":", args["tags"][0])
        # The tags that move (branch, major.minor, major) are what the next commit's build finds, pushed by this one
        # with inline cache metadata; the commit's own tag exists only when the same commit is built again.
        cache_tags = [*args["tags"][1:], args["tags"][0]]
        cache = docker.CacheFromArgs(images=[pulumi.Output.concat(args["image_name"], ":", tag) for tag in cache_tags])

        def build(target: str) -> docker.DockerBuildArgs:
            return docker.DockerBuildArgs(
                context=args["context"],
                dockerfile=f"{args['context']}/{args['dockerfile']}",
                target=target,
                platform=args["platform"],
                # Inline cache metadata lets the next build use the pushed image as its cache-from source.
                args={**build_args, "BUILDKIT_INLINE_CACHE": "1"},
                cache_from=cache,
                builder_version=docker.BuilderVersion.BUILDER_BUILD_KIT,
            )

        depends: list[pulumi.Resource] = []
        if args["test_target"]:
            # The test stage's RUN steps are the test suite; nothing is pushed unless it builds.
            tested = docker.Image(
                f"{name}-test",
                image_name=pulumi.Output.concat(args["image_name"], ":test-", sources_hash[:12]),
                build=build(args["test_target"]),
                skip_push=True,
                opts=pulumi.ResourceOptions(parent=self),
            )
            depends.append(tested)
        # The pushed image; its repo digest is the immutable reference every environment deploys.
        image = docker.Image(
            f"{name}-image",
            image_name=primary,
            build=build(args["target"]),
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
