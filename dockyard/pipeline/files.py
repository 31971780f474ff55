"""The generated pipeline files of every CI system ``dockyard:ci`` chooses, by repository path."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

from dockyard.model.config import EnvironmentConfig
from dockyard.pipeline import circleci, github, gitlab, jenkins
from dockyard.pipeline.derive import derive_pipeline
from dockyard.pipeline.pins import image
from dockyard.pipeline.render import GENERATED_MARKER
from dockyard.pipeline.settings import CiConfig, CiSystem

#: Where each system's files live: ``--check`` looks there for generated files no longer produced.
LOCATIONS: dict[CiSystem, tuple[str, ...]] = {
    CiSystem.GITHUB: (f"{github.WORKFLOW_DIRECTORY}/*.yml",),
    CiSystem.GITLAB: (gitlab.GITLAB_FILE,),
    CiSystem.CIRCLECI: (circleci.CIRCLECI_FILE,),
    CiSystem.JENKINS: (jenkins.JENKINS_FILE,),
}


def pipeline_files(
    stacks: Mapping[str, EnvironmentConfig],
    ci: CiConfig,
    chosen: Collection[str] | None = None,
    project_dir: Path = Path(),
) -> dict[str, str]:
    """File contents by repository path for each chosen CI system, all rendered from one pipeline model of the
    ``chosen`` stacks (default: the GitHub-enabled ones) of the project in ``project_dir``."""
    pipeline = derive_pipeline(stacks, chosen, project_dir)
    files: dict[str, str] = {}
    python = image("python")
    for system in ci.systems:
        if system == CiSystem.GITHUB:
            files.update(github.render(pipeline))
            continue
        assert ci.runner_image is not None, "CiConfig requires runnerImage beside a container-based CI system"
        renderer = {
            CiSystem.GITLAB: gitlab.render,
            CiSystem.CIRCLECI: circleci.render,
            CiSystem.JENKINS: jenkins.render,
        }
        files.update(renderer[system](pipeline, ci.runner_image, python))
    return files


def generated_files(project_dir: Path) -> list[str]:
    """Repository paths of the files in any system's location that a generator wrote (by their first line)."""
    found = []
    for patterns in LOCATIONS.values():
        for pattern in patterns:
            for path in sorted(project_dir.glob(pattern)):
                first = path.read_text(encoding="utf-8").split("\n", 1)[0]
                if GENERATED_MARKER in first:
                    found.append(str(path.relative_to(project_dir)))
    return found
