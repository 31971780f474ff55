"""helm mode end to end on the real engine and the local cluster: ``pulumi up`` of the local stack in helm mode
builds, signs and renders; ``dockyard chart`` makes, lints and pushes the chart; ``helm install --wait`` from
``oci://`` rolls out exactly the digest the update built."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from dockyard.model.credentials import RegistryCredentials
from dockyard.model.rendered import rendered_objects
from dockyard.releases.chart import MANAGED_BY_LABEL
from dockyard.releases.helm import Helm, HelmError
from dockyard_components.k8s_specs import version_label
from tests.engine.harness import LOCAL_CONTEXT, SESSION, Workspace, image_repository, kubectl, ok, set_stack_config
from tests.rendered_stacks import install_values

pytestmark = pytest.mark.engine


def test_helm_install_of_the_pushed_chart_rolls_out_the_built_digest(
    local_workspace: Workspace, tmp_path: Path
) -> None:
    workspace, env = local_workspace, local_workspace.env
    set_stack_config(workspace, "local", ["kubernetes", "mode"], "helm")
    set_stack_config(workspace, "local", ["kubernetes", "context"], None)
    workspace.init("local")
    workspace.pulumi("up", "--stack", "local", "--yes", timeout=2400)
    image = str(workspace.outputs("local")["image_ref"])
    namespace = str(workspace.outputs("local")["namespace"])
    assert kubectl(workspace, "get", "namespace", namespace, check=False).returncode != 0, "helm mode applies nothing"

    charts = f"oci://{image_repository(workspace)}/charts"
    printed = ok(workspace, "chart", "--stack", "local")
    pushed = re.search(rf"pushed {re.escape(charts)}/dockyard-app-local:(\S+)@sha256:[0-9a-f]{{64}}", printed)
    assert pushed, printed
    version = pushed.group(1)
    assert version.startswith(f"0.0.0-{version_label(image)}.c"), "the release's digest names the chart version"

    values = install_values(rendered_objects(workspace.directory / "rendered" / "local"), tmp_path)
    release = f"dockyard-{SESSION}"
    credentials = RegistryCredentials(
        env["DOCKYARD_REGISTRY_USER"], env["DOCKYARD_REGISTRY_PASSWORD"], env["DOCKYARD_REGISTRY_CA"]
    )
    cluster = ["--kubeconfig", env["KUBECONFIG"], "--kube-context", LOCAL_CONTEXT]
    with Helm("127.0.0.1:5443", credentials) as helm:
        try:
            helm.run(
                "helm install",
                [
                    "install",
                    release,
                    f"{charts}/dockyard-app-local",
                    "--version",
                    version,
                    # The chart carries its Namespace: the release record lives in one that exists.
                    "--namespace",
                    "default",
                    f"--values={values}",
                    "--wait",
                    "--timeout=240s",
                    "--ca-file",
                    env["DOCKYARD_REGISTRY_CA"],
                    *cluster,
                ],
            )
            deployments = kubectl(workspace, "get", "deployments", "-n", namespace, "-o", "json").json()["items"]
            assert [d["metadata"]["name"] for d in deployments] == ["dockyard-app-stable"]
            (deployment,) = deployments
            assert {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]} == {image}
            assert deployment["metadata"]["labels"][MANAGED_BY_LABEL] == "Helm"
            assert deployment["status"]["updatedReplicas"] == deployment["status"]["readyReplicas"] >= 1
            kubectl(workspace, "rollout", "status", "deployment/dockyard-app-stable", "-n", namespace, "--timeout=60s")
            pods = kubectl(workspace, "get", "pods", "-n", namespace, "-o", "json").json()["items"]
            statuses = [s for pod in pods for s in pod["status"].get("containerStatuses", [])]
            assert statuses
            assert {s["image"] for s in statuses} == {image}
            # A real node reports the pulled digest; a kwok node reports none.
            digest = image.rsplit("@", 1)[-1]
            assert all(s["imageID"] == "" or s["imageID"].endswith(digest) for s in statuses)
        finally:
            # Not an error of its own when the install failed before it recorded a release: that one is reported.
            with contextlib.suppress(HelmError):
                helm.run("helm uninstall", ["uninstall", release, "--namespace", "default", "--wait", *cluster])
