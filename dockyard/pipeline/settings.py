"""``dockyard-ci:*``: which CI systems' pipeline files are generated, and the image their jobs run in.

Project-level config (``Pulumi.yaml``), since one repository has one set of pipeline files::

    config:
      dockyard-ci:systems:
        value: [github, gitlab, circleci, jenkins]
      dockyard-ci:runnerImage:
        value: registry.example.com/team/dockyard-ci:3.260.0@sha256:<64 hex>

Its own namespace, not ``dockyard:``: the program never reads it (``dockyard.model.config`` validates every
``dockyard:`` key as stack config), and Pulumi lets project config set a foreign namespace's values.

GitHub Actions installs its tools with pinned actions; GitLab CI, CircleCI and Jenkins run every job in
``runnerImage``, which the team builds (README, "CI systems and registries") and pins by digest.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from dockyard.model.problems import ConfigProblemsError, validation_problems

#: The config namespace of these keys in ``Pulumi.yaml``.
NAMESPACE = "dockyard-ci"

_DIGEST_PINNED = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9._-]+)?@sha256:[0-9a-f]{64}$")


class CiSystem(StrEnum):
    """A CI system Dockyard renders the delivery pipeline for."""

    GITHUB = "github"
    GITLAB = "gitlab"
    CIRCLECI = "circleci"
    JENKINS = "jenkins"


def _pinned(value: str) -> str:
    if not _DIGEST_PINNED.match(value):
        raise ValueError("allowed: an image pinned by digest, registry/repository[:tag]@sha256:<64 hex>")
    return value


def _unique(systems: list[CiSystem]) -> list[CiSystem]:
    if len(set(systems)) != len(systems):
        raise ValueError("allowed: each CI system at most once")
    return systems


class CiConfig(BaseModel):
    """Which CI systems get pipeline files: `python -m scripts.generate_workflows` writes them, `--check` compares."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)

    systems: Annotated[list[CiSystem], AfterValidator(_unique)] = Field(
        default_factory=lambda: [CiSystem.GITHUB],
        description="CI systems whose pipeline files are generated: github, gitlab, circleci, jenkins",
    )
    runner_image: Annotated[str, AfterValidator(_pinned)] | None = Field(
        default=None,
        description="image (pinned by digest) the GitLab, CircleCI and Jenkins jobs run in: Python 3.11, the "
        "Pulumi CLI, podman, trivy, cosign, syft, helm (helm-mode stacks), the registry's cloud CLI, and for "
        "integration tests Go (the app's go.mod) and, for Jenkins, podman-compose or docker compose",
    )

    @model_validator(mode="after")
    def _runner_for_container_jobs(self) -> CiConfig:
        others = [system.value for system in self.systems if system != CiSystem.GITHUB]
        if others and self.runner_image is None:
            raise ValueError(
                f"runnerImage: missing with {', '.join(others)}; allowed: an image pinned by digest that has the "
                "pipeline's tools"
            )
        return self


class CiConfigError(ConfigProblemsError, ValueError):
    """``dockyard:ci`` in ``Pulumi.yaml`` does not validate; one line per problem, like the stack config's."""


def read_ci_config(project_dir: Path) -> CiConfig:
    """``dockyard-ci:*`` from ``project_dir/Pulumi.yaml`` (GitHub only when none is set)."""
    path = project_dir / "Pulumi.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    config: dict[str, Any] = (document or {}).get("config") or {}
    prefix = f"{NAMESPACE}:"
    values = {
        key.removeprefix(prefix): entry.get("value") if isinstance(entry, dict) else entry
        for key, entry in config.items()
        if key.startswith(prefix)
    }
    try:
        return CiConfig.model_validate(values, by_alias=True)
    except ValidationError as error:
        raise CiConfigError(validation_problems(path.name, NAMESPACE, CiConfig, error)) from None
