"""Release notifications for real: a webhook receiver on 127.0.0.1 (``http.server`` in a thread), the URLs encrypted in
a copy of the local-staging stack file by the pinned engine (``pulumi config set --secret --path``) and decrypted by
it when an event is sent. Each event reaches each webhook once, with its fields; a webhook that is down leaves the
promotion applied and the failure logged; no URL or token appears in any output, log, stack file or state file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dockyard.model.notifications import Event
from dockyard.releases.engine import Engine
from dockyard.releases.project import Project
from tests.engine.harness import pinned_version
from tests.stacks import PROJECT
from tests.team_postgres import free_port
from tests.unit.test_stack_reads import BUILT, STAGING, FakeEngine, releases

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

#: What the receiver's URLs carry as their secret part (a Slack webhook's path, a signed query).
TOKEN = "T0KEN-6f1d2c"
PASSPHRASE = "dockyard-local"  # the local stacks' (scripts/local-env.sh)
IMAGE = f"127.0.0.1:5443/dockyard/app@sha256:{'c' * 64}"
RUN_URL = "https://ci.example.test/pipelines/42"


def engine_bin() -> Path:
    """The pinned engine's directory: on PATH, or where scripts/bootstrap-engine.sh builds it."""
    found = shutil.which("pulumi")
    if found:
        return Path(found).parent
    cache = Path(os.environ.get("DOCKYARD_CACHE", Path.home() / ".cache" / "dockyard"))
    binary = cache / "engine" / pinned_version() / "bin" / "pulumi"
    if not binary.is_file():
        message = "no pulumi engine: run scripts/bootstrap-engine.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary.parent


@dataclass
class Receiver:
    """Records every POST; answers each path with its queued statuses first, then 200."""

    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                received.requests.append((self.path, dict(self.headers), body))
                queued = received.statuses.get(self.path, [])
                status = queued.pop(0) if queued else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:  # the request line holds the token: keep it out of the test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield received
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the local chain's stack files in a backend of its own, the engine on PATH."""
    directory = tmp_path / "project"
    directory.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.local.yaml", f"Pulumi.{STAGING}.yaml"):
        shutil.copy(PROJECT / name, directory)
    (tmp_path / "state").mkdir()
    environment = {
        "PATH": f"{engine_bin()}{os.pathsep}{os.environ['PATH']}",
        "PULUMI_HOME": str(tmp_path / "pulumi-home"),
        "PULUMI_BACKEND_URL": f"file://{tmp_path}/state",
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "DOCKYARD_CACHE": str(tmp_path / "cache"),
        "DOCKYARD_ACTOR": "integration@test",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    Engine(directory).run(["stack", "init", STAGING])
    return directory


def configure(project: Path, webhooks: list[tuple[str, str]]) -> None:
    """``dockyard:notifications`` as an operator writes it: the kind in plaintext, the URL encrypted."""
    engine = Engine(project)
    for index, (kind, url) in enumerate(webhooks):
        key = f"dockyard:notifications[{index}]"
        engine.run(["config", "set", "--path", f"{key}.kind", kind, "--stack", STAGING])
        engine.run(["config", "set", "--secret", "--path", f"{key}.url", url, "--stack", STAGING])


def files_holding(directory: Path, text: str) -> list[str]:
    return [str(p) for p in directory.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def test_each_event_reaches_each_webhook_once_with_its_fields(project: Path, receiver: Receiver) -> None:
    configure(project, [("slack", receiver.url(f"/slack/{TOKEN}")), ("cloudevents", receiver.url(f"/ce?sig={TOKEN}"))])
    stack_text = (project / f"Pulumi.{STAGING}.yaml").read_text()
    assert TOKEN not in stack_text
    assert "kind: cloudevents" in stack_text
    outputs = []
    for event in Event:
        facts = ["--image", IMAGE, "--run-url", RUN_URL, "--detail", f"job of {event.value}", "--project", str(project)]
        run = subprocess.run(
            [sys.executable, "-m", "dockyard.cli", "notify", "--stack", STAGING, "--event", event.value, *facts],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout + run.stderr)
        assert f"{event.value} sent to the slack webhook at 127.0.0.1" in run.stderr
        assert f"{event.value} sent to the cloudevents webhook at 127.0.0.1" in run.stderr

    # Once per event and webhook, in order.
    assert receiver.paths() == [f"/slack/{TOKEN}", f"/ce?sig={TOKEN}"] * len(Event)
    slack = [body for path, _, body in receiver.requests if path.startswith("/slack/")]
    events = [(headers, body) for path, headers, body in receiver.requests if path.startswith("/ce")]
    for event, message, (headers, cloud) in zip(Event, slack, events, strict=True):
        assert message["text"].startswith(f"dockyard/{STAGING}: {event.value.replace('-', ' ')} sha256:cccc")
        fields = {f["title"]: f["value"] for f in message["attachments"][0]["fields"]}
        assert fields == {
            "Stack": STAGING,
            "Image": IMAGE,
            "Detail": f"job of {event.value}",
            "By": "integration@test",
            "Run": RUN_URL,
        }
        assert message["attachments"][0]["color"] == ("danger" if event.bad else "good")
        assert headers["Content-Type"].startswith("application/cloudevents+json")
        assert cloud["specversion"] == "1.0"
        assert cloud["type"] == f"dev.dockyard.release.{event.value}"
        assert cloud["source"] == f"/dockyard/dockyard/{STAGING}"
        assert cloud["data"]["image"] == IMAGE
        assert cloud["data"]["runUrl"] == RUN_URL
    assert len({cloud["id"] for _, cloud in events}) == len(Event)

    assert not [output for output in outputs if TOKEN in output or "/slack/" in output]
    assert files_holding(project.parent, TOKEN) == []


def test_a_webhook_that_is_down_leaves_the_promotion_applied_and_the_failure_logged(
    project: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    down = f"http://127.0.0.1:{free_port()}/hooks/{TOKEN}"  # nothing listens there
    flaky = f"/flaky/{TOKEN}"
    receiver.statuses[flaky] = [503, 200]  # fails once: the retry takes it
    configure(project, [("slack", down), ("cloudevents", receiver.url(flaky))])

    class DecryptingEngine(FakeEngine):
        """The unit tier's engine fake for the stacks' outputs and the update; the real engine decrypts."""

        def read(self, stack: str, *args: str) -> Any:
            if args[:2] == ("config", "get"):
                return Engine(self.directory).read(stack, *args)
            return super().read(stack, *args)

    dockyard = Project(project, print_line=lambda _: None)
    dockyard.__dict__["engine"] = DecryptingEngine(project)
    caplog.set_level("WARNING")
    outcome = releases(dockyard).promote("local", STAGING, yes=True, confirm=lambda: True)

    assert outcome.applied
    assert BUILT in (project / f"Pulumi.{STAGING}.yaml").read_text()
    (warning,) = caplog.records
    assert warning.getMessage().startswith(
        f"notification promoted of {STAGING} to the slack webhook at 127.0.0.1 failed twice"
    )
    assert receiver.paths() == [flaky, flaky]
    ((_, _, first), (_, _, second)) = receiver.requests
    assert first == second
    assert first["type"] == "dev.dockyard.release.promoted"
    captured = capsys.readouterr()
    for text in (caplog.text, captured.out, captured.err):
        assert TOKEN not in text
        assert "/hooks/" not in text
    assert files_holding(project.parent, TOKEN) == []
