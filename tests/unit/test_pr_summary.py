"""pr-summary: counts, changed properties, policy violations, and the comment size limit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from dockyard.cli import app
from dockyard.pipeline.pr_summary import LIMIT, MARKER, load, read_preview, render

URN = "urn:pulumi:prod::dockyard::dockyard:index:KubernetesApp$kubernetes:apps/v1:Deployment::app-blue"


def step(op: str, name: str, diff: list[str] | None = None) -> dict[str, Any]:
    urn = URN.replace("app-blue", name)
    return {"op": op, "urn": urn, "detailedDiff": {p: {"kind": "update", "inputDiff": True} for p in diff or []}}


def test_counts_changes_and_changed_properties() -> None:
    digest = {
        "steps": [
            step("same", "app-green"),
            step("update", "app-blue", ["spec.template.spec.containers[0].image"]),
            step("create", "app-pdb"),
        ],
        "changeSummary": {"same": 1, "update": 1, "create": 1},
    }
    preview = read_preview("prod", digest)
    assert preview.counts == {"create": 1, "update": 1, "replace": 0, "delete": 0}
    text = render([preview])
    assert text.startswith(MARKER)
    assert "### `prod`: 1 to create, 1 to update" in text
    assert "- `update` kubernetes:apps/v1:Deployment **app-blue**: `spec.template.spec.containers[0].image`" in text
    assert "app-green" not in text


def test_policy_violations_from_the_event_log() -> None:
    events = [
        {
            "policyEvent": {
                "resourceUrn": URN,
                "message": "containers need\nlimits",
                "policyName": "resource-limits",
                "enforcementLevel": "mandatory",
            }
        },
        {"diagnosticEvent": {"message": "x"}},
    ]
    text = render([read_preview("prod", {"steps": []}, events)])
    assert "- ❌ mandatory `resource-limits` on **app-blue**: containers need limits" in text


def test_failed_preview_is_flagged_with_its_errors() -> None:
    diagnostics = [
        {"severity": "info", "message": "just chatter"},
        {"severity": "error", "message": "local-prod: the digest sha256:ab… is not signed\n  by keys/x.pub"},
    ]
    preview = read_preview("dev", {"diagnostics": diagnostics})
    text = render([preview])
    assert "**preview failed**" in text
    assert "- local-prod: the digest sha256:ab… is not signed by keys/x.pub" in text
    assert "just chatter" not in text


def test_the_errors_option_prints_only_each_failed_previews_errors(tmp_path: Path) -> None:
    """What a failed preview job's log shows: the engine's errors, not the tail of the JSON (its steps)."""
    (tmp_path / "local.json").write_text(json.dumps({"steps": [step("same", "app")]}))
    failed = {"steps": [step("same", "app")] * 50, "diagnostics": [{"severity": "error", "message": "registry: 401"}]}
    (tmp_path / "local-prod.json").write_text(json.dumps(failed))
    result = CliRunner().invoke(app, ["pr-summary", "--errors", *map(str, sorted(tmp_path.glob("*.json")))])
    assert result.exit_code == 0, result.output
    assert result.output == "local-prod: registry: 401\n"


def test_thousands_of_changes_stay_under_the_limit_and_say_so() -> None:
    huge = {"steps": [step("update", f"res-{i}", ["spec.replicas", "metadata.labels"]) for i in range(5000)]}
    small = {"steps": [step("create", "only-one")]}
    text = render([read_preview("prod", huge), read_preview("staging", small)])
    assert len(text) <= LIMIT
    assert "shortened to fit" in text
    assert "more changes not shown" in text
    assert "**only-one**" in text, "the short section is kept whole; the longest is shortened first"
    assert "**res-0**" in text


def test_many_large_sections_all_fit() -> None:
    stacks = [read_preview(f"s{n}", {"steps": [step("delete", f"r{n}-{i}") for i in range(3000)]}) for n in range(6)]
    text = render(stacks)
    assert len(text) <= LIMIT
    for n in range(6):
        assert f"### `s{n}`: 3000 to delete" in text


def test_load_reads_preview_and_event_files(tmp_path: Path) -> None:
    (tmp_path / "prod.json").write_text(json.dumps({"steps": [step("create", "a")], "changeSummary": {"create": 1}}))
    (tmp_path / "prod.events.jsonl").write_text(
        json.dumps({"policyEvent": {"policyName": "p", "message": "m", "enforcementLevel": "advisory"}}) + "\n"
    )
    (preview,) = load([tmp_path / "prod.json"])
    assert preview.stack == "prod"
    assert preview.violations == ["- ⚠️ advisory `p`: m"]


def deployment_state(image: str) -> dict[str, Any]:
    """A Deployment's state as ``pulumi preview --json`` writes it: inputs with the pod template."""
    labels = {"app.kubernetes.io/version": f"sha256-{image[-64:][:12]}"}
    template = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": image}]}}
    return {"type": "kubernetes:apps/v1:Deployment", "inputs": {"spec": {"template": template}}}


def test_an_image_change_shows_old_and_new_repository_digest_and_version() -> None:
    old, new = (f"ghcr.io/acme/dockyard-app@sha256:{c * 64}" for c in "ab")
    promoted = {
        **step("update", "app-green", ["spec.template.spec.containers[0].image"]),
        "oldState": deployment_state(old),
        "newState": deployment_state(new),
    }
    canary = {**step("create", "app-canary"), "newState": deployment_state(new)}
    text = render([read_preview("prod", {"steps": [promoted, canary]})])
    assert f"  - image app-green: ghcr.io/acme/dockyard-app sha256:{'a' * 12} → sha256:{'b' * 12}" in text
    assert f"  - image app-canary: (none) → ghcr.io/acme/dockyard-app sha256:{'b' * 12}" in text


def test_a_tagged_image_shows_its_version_label() -> None:
    tagged = deployment_state("ghcr.io/acme/dockyard-app:1.4.0")
    tagged["inputs"]["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] = "1.4.0"
    moved = deployment_state("ghcr.io/acme/other@sha256:" + "c" * 64)
    text = render(
        [read_preview("dev", {"steps": [{**step("update", "app-stable"), "oldState": tagged, "newState": moved}]})]
    )
    assert f"  - image app-stable: ghcr.io/acme/dockyard-app 1.4.0 → ghcr.io/acme/other sha256:{'c' * 12}" in text


def test_a_value_the_preview_cannot_know_yet_is_no_crash() -> None:
    """A merge request's preview shows the pod labels computed from a build's output as one unknown string: the
    image change is still summarised (found by running the merge-request pipeline under gitlab-ci-local)."""
    unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    old = {"spec": {"template": {"metadata": {"labels": {"app.kubernetes.io/version": "v1"}}, "spec": {}}}}
    old["spec"]["template"]["spec"] = {"containers": [{"name": "app", "image": "r/app@sha256:" + "a" * 64}]}
    new = {"spec": {"template": {"metadata": {"labels": unknown}, "spec": {"containers": unknown}}}}
    new["spec"]["template"]["spec"] = {"containers": [{"name": "app", "image": "r/app@sha256:" + "b" * 64}]}
    step_ = {"op": "update", "urn": URN, "oldState": {"inputs": old}, "newState": {"inputs": new}}
    text = render([read_preview("prod", {"steps": [step_]})])
    assert "### `prod`" in text
    assert "image app-blue: r/app sha256:aaaaaaaaaaaa (v1) → sha256:bbbbbbbbbbbb" in text, text
