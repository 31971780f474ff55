"""The chart writer (pure): rendered objects in, a chart that pins digests and holds no secret out; helm mode's
program renders, and ``dockyard chart`` refuses what it cannot chart. The real helm is tests/integration/test_helm.py's."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pulumi
import pytest
import yaml
from typer.testing import CliRunner

from dockyard.cli import app
from dockyard.model.config import parse_environment
from dockyard.model.stack import StackView
from dockyard.releases.chart import CHART_LABEL, MANAGED_BY_LABEL, ChartError, ChartRelease, make_chart
from dockyard.releases.chart_move import publish_chart, release_image, write_chart
from tests.stacks import PROJECT, dockyard_document, stack_config
from tests.unit.conftest import RecordingMocks
from tests.unit.test_program import run_program

BLUE = "127.0.0.1:5443/dockyard/app@sha256:" + "b" * 64
GREEN = "127.0.0.1:5443/dockyard/app@sha256:" + "0" * 12 + "c" * 52
APP_SECRET = "sentinel-chart-unit-secret"
PULL_SECRET = "sentinel-chart-unit-pull-password"
LABELS = {"app.kubernetes.io/name": "shop", MANAGED_BY_LABEL: "pulumi", "dockyard.dev/tier": "prod"}


def deployment(track: str, image: str) -> dict[str, Any]:
    labels = {**LABELS, "dockyard.dev/track": track, "app.kubernetes.io/version": "sha256-" + image[-64:][:12]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"shop-{track}", "namespace": "shop-prod", "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "shop", "dockyard.dev/track": track}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": image}]}},
        },
    }


def objects() -> list[dict[str, Any]]:
    meta = {"namespace": "shop-prod", "labels": LABELS}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop-prod", "labels": LABELS}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg-1", **meta}, "data": {"GREETING": "{{x}}"}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s-1", **meta},
            "stringData": {"API_KEY": APP_SECRET},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "pull-1", **meta},
            "data": {".dockerconfigjson": base64.b64encode(PULL_SECRET.encode()).decode()},
        },
        deployment("blue", BLUE),
        deployment("green", GREEN),
    ]


RELEASE = ChartRelease("shop", "prod", BLUE)


def test_each_track_image_is_a_value_the_schema_pins_to_a_digest() -> None:
    files = make_chart(RELEASE, objects()).files
    values = yaml.safe_load(files["values.yaml"])
    assert values["images"] == {"blue": BLUE, "green": GREEN}
    schema = json.loads(files["values.schema.json"])
    jsonschema.validate({**values, "secrets": {"app": {"API_KEY": "x"}, "imagePull": {}}}, schema)
    for refused in (
        "127.0.0.1:5443/dockyard/app:v1",
        "127.0.0.1:5443/dockyard/app:v1@sha256:" + "B" * 64,
        "127.0.0.1:5443/dockyard/app@sha256:" + "b" * 63,
    ):
        with pytest.raises(jsonschema.ValidationError, match="does not match"):
            jsonschema.validate({**values, "images": {**values["images"], "green": refused}}, schema)
    with pytest.raises(jsonschema.ValidationError, match="required"):
        jsonschema.validate({"images": {"blue": BLUE}, "secrets": {}}, schema)
    templates = "".join(text for name, text in files.items() if name.startswith("templates/"))
    assert BLUE not in templates, "the image comes from the values only"
    assert GREEN not in templates
    assert '(index .Values.images "green") | quote }}' in files["templates/deployment-shop-green.yaml"]


def test_no_secret_value_reaches_the_chart_each_is_required_at_install() -> None:
    files = make_chart(RELEASE, objects()).files
    encoded = base64.b64encode(PULL_SECRET.encode()).decode()
    for sentinel in (APP_SECRET, PULL_SECRET, encoded):
        assert not [name for name, text in files.items() if sentinel in text]
    assert yaml.safe_load(files["values.yaml"])["secrets"] == {"app": {}, "imagePull": {}}
    app = files["templates/secret-s-1.yaml"]
    assert 'required "secrets.app[API_KEY]: give the value at install time' in app
    assert '(index .Values.secrets "app" "API_KEY") | quote }}' in app
    # `data` holds base64: the value given at install is encoded by the template.
    assert (
        '(index .Values.secrets "imagePull" ".dockerconfigjson") | b64enc | quote }}'
        in files["templates/secret-pull-1.yaml"]
    )
    schema = json.loads(files["values.schema.json"])["properties"]["secrets"]["properties"]
    assert schema["app"]["properties"] == {"API_KEY": {"type": "string"}}
    assert list(schema["imagePull"]["properties"]) == [".dockerconfigjson"]


def test_helm_owns_managed_by_and_labels_every_object_with_the_chart() -> None:
    files = make_chart(RELEASE, objects()).files
    for name, text in files.items():
        if name.startswith("templates/") and name.endswith(".yaml"):
            assert f"{MANAGED_BY_LABEL}: {{{{ .Release.Service | quote }}}}" in text, name
            assert "pulumi\n" not in text, name
            assert text.count(f"{CHART_LABEL}:") == 1, f"{name}: the object's own labels only, not its pods'"
    green = files["templates/deployment-shop-green.yaml"]
    assert green.count('include "dockyard.version" (index .Values.images "green")') == 2, "object and pod labels"


def test_a_literal_template_action_in_a_value_stays_literal() -> None:
    text = make_chart(RELEASE, objects()).files["templates/configmap-cfg-1.yaml"]
    assert """GREETING: '{{ "{{" }}x}}'""" in text


def test_chart_is_named_for_the_stack_and_versioned_by_its_release() -> None:
    chart = yaml.safe_load(make_chart(RELEASE, objects()).files["Chart.yaml"])
    assert chart["name"] == "shop-prod"
    assert re.fullmatch(r"0\.0\.0-sha256-b{12}\.c[0-9a-f]{10}", chart["version"])
    assert chart["appVersion"] == "sha256:" + "b" * 64
    assert chart["apiVersion"] == "v2"


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (lambda o: o[4]["spec"]["template"]["spec"]["containers"][0].update(image="r/app:v1"), "not digest-pinned"),
        (lambda o: o[3].update(type="kubernetes.io/tls"), "has type kubernetes.io/tls"),
        (lambda o: o[5]["spec"]["template"]["metadata"]["labels"].pop("dockyard.dev/track"), "no dockyard.dev/track"),
        (lambda o: o[5]["spec"]["template"]["metadata"]["labels"].update({"dockyard.dev/track": "blue"}), "two"),
        (lambda o: o.__delitem__(slice(4, None)), "runs no Deployment yet"),
    ],
)
def test_what_cannot_be_charted_is_refused(change: Any, refusal: str) -> None:
    broken = objects()
    change(broken)
    with pytest.raises(ChartError, match=refusal):
        make_chart(RELEASE, broken)


def test_the_version_changes_with_the_content_even_without_a_new_release() -> None:
    first = make_chart(RELEASE, objects())
    assert make_chart(RELEASE, objects()).version == first.version, "the same render, the same version"
    changed = objects()
    changed[1]["data"]["GREETING"] = "hello"
    assert make_chart(RELEASE, changed).version != first.version
    assert make_chart(RELEASE, changed).version.startswith(RELEASE.version + ".c")


def test_the_release_must_be_one_the_deployments_run() -> None:
    with pytest.raises(ChartError, match="no Deployment of prod runs its release"):
        make_chart(ChartRelease("shop", "prod", "127.0.0.1:5443/dockyard/app@sha256:" + "d" * 64), objects())


def test_a_rewritten_chart_drops_templates_of_objects_that_are_gone(tmp_path: Path) -> None:
    _, chart = write_chart(RELEASE, objects(), tmp_path)
    assert (chart / "templates" / "deployment-shop-green.yaml").is_file()
    assert chart == tmp_path / "shop-prod"
    write_chart(RELEASE, objects()[:5], tmp_path)
    assert not (chart / "templates" / "deployment-shop-green.yaml").exists()


def helm_view(stack: str, **kubernetes: Any) -> StackView:
    document = dockyard_document(stack)
    document["kubernetes"] = {**document["kubernetes"], **kubernetes}
    document["kubernetes"].pop("context", None)
    return StackView(stack, parse_environment(stack, document))


def test_dockyard_chart_refuses_a_stack_not_in_helm_mode(tmp_path: Path) -> None:
    with pytest.raises(ChartError, match="mode is cluster; allowed: helm"):
        publish_chart(StackView("prod", parse_environment("prod", dockyard_document("prod"))), tmp_path)
    with pytest.raises(ChartError, match="rendered/prod does not exist: pulumi up --stack prod renders it"):
        publish_chart(helm_view("prod", mode="helm"), tmp_path)


def test_the_command_refuses_with_exit_1_and_one_line() -> None:
    result = CliRunner().invoke(app, ["chart", "--stack", "prod", "--project", str(PROJECT)])
    assert result.exit_code == 1
    assert "prod: dockyard:kubernetes.mode is cluster; allowed: helm" in " ".join(result.output.split())


def test_a_building_stack_charts_the_one_image_it_rendered() -> None:
    view = helm_view("local", mode="helm")
    assert view.served_image is None
    assert release_image(view, objects()[:5]) == BLUE
    with pytest.raises(ChartError, match="runs 2 images and its config names none"):
        release_image(view, objects())
    assert release_image(helm_view("prod", mode="helm"), []) == helm_view("prod").served_image


@pulumi.runtime.test
def _run_local_helm(mocks: RecordingMocks, workdir: Path) -> None:
    kubernetes = {**stack_config("local")["dockyard:kubernetes"], "mode": "helm"}
    kubernetes.pop("context")
    run_program("local", {"dockyard:kubernetes": kubernetes})


def test_helm_mode_renders_owner_only_manifests_like_render_mode(mocks: RecordingMocks, workdir: Path) -> None:
    _run_local_helm(mocks, workdir)
    (provider,) = mocks.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["renderYamlToDirectory"] == "rendered/local"
    assert provider.inputs["kubeconfig"] == ""
    assert (workdir / "rendered" / "local").stat().st_mode & 0o077 == 0
