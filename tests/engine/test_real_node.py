"""The local stack on the local cluster's real node (``dockyard:kubernetes.nodePool: real``): containers that run.

Everything else in the engine tier runs on kwok's fake nodes, where every pod is Ready without a container. Here the
app's pods are pulled from the local registry with the stack's pull Secret, started by containerd under their security
context, probed by the kubelet and reached through their Service (kube-proxy's iptables rules, from this host). A
release whose /health fails never becomes Ready: its update fails within the rollout timeout while the old pods keep
serving. Last, the node is taken down and nothing of it is left on the host.

The tests run in order on one workspace (builds are slow), on the worker that runs this file (``--dist loadfile``).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.harness import Workspace, kubectl, live, namespace_of, set_stack_config
from tests.engine.real_node import ServiceWatcher, eventually, health, service_ip
from tests.local_services import CLUSTER, RealNodeLease

pytestmark = pytest.mark.engine

NODE = "real-node"
BRIDGE = os.environ.get("DOCKYARD_CLUSTER_NODE_BRIDGE", "dockyard0")
#: A short rollout timeout for the broken release: the update must fail within it.
BROKEN_TIMEOUT = 30


def app_pods(workspace: Workspace) -> dict[str, dict[str, Any]]:
    return {
        name: pod
        for name, pod in live(workspace, "local", "pods").items()
        if pod["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "dockyard-app"
    }


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def probe_counts(workspace: Workspace) -> dict[tuple[str, str], int]:
    """The kubelet's successful probes per (pod, probe type), read through the API server's node proxy (which also
    proves the API server reaches the kubelet with its client certificate)."""
    metrics = kubectl(workspace, "get", "--raw", f"/api/v1/nodes/{NODE}/proxy/metrics/probes").stdout
    counts: dict[tuple[str, str], int] = {}
    for line in metrics.splitlines():
        if not line.startswith("prober_probe_total{") or 'result="successful"' not in line:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        counts[(labels["pod"], labels["probe_type"])] = int(float(line.rsplit(" ", 1)[1]))
    return counts


@pytest.fixture(scope="module")
def on_real_node(local_workspace: Workspace, real_node: RealNodeLease) -> Workspace:
    """local, built and deployed with two replicas in the node pool ``real``."""
    workspace = local_workspace
    set_stack_config(workspace, "local", ["kubernetes", "nodePool"], "real")
    set_stack_config(workspace, "local", ["kubernetes", "replicas"], 2)
    workspace.init("local")
    workspace.pulumi("up", "--stack", "local", "--yes", "--skip-preview", timeout=2400)
    return workspace


@pytest.fixture(scope="module")
def serving_version(on_real_node: Workspace) -> str:
    status, version = health(service_ip(on_real_node))
    assert status == 200, version
    return version


def test_the_local_stacks_pods_run_on_the_real_node(on_real_node: Workspace, serving_version: str) -> None:
    workspace = on_real_node
    image: str = workspace.outputs("local")["image_ref"]
    pods = app_pods(workspace)
    assert len(pods) == 2, list(pods)
    for name, pod in pods.items():
        assert pod["spec"]["nodeName"] == NODE, name
        assert ready(pod), name
        (status,) = pod["status"]["containerStatuses"]
        assert status["started"] is True, status
        assert "running" in status["state"], status
        # containerd pulled exactly the digest the stack deployed.
        assert status["imageID"].endswith(image.rsplit("@", 1)[1]), (status["imageID"], image)
        assert re.fullmatch(r"10\.245\.0\.\d+", pod["status"]["podIP"]), "a real pod IP on the node's bridge"
    events = kubectl(workspace, "get", "events", "-n", namespace_of(workspace, "local"), "-o", "json").json()["items"]
    pulled = {e["involvedObject"]["name"] for e in events if e["reason"] in ("Pulled", "Pulling")}
    assert pulled & set(pods), "the kubelet pulled the image (events)"

    # The kubelet ran each pod's startup, readiness and liveness probes (liveness first runs within its 10 s period).
    def probed() -> dict[tuple[str, str], int] | None:
        counts = probe_counts(workspace)
        wanted = [(pod, kind) for pod in pods for kind in ("Startup", "Readiness", "Liveness")]
        return counts if all(counts.get(key, 0) > 0 for key in wanted) else None

    eventually("startup, readiness and liveness probes of every pod", probed, timeout=60)

    # The container's process answers through the Service, from this host: ClusterIP → kube-proxy → pod.
    answers = {health(service_ip(workspace)) for _ in range(10)}
    assert answers == {(200, serving_version)}, answers
    assert serving_version.startswith("0.0.0+src."), serving_version
    # logs come from the kubelet, through the API server.
    logs = kubectl(workspace, "logs", "-n", namespace_of(workspace, "local"), next(iter(pods))).stdout
    assert f"version {serving_version} listening on" in logs, logs


def _puller(template: dict[str, Any], name: str, secret: str) -> dict[str, Any]:
    """A Pod like the app's (restricted Pod Security, pinned to the real node), no labels (never behind the Service),
    that always pulls, with ``secret`` as its pull Secret."""
    spec = json.loads(json.dumps(template["spec"]))
    spec["imagePullSecrets"] = [{"name": secret}]
    for container in spec["containers"]:
        container["imagePullPolicy"] = "Always"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_the_pull_uses_the_stacks_secret_and_a_wrong_password_is_err_image_pull(on_real_node: Workspace) -> None:
    workspace = on_real_node
    namespace = namespace_of(workspace, "local")
    template = live(workspace, "local", "deployments")["dockyard-app-stable"]["spec"]["template"]
    (secret,) = [s["name"] for s in template["spec"]["imagePullSecrets"]]
    registry = workspace.env["DOCKYARD_REGISTRY"]
    kubectl(
        workspace, "create", "secret", "docker-registry", "wrong-pull", "-n", namespace,
        f"--docker-server={registry}", f"--docker-username={workspace.env['DOCKYARD_REGISTRY_USER']}",
        "--docker-password=not-the-password",
    )  # fmt: skip
    pods = [_puller(template, "pull-right", secret), _puller(template, "pull-wrong", "wrong-pull")]
    applied = subprocess.run(
        ["kubectl", "--context", "dockyard-local", "apply", "-n", namespace, "-f", "-"],
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}),
        env=workspace.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    try:

        def container_state(name: str) -> dict[str, Any]:
            pod = kubectl(workspace, "get", "pod", name, "-n", namespace, "-o", "json").json()
            statuses = pod["status"].get("containerStatuses") or [{}]
            return dict(statuses[0].get("state") or {})

        # With the stack's Secret the registry lets containerd pull (Always: never the node's cached copy).
        eventually("pull-right running", lambda: container_state("pull-right").get("running"))
        # With a wrong password the registry refuses: ErrImagePull, with the registry's reason on the pod.
        waiting = eventually(
            "pull-wrong refused",
            lambda: (
                (w := container_state("pull-wrong").get("waiting"))
                and w.get("reason") in ("ErrImagePull", "ImagePullBackOff")
                and w
            ),
        )
        assert "401 Unauthorized" in waiting.get("message", ""), waiting
        selector = "involvedObject.name=pull-wrong"
        events = kubectl(workspace, "get", "events", "-n", namespace, "--field-selector", selector, "-o", "json").json()
        failed = [e["message"] for e in events["items"] if e["reason"] == "Failed"]
        assert any("401 Unauthorized" in m for m in failed), failed
        assert any(m == "Error: ErrImagePull" for m in failed), failed
    finally:
        kubectl(workspace, "delete", "pod", "pull-right", "pull-wrong", "-n", namespace, "--wait=false", check=False)
        kubectl(workspace, "delete", "secret", "wrong-pull", "-n", namespace, check=False)


def test_a_release_whose_health_fails_fails_its_update_and_the_old_pods_keep_serving(
    on_real_node: Workspace, serving_version: str
) -> None:
    workspace = on_real_node
    namespace = namespace_of(workspace, "local")
    old_pods = set(app_pods(workspace))
    set_stack_config(workspace, "local", ["kubernetes", "rolloutTimeoutSeconds"], BROKEN_TIMEOUT)
    set_stack_config(workspace, "local", ["image", "build", "buildArgs", "HEALTH_FAIL"], "true")
    try:
        with ServiceWatcher(service_ip(workspace)) as watcher:
            failed = workspace.pulumi("up", "--stack", "local", "--yes", "--skip-preview", check=False, timeout=2400)
            answers_during_update = list(watcher.answers)
    finally:
        set_stack_config(workspace, "local", ["image", "build", "buildArgs", "HEALTH_FAIL"], None)
        set_stack_config(workspace, "local", ["kubernetes", "rolloutTimeoutSeconds"], 120)
    assert failed.returncode != 0, failed.output[-3000:]
    assert "timed out waiting to be Ready" in failed.output, failed.output[-3000:]
    # The provider names the pod whose container never became ready; the kubelet's events name the probe that failed.
    assert "containers with unready status: [app]" in failed.output, failed.output[-3000:]
    events = kubectl(workspace, "get", "events", "-n", namespace, "-o", "json").json()["items"]
    unhealthy = [e["message"] for e in events if e["reason"] == "Unhealthy"]
    assert any("probe failed: HTTP probe failed with statuscode: 503" in m for m in unhealthy), unhealthy
    new_pods = set(app_pods(workspace)) - old_pods
    assert new_pods, "the broken release's pod was created on the node"
    for name in new_pods:
        assert not ready(app_pods(workspace)[name]), name
    # maxUnavailable 0: both old pods served every request throughout, and still do.
    assert len(answers_during_update) > 20, answers_during_update
    assert set(answers_during_update) == {(200, serving_version)}, sorted(set(answers_during_update))
    assert old_pods <= {n for n, p in app_pods(workspace).items() if ready(p)}

    # Back to the good release: the update converges and the Service serves it.
    workspace.pulumi("up", "--stack", "local", "--yes", "--skip-preview", timeout=2400)
    assert health(service_ip(workspace)) == (200, serving_version)


def _cluster_state(workspace: Workspace) -> Path:
    return Path(workspace.env["KUBECONFIG"]).parent


def _leftovers(state: Path) -> list[str]:
    """What of the real node is left on this host, found independently of the script's own check."""
    found: list[str] = []
    node_dir = str(state / "node")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        program = Path(cmdline.split(" ", 1)[0]).name
        if node_dir in cmdline or (str(state) in cmdline and program in ("kubelet", "kube-proxy", "containerd")):
            found.append(f"process {proc.name}: {cmdline[:120]}")
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True, check=False).returncode == 0:
        found.append(f"bridge {BRIDGE}")
    routes = subprocess.run(["ip", "route", "show", "type", "unreachable"], capture_output=True, text=True).stdout
    found += [f"route {r}" for r in routes.splitlines() if r.startswith("unreachable 10.244.0.0/16")]
    for tool in ("iptables-save", "ip6tables-save"):
        saved = subprocess.run([tool], capture_output=True, text=True, check=False).stdout
        found += [f"{tool}: {line}" for line in saved.splitlines() if line.startswith(":KUBE-") or "-j KUBE-" in line]
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if target.startswith(node_dir + "/") or target.startswith("/run/netns/cni-"):
            found.append(f"mount {target}")
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob("*/kubepods")]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob("kubepods")]
    return found


def _cluster(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """scripts/local-cluster.sh with this session's environment (its DOCKYARD_CLUSTER_* settings)."""
    return subprocess.run(
        [str(CLUSTER), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300, check=False
    )


def test_a_start_waits_while_another_start_stop_or_reset_runs(real_node: RealNodeLease) -> None:
    """Two starts side by side (a worker's and the node test's) raced: one's stop of the node left the other's
    kubelet without containerd. The script runs one lifecycle command at a time; held here, a start waits for it."""
    cache = Path(os.environ.get("DOCKYARD_CACHE", Path.home() / ".cache" / "dockyard"))
    # scripts/local-cluster.sh's LIFECYCLE_LOCK
    with (cache / "cluster" / "lifecycle.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        start = subprocess.Popen([str(CLUSTER), "start"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                start.wait(timeout=3)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _, stderr = start.communicate(timeout=300)
    assert start.returncode == 0, stderr[-3000:]
    assert "cluster ready" in stderr, stderr[-3000:]


@pytest.fixture
def node_restarted(on_real_node: Workspace, real_node: RealNodeLease) -> Iterator[Workspace]:
    real_node.exclusive()  # no other module's pods on the node from here
    yield on_real_node
    started = _cluster("start")
    assert started.returncode == 0, started.stderr[-3000:]


def test_taking_the_node_down_leaves_nothing_of_it_on_the_host(node_restarted: Workspace) -> None:
    """The node's teardown, as ``stop`` runs it first; the control plane keeps running (other workers use it), so
    the node is taken down with a start without it (DOCKYARD_CLUSTER_REAL_NODE=0), then started again."""
    workspace = node_restarted
    state = _cluster_state(workspace)
    assert any(p.startswith("mount ") for p in _leftovers(state)), "the node's pods are mounted while it runs"
    without = _cluster("start", DOCKYARD_CLUSTER_REAL_NODE="0")
    assert without.returncode == 0, without.stderr[-3000:]
    assert "stopped the real node" in without.stderr, without.stderr
    assert _leftovers(state) == []
    nodes = kubectl(workspace, "get", "nodes", "-o", "name").stdout.split()
    assert f"node/{NODE}" not in nodes, nodes
