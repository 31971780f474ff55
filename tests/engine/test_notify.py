"""A live ``dockyard promote`` tells the target's webhooks: the real engine deploys local → local-staging on the local
cluster, a receiver on 127.0.0.1 gets the promotion once per reachable webhook, a webhook that is down changes
nothing of the promotion's outcome, and no webhook URL reaches the output, the stack file or the state."""

from __future__ import annotations

import pytest

from tests.engine.harness import Workspace, deploy_local_stacks, dockyard, rolling
from tests.integration import test_notify_webhooks
from tests.integration.test_notify_webhooks import TOKEN, Receiver
from tests.team_postgres import free_port

pytestmark = pytest.mark.engine

#: A webhook receiver on 127.0.0.1 (a fixture).
receiver = test_notify_webhooks.receiver


def test_a_live_promotion_notifies_its_webhooks_and_a_dead_one_changes_nothing(
    local_workspace: Workspace, receiver: Receiver
) -> None:
    rolling(local_workspace, "local-staging")
    deploy_local_stacks(local_workspace)
    assert dockyard(local_workspace, "verify", "--stack", "local").returncode == 0
    webhooks = [("cloudevents", receiver.url(f"/ce/{TOKEN}")), ("slack", f"http://127.0.0.1:{free_port()}/x/{TOKEN}")]
    for index, (kind, url) in enumerate(webhooks):
        key = f"dockyard:notifications[{index}]"
        local_workspace.pulumi("config", "set", "--path", f"{key}.kind", kind, "--stack", "local-staging")
        # The URL reaches the engine on stdin, never on a command line.
        local_workspace.pulumi(
            "config", "set", "--secret", "--path", f"{key}.url", "--stack", "local-staging", stdin=url
        )

    promoted = dockyard(local_workspace, "promote", "--from", "local", "--to", "local-staging", "--yes")

    assert promoted.returncode == 0, promoted.output[-6000:]
    image = local_workspace.outputs("local")["image_ref"]
    assert local_workspace.outputs("local-staging")["image_ref"] == image
    ((path, _, event),) = receiver.requests
    assert path == f"/ce/{TOKEN}"
    assert (event["type"], event["data"]["stack"], event["data"]["image"]) == (
        "dev.dockyard.release.promoted",
        "local-staging",
        image,
    )
    assert "to the slack webhook at 127.0.0.1 failed twice" in promoted.stderr
    assert TOKEN not in promoted.output
    assert TOKEN not in local_workspace.stack_file("local-staging").read_text()
    assert TOKEN not in str(local_workspace.export("local-staging"))
