"""CI for helm-mode stacks: the jobs that update such a stack publish its chart right after, with helm installed at
the version the local bootstrap builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dockyard.model.config import EnvironmentConfig
from dockyard.pipeline import derive, github, model
from dockyard.pipeline.model import Tool

ROOT = Path(__file__).resolve().parents[2]
PUBLISH = "Publish the Helm chart of what was rendered"


def helm_stacks(*names: str) -> dict[str, EnvironmentConfig]:
    """The committed stacks, with ``names`` in helm mode."""
    stacks = derive.read_stack_environments(ROOT)
    for name in names:
        kubernetes = stacks[name].kubernetes.model_copy(update={"mode": "helm", "context": None})
        stacks[name] = stacks[name].model_copy(update={"kubernetes": kubernetes})
    return stacks


def commands(pipeline: model.Pipeline, job_id: str) -> list[str]:
    (job,) = [job for job in pipeline.delivery if job.id == job_id]
    return [command.name for command in job.commands]


def test_deploy_and_promote_publish_the_chart_after_the_update_only_in_helm_mode() -> None:
    pipeline = derive.derive_pipeline(helm_stacks("dev", "staging"))
    deploy = commands(pipeline, "deploy-dev")
    assert deploy.index(PUBLISH) == deploy.index("Deploy everything but the image, which cannot be rebuilt here") + 1
    assert deploy.index(PUBLISH) < deploy.index("Verify the deployment")
    promote = commands(pipeline, "promote-staging")
    assert promote.index(PUBLISH) == len(promote) - 2, "after the release is served, before the file is committed"
    jobs = {job.id: job for job in pipeline.delivery}
    assert Tool.HELM in jobs["deploy-dev"].tools
    assert Tool.HELM in jobs["promote-staging"].tools
    assert Tool.HELM not in jobs["promote-prod"].tools
    assert PUBLISH not in commands(pipeline, "promote-prod")
    (publish,) = [c for c in jobs["deploy-dev"].commands if c.name == PUBLISH]
    assert publish.script.endswith('.venv/bin/dockyard chart --stack "$STACK"\n')
    assert not [job.id for job in derive.derive_pipeline(helm_stacks()).delivery if Tool.HELM in job.tools], (
        "no committed stack is in helm mode"
    )


def test_github_installs_the_pinned_helm_before_publishing() -> None:
    jobs: dict[str, Any] = github.delivery_workflow(derive.derive_pipeline(helm_stacks("dev")))["jobs"]
    names = [step["name"] for step in jobs["deploy-dev"]["steps"]]
    install = names.index(f"Install helm {model.HELM_VERSION}")
    assert install < names.index(PUBLISH)
    step = jobs["deploy-dev"]["steps"][install]
    assert "helm.sh/helm/v4/internal/version.version=$HELM_VERSION" in step["run"]
    assert not [n for n in (s["name"] for s in jobs["promote-staging"]["steps"]) if n.startswith("Install helm")]


def test_the_ci_helm_is_the_version_the_bootstrap_builds() -> None:
    pins = dict(
        line.split("=", 1)
        for line in (ROOT / "scripts" / "supply-chain" / "versions.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert pins["DOCKYARD_HELM_VERSION"] == model.HELM_VERSION
