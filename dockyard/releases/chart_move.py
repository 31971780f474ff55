"""``dockyard chart``: a helm-mode stack's rendered manifests become a Helm chart, linted, packaged and pushed.

Facts first (the stack's view, the objects ``pulumi up`` rendered), then the pure writer (:mod:`.chart`), then helm
(:mod:`.helm`). It runs after ``pulumi up`` rather than inside it: the chart is made from what the engine rendered,
a preview stays free of side effects, and pushing is a publication with the CLI's registry login (the program's
podman and cosign steps are dynamic providers because they make what the update deploys; the chart does not).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.model.rendered import rendered_objects
from dockyard.model.stack import StackView
from dockyard.releases.chart import Chart, ChartError, ChartRelease, make_chart
from dockyard.releases.helm import Helm

#: Beside the render directories (``rendered/`` is owner-only and ignored by git), one directory per chart.
CHARTS_DIRECTORY = Path("rendered") / "charts"


@dataclass(frozen=True)
class PublishedChart:
    """What ``dockyard chart`` made: the chart directory, its package and, once pushed, where it is."""

    release: ChartRelease
    #: Its version: the release's digest and the chart's content (``0.0.0-sha256-<12 hex>.c<10 hex>``).
    version: str
    directory: Path
    package: Path
    repository: str
    digest: str | None

    @property
    def reference(self) -> str:
        """The chart as ``helm install``/``template`` takes it (with ``--version``)."""
        return f"{self.repository}/{self.release.name}"


def chart_repository(view: StackView) -> str:
    """Where the stack's charts are pushed: ``charts`` under its image repository, on its registry."""
    return f"oci://{view.env.registry.host}/{view.env.registry.repository}/charts"


def release_image(view: StackView, objects: list[dict[str, Any]]) -> str:
    """The image the stack serves: its config's, or on a building stack the one image its Deployments run."""
    if view.served_image is not None:
        return view.served_image
    images = {
        str(container["image"])
        for obj in objects
        if obj.get("kind") == "Deployment"
        for container in obj["spec"]["template"]["spec"]["containers"]
    }
    if len(images) != 1:
        raise ChartError(f"{view.name} runs {len(images)} images and its config names none as served")
    return images.pop()


def write_chart(release: ChartRelease, objects: list[dict[str, Any]], directory: Path) -> tuple[Chart, Path]:
    """Write the chart into ``directory/<chart name>`` (replacing what was there); the chart and its path."""
    chart = make_chart(release, objects)
    path = directory / chart.name
    shutil.rmtree(path, ignore_errors=True)
    for name, text in chart.files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        (path / name).write_text(text)
    return chart, path


def publish_chart(view: StackView, project_dir: Path, push: bool = True) -> PublishedChart:
    """Make, lint and package the stack's chart; push it to the stack's registry unless ``push`` is False."""
    settings = view.env.kubernetes
    if settings.mode != "helm":
        raise ChartError(
            f"{view.name}: dockyard:kubernetes.mode is {settings.mode}; allowed: helm (pulumi up then renders the "
            "manifests the chart is made of)"
        )
    rendered = project_dir / settings.rendered_to(view.name)
    if not rendered.is_dir():
        raise ChartError(f"{rendered} does not exist: pulumi up --stack {view.name} renders it")
    objects = rendered_objects(rendered)
    release = ChartRelease(settings.app_name, view.name, release_image(view, objects))
    charts = project_dir / CHARTS_DIRECTORY
    charts.mkdir(parents=True, exist_ok=True, mode=0o700)
    chart, path = write_chart(release, objects, charts)
    repository = chart_repository(view)
    credentials = view.credentials if push else None
    with Helm(view.env.registry.host, credentials) as helm:
        helm.lint(path)
        package = helm.package(path, charts)
        digest = helm.push(package, repository) if push else None
    return PublishedChart(release, chart.version, path, package, repository, digest)
