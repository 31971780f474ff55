"""Compatibility names for importers of the former GitHub-only module (two test modules still import it): the
pipeline is now one CI-neutral model with a renderer per CI system, :mod:`dockyard.pipeline`. New code imports
from there."""

from __future__ import annotations

from collections.abc import Mapping

from dockyard.config import EnvironmentConfig
from dockyard.pipeline import github
from dockyard.pipeline.derive import derive_pipeline, read_stack_environments
from dockyard.pipeline.github import required_checks


def render_workflow_files(stacks: Mapping[str, EnvironmentConfig]) -> dict[str, str]:
    """The GitHub Actions workflow files by repository path (``.github/workflows/<name>``)."""
    return github.render(derive_pipeline(stacks))


__all__ = ["read_stack_environments", "render_workflow_files", "required_checks"]
