"""The real helm (the pin scripts/bootstrap-supply-chain.sh builds) on the chart of every committed stack in helm mode.

Each stack's objects come from the program under mocks, written as the render provider writes them
(:mod:`tests.rendered_stacks`). helm lints each chart with ``--strict``; ``helm template`` gives back exactly those
objects apart from Helm's labels; the schema refuses a tag; and ``dockyard chart``'s own path packages and pushes a
chart to the local TLS registry, from which ``helm template oci://...`` gives the same objects. A missing helm fails
these tests: nothing here is skipped.
"""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dockyard.model.config import SECRET_KEYS, parse_environment
from dockyard.model.credentials import RegistryCredentials
from dockyard.model.stack import StackView
from dockyard.pipeline.model import HELM_VERSION
from dockyard.releases.chart import CHART_LABEL, MANAGED_BY_LABEL, ChartRelease
from dockyard.releases.chart_move import publish_chart, release_image, write_chart
from dockyard.releases.helm import Helm, HelmError
from dockyard_components.cosign import ToolUnavailableError, tool
from tests.k8s_schema import schema_errors
from tests.local_services import start_local_services
from tests.rendered_stacks import APP_SECRETS, BRACES, helm_config, helm_mode_objects, install_values
from tests.stacks import PROJECT, STACKS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

Objects = list[dict[str, Any]]


@pytest.fixture(scope="module")
def helm_version() -> str:
    """The installed helm reports the pinned version; without helm every test here fails (never skips)."""
    try:
        binary = tool("helm")
    except ToolUnavailableError as error:
        pytest.fail(f"{error}: the integration tier runs the real helm")
    reported = subprocess.run([binary, "version", "--short"], capture_output=True, text=True, timeout=30, check=True)
    # The CI pin, which tests/unit/test_chart_pipeline.py holds equal to scripts/supply-chain/versions.env.
    assert reported.stdout.strip() == HELM_VERSION
    return reported.stdout.strip()


@pytest.fixture
def helm(helm_version: str) -> Iterator[Helm]:
    with Helm() as local:
        yield local


def view_of(stack: str) -> StackView:
    config, _ = helm_config(stack)
    keys = {key.removeprefix("dockyard:"): value for key, value in config.items() if key.startswith("dockyard:")}
    return StackView(stack, parse_environment(stack, {k: v for k, v in keys.items() if k not in SECRET_KEYS}))


def without_helm_labels(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without the labels Helm owns (``managed-by``, ``helm.sh/chart``), wherever labels are."""
    if isinstance(obj, dict):
        return {
            key: (
                {k: v for k, v in value.items() if k not in (MANAGED_BY_LABEL, CHART_LABEL)}
                if key == "labels" and isinstance(value, dict)
                else without_helm_labels(value)
            )
            for key, value in obj.items()
        }
    if isinstance(obj, list):
        return [without_helm_labels(item) for item in obj]
    return obj


def by_name(objects: Objects) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def documents(text: str) -> Objects:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_charts_lints_strict_and_templates_back_its_rendered_objects(
    stack: str, helm: Helm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = helm_mode_objects(stack, tmp_path / "project", monkeypatch)
    release = ChartRelease("dockyard-app", stack, release_image(view_of(stack), objects))
    made, chart = write_chart(release, objects, tmp_path / "charts")
    helm.lint(chart)
    templated = documents(helm.template("r", str(chart), [install_values(objects, tmp_path)]))
    for obj in templated:
        labels = obj["metadata"]["labels"]
        assert labels[MANAGED_BY_LABEL] == "Helm"
        assert labels[CHART_LABEL] == f"{release.name}-{made.version}"[:63].rstrip("-").rstrip(".")
    assert by_name([without_helm_labels(o) for o in templated]) == by_name([without_helm_labels(o) for o in objects])
    assert {o["kind"] for o in templated} >= {"Namespace", "Deployment", "Secret", "ConfigMap", "Service"}
    configs = [o for o in templated if o["kind"] == "ConfigMap"]
    assert [c["data"]["GREETING"] for c in configs] == [BRACES], "a value like a template action stays literal"
    assert not [e for o in templated for e in schema_errors(o)]


def test_the_schema_refuses_a_tag_only_image_and_each_secret_is_required(helm: Helm, tmp_path: Path) -> None:
    objects = helm_mode_objects("local-prod", tmp_path / "project", pytest.MonkeyPatch())
    release = ChartRelease("dockyard-app", "local-prod", release_image(view_of("local-prod"), objects))
    _, chart = write_chart(release, objects, tmp_path / "charts")
    values = install_values(objects, tmp_path)
    (track,) = yaml.safe_load((chart / "values.yaml").read_text())["images"]
    tag_only = f"--set=images.{track}=127.0.0.1:5443/dockyard/app:v1"
    with pytest.raises(HelmError, match=r"does not match pattern"):
        helm.template("r", str(chart), [values], None, tag_only)
    with pytest.raises(HelmError, match=r"does not match pattern"):
        helm.run("helm lint", ["lint", "--strict", str(chart), tag_only])
    with pytest.raises(HelmError, match=r"secrets.app\[API_KEY\]: give the value at install time"):
        helm.template("r", str(chart))
    assert APP_SECRETS["API_KEY"] not in "".join(p.read_text() for p in chart.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def registry() -> dict[str, str]:
    return start_local_services()


def helm_stack_project(directory: Path, objects: Objects) -> Path:
    """A project with local-prod in helm mode and what its ``pulumi up`` would have rendered."""
    document = yaml.safe_load((PROJECT / "Pulumi.local-prod.yaml").read_text())
    kubernetes = document["config"]["dockyard:kubernetes"]
    kubernetes["mode"] = "helm"
    kubernetes.pop("context", None)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Pulumi.local-prod.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    rendered = directory / "rendered" / "local-prod" / "1-manifest"
    rendered.mkdir(parents=True, mode=0o700)
    for obj in objects:
        name = f"{obj['apiVersion'].replace('/', '_')}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        (rendered / name).write_text(yaml.safe_dump(obj))
    return directory


def test_dockyard_chart_pushes_to_the_local_registry_and_oci_templates_the_same(
    helm: Helm, registry: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = helm_mode_objects("local-prod", tmp_path / "mocked", monkeypatch)
    project = helm_stack_project(tmp_path / "project", objects)
    monkeypatch.setenv("DOCKYARD_REGISTRY_PASSWORD", registry["DOCKYARD_REGISTRY_PASSWORD"])
    monkeypatch.setenv("DOCKYARD_REGISTRY_CA", registry["DOCKYARD_REGISTRY_CA"])
    view = StackView.read(project, "local-prod")
    made = publish_chart(view, project)
    assert made.reference == "oci://127.0.0.1:5443/dockyard/app/charts/dockyard-app-local-prod"
    assert made.package.is_file()
    assert not (project / "rendered" / "charts").stat().st_mode & 0o077, "charts sit with the rendered Secrets"

    # The registry serves the chart under its version, with the digest helm reported.
    auth = (registry["DOCKYARD_REGISTRY_USER"], registry["DOCKYARD_REGISTRY_PASSWORD"])
    url = f"https://127.0.0.1:5443/v2/dockyard/app/charts/{made.release.name}/manifests/{made.version}"
    context = ssl.create_default_context(cafile=registry["DOCKYARD_REGISTRY_CA"])
    with httpx.Client(verify=context, trust_env=False, timeout=10) as http:
        head = http.head(url, auth=auth, headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert head.headers["Docker-Content-Digest"] == made.digest

    values = [install_values(objects, tmp_path)]
    local = documents(helm.template("r", str(made.directory), values))
    with Helm("127.0.0.1:5443", view.credentials) as remote:
        pulled = documents(remote.template("r", made.reference, values, made.version))
    assert by_name(pulled) == by_name(local)
    images = {
        c["image"] for o in pulled if o["kind"] == "Deployment" for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert images == {made.release.image}


def test_a_wrong_registry_password_is_refused_and_never_printed(
    helm_version: str, registry: dict[str, str], tmp_path: Path
) -> None:
    chart = tmp_path / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: tiny\nversion: 0.1.0\n")
    wrong = f"wrong-{secrets.token_hex(8)}"
    credentials = RegistryCredentials(registry["DOCKYARD_REGISTRY_USER"], wrong, registry["DOCKYARD_REGISTRY_CA"])
    with Helm("127.0.0.1:5443", credentials) as helm:
        package = helm.package(chart, tmp_path)
        with pytest.raises(HelmError) as refused:
            helm.push(package, "oci://127.0.0.1:5443/dockyard/it-charts")
        assert oct(os.stat(helm.directory / "registry.json").st_mode & 0o777) == "0o600"
    assert wrong not in str(refused.value)
    assert "401" in str(refused.value) or "unauthorized" in str(refused.value).lower()
