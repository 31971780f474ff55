"""Release notifications without a network: the config (URLs only ever encrypted, never quoted back), the two
payloads, one retry, redaction of every log line, and sending that never raises; the moves and the verifier announce
what they did, once, after it is done."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard.model.config import ConfigError, parse_environment
from dockyard.model.notifications import Event
from dockyard.model.stack import StackView
from dockyard.program.stack_config import load
from dockyard.releases.ledger import Check
from dockyard.releases.notify import (
    CLOUDEVENTS_CONTENT_TYPE,
    RETRY_DELAY,
    ReleaseEvent,
    Target,
    announce,
    cloudevent,
    deliver,
    redact,
    slack_payload,
)
from dockyard.releases.project import Project
from dockyard.verify import Verifier
from tests.stacks import dockyard_document, stack_config
from tests.unit import test_stack_reads
from tests.unit.conftest import RecordingMocks, set_stack_config
from tests.unit.test_stack_reads import BUILT, STAGING, releases
from tests.unit.test_verifier import FakeCluster, FakeProject

#: The promotion's project over copies of the local chain's stack files (a fixture).
command = test_stack_reads.command

TOKEN = "T0KEN-hunter2"
URL = f"https://hooks.example.test/services/T000/B000/{TOKEN}?key={TOKEN}"
CIPHERTEXT = {"secure": "v1:uNHL/ARNO1qEq9da:m+VpmYQ6o9ALbpoLJox7XIKh9oL2RNFn6NqJ70e9EMj1z/PkSrd9"}
AT = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
EVENT = ReleaseEvent(
    Event.PROMOTED,
    "dockyard",
    "staging",
    "ci@runner",
    f"r.example/app@sha256:{'b' * 64}",
    f"r.example/app@sha256:{'a' * 64}",
    "image.ref",
    at=AT,
)


def with_webhooks(webhooks: Any, stack: str = "local") -> dict[str, Any]:
    document = copy.deepcopy(dockyard_document(stack))
    document["notifications"] = webhooks
    return document


def view_with(webhooks: list[dict[str, Any]], decrypt: Callable[[str], str]) -> StackView:
    document = {"config": {"dockyard:notifications": webhooks}}
    return StackView("local", parse_environment("local", with_webhooks(webhooks)), document, decrypt)


# --- config ----------------------------------------------------------------------------------------------------


def test_webhooks_take_only_an_encrypted_url_and_name_no_plaintext() -> None:
    env = parse_environment("local", with_webhooks([{"kind": "slack", "url": CIPHERTEXT}]))
    assert [(w.kind, w.url.secure) for w in env.notifications] == [("slack", CIPHERTEXT["secure"])]
    for written in ([{"kind": "slack", "url": URL}], URL, [URL], {"url": URL}):
        document = with_webhooks(written)
        document["kubernetes"]["replicas"] = 0  # reported beside it: every problem at once
        with pytest.raises(ConfigError) as caught:
            parse_environment("local", document)
        assert TOKEN not in str(caught.value)
        assert len(caught.value.problems) == 2, caught.value.problems
        assert any(p.startswith("local: dockyard:notifications") for p in caught.value.problems)
    with pytest.raises(ConfigError) as caught:
        parse_environment("local", with_webhooks([{"kind": "slack", "url": URL}]))
    assert caught.value.problems == [
        "local: dockyard:notifications[0].url: stored in plaintext; allowed: an encrypted value (pulumi config set "
        "--secret --path 'dockyard:notifications[<n>].url' URL)"
    ]
    with pytest.raises(ConfigError) as caught:
        parse_environment("local", with_webhooks([{"kind": "teams", "url": CIPHERTEXT}]))
    assert caught.value.problems == [
        "local: dockyard:notifications[0].kind: found 'teams'; allowed: input should be 'slack' or 'cloudevents'"
    ]


def test_the_program_validates_the_webhooks_as_the_file_writes_them(mocks: RecordingMocks, workdir: Path) -> None:
    """The engine hands the key over decrypted and flagged secret; the program checks the file's ciphertext and
    never holds the URL."""
    values = {**stack_config("dev"), "dockyard:notifications": [{"kind": "slack", "url": URL}]}
    set_stack_config(values, secret_keys=["dockyard:notifications"])
    written = {"config": {f"dockyard:{k}": v for k, v in with_webhooks([], "dev").items()}}
    written["config"]["dockyard:notifications"] = [{"kind": "cloudevents", "url": CIPHERTEXT}]
    (workdir / "Pulumi.dev.yaml").write_text(json.dumps(written))
    loaded = load("dev", workdir)
    assert [w.kind for w in loaded.env.notifications] == ["cloudevents"]
    assert TOKEN not in repr(loaded)
    written["config"]["dockyard:notifications"] = [{"kind": "slack", "url": URL}]
    (workdir / "Pulumi.dev.yaml").write_text(json.dumps(written))
    with pytest.raises(ConfigError) as caught:
        load("dev", workdir)
    assert [p.split(";")[0] for p in caught.value.problems] == [
        "dev: dockyard:notifications[0].url: stored in plaintext"
    ]
    assert TOKEN not in str(caught.value)


# --- payloads --------------------------------------------------------------------------------------------------


def test_the_slack_message_says_what_happened_where_in_its_text_and_colours_it() -> None:
    message = slack_payload(EVENT)
    assert message["text"] == "dockyard/staging: promoted sha256:bbbbbbbbbbbb (was sha256:aaaaaaaaaaaa)"
    (attachment,) = message["attachments"]
    assert attachment["color"] == "good"
    fields = {field["title"]: field["value"] for field in attachment["fields"]}
    assert fields == {
        "Stack": "staging",
        "Image": EVENT.image,
        "Before": EVENT.previous,
        "Detail": "image.ref",
        "By": "ci@runner",
    }
    assert slack_payload(replace(EVENT, event=Event.ROLLED_BACK))["attachments"][0]["color"] == "danger"


def test_the_cloudevent_is_structured_json_of_spec_1_0() -> None:
    event = cloudevent(replace(EVENT, event=Event.CANARY_ABORTED, run_url="https://ci.example/run/7"))
    assert event == {
        "specversion": "1.0",
        "type": "dev.dockyard.release.canary-aborted",
        "source": "/dockyard/dockyard/staging",
        "subject": "staging",
        "id": EVENT.id,
        "time": "2026-12-05T08:00:00Z",
        "datacontenttype": "application/json",
        "data": {
            "event": "canary-aborted",
            "project": "dockyard",
            "stack": "staging",
            "image": EVENT.image,
            "previous": EVENT.previous,
            "detail": "image.ref",
            "actor": "ci@runner",
            "runUrl": "https://ci.example/run/7",
            "at": "2026-12-05T08:00:00+00:00",
        },
    }
    assert ReleaseEvent(Event.DEPLOYED, "p", "s", "a").id != ReleaseEvent(Event.DEPLOYED, "p", "s", "a").id


# --- sending ---------------------------------------------------------------------------------------------------


def client(*answers: int | Exception, seen: list[httpx.Request]) -> httpx.Client:
    """A client whose receiver answers each request with the next status (or raises the next error)."""
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer)

    return httpx.Client(transport=httpx.MockTransport(handle))


def test_a_failed_attempt_is_retried_once_after_a_pause(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[httpx.Request] = []
    pauses: list[float] = []
    delivery = deliver(client(503, 200, seen=seen), Target("cloudevents", URL), EVENT, sleep=pauses.append)
    assert (delivery.sent, delivery.attempts, pauses) == (True, 2, [RETRY_DELAY])
    assert seen[0].content == seen[1].content  # the same event both times
    assert seen[0].headers["content-type"] == CLOUDEVENTS_CONTENT_TYPE
    assert json.loads(seen[0].content)["id"] == EVENT.id
    assert not caplog.records


def test_a_second_failure_is_logged_by_host_only_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[httpx.Request] = []
    refused = httpx.ConnectError(f"connection refused while posting to {URL}")
    caplog.set_level(logging.WARNING)
    delivery = deliver(client(refused, 500, seen=seen), Target("slack", URL), EVENT, sleep=lambda _: None)
    assert (delivery.sent, delivery.attempts, delivery.host, delivery.problem) == (
        False,
        2,
        "hooks.example.test",
        "HTTP 500",
    )
    assert len(seen) == 2
    (record,) = caplog.records
    assert "failed twice" in record.getMessage()
    assert "hooks.example.test" in record.getMessage()
    seen.clear()
    delivery = deliver(client(refused, refused, seen=seen), Target("slack", URL), EVENT, sleep=lambda _: None)
    assert delivery.problem == "ConnectError: connection refused while posting to ***"
    assert TOKEN not in caplog.text
    assert "/services/" not in caplog.text


def test_redaction_removes_the_url_and_every_part_that_may_hold_a_token() -> None:
    with_userinfo = "https://bot:pa55word@hooks.example.test/in/abc123?sig=xyz789"
    text = f"failed: {with_userinfo} (path /in/abc123, query sig=xyz789, user bot:pa55word)"
    assert redact(text, with_userinfo) == "failed: *** (path ***, query ***, user ***)"
    assert Target("slack", with_userinfo).host == "hooks.example.test"
    assert "pa55word" not in repr(Target("slack", with_userinfo))


def test_announce_decrypts_only_when_the_stack_has_webhooks_and_sends_each_one_once() -> None:
    asked: list[str] = []

    def decrypt(key: str) -> str:
        asked.append(key)
        return json.dumps([{"kind": "slack", "url": URL}, {"kind": "cloudevents", "url": URL + "&ce"}])

    assert announce(view_with([], decrypt), EVENT) == []
    assert asked == []
    seen: list[httpx.Request] = []
    webhooks = [{"kind": "slack", "url": CIPHERTEXT}, {"kind": "cloudevents", "url": CIPHERTEXT}]
    deliveries = announce(view_with(webhooks, decrypt), EVENT, client=client(200, 202, seen=seen))
    assert asked == ["dockyard:notifications"]
    assert [(d.kind, d.sent, d.attempts) for d in deliveries] == [("slack", True, 1), ("cloudevents", True, 1)]
    assert [str(r.url) for r in seen] == [URL, URL + "&ce"]
    assert "text" in json.loads(seen[0].content)
    assert json.loads(seen[1].content)["specversion"] == "1.0"


@pytest.mark.parametrize(
    "decrypted",
    [RuntimeError("pulumi config failed: error: incorrect passphrase"), "not json", "[]", '[{"kind": "slack"}]'],
)
def test_announce_never_raises_when_the_webhooks_cannot_be_read(
    decrypted: str | Exception, caplog: pytest.LogCaptureFixture
) -> None:
    def decrypt(key: str) -> str:
        if isinstance(decrypted, Exception):
            raise decrypted
        return decrypted

    caplog.set_level(logging.WARNING)
    view = view_with([{"kind": "slack", "url": CIPHERTEXT}], decrypt)
    assert announce(view, EVENT, client=client(seen=[])) == []
    (record,) = caplog.records
    assert record.getMessage().startswith("notification promoted of staging not sent: dockyard:notifications cannot")


# --- who announces ---------------------------------------------------------------------------------------------


def test_an_applied_promotion_is_announced_once_and_a_preview_is_not(command: Callable[[], Project]) -> None:
    sent: list[tuple[str, ReleaseEvent]] = []
    moves = replace(releases(command()), announce=lambda view, event: sent.append((view.name, event)))
    moves.promote("local", STAGING, yes=False, confirm=lambda: False)
    assert sent == []
    moves.promote("local", STAGING, yes=True, confirm=lambda: True)
    ((stack, event),) = sent
    assert (stack, event.event, event.stack, event.image, event.project) == (
        STAGING,
        Event.PROMOTED,
        STAGING,
        BUILT,
        "dockyard",
    )


def test_a_move_is_announced_only_once_its_lock_is_released(
    command: Callable[[], Project], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow webhook (10 s timeout, one retry) never holds the stack's lock: other operators' moves go on."""
    order: list[str] = []
    project = command()
    held = project.lock

    @contextmanager
    def lock(stack: str) -> Iterator[None]:
        with held(stack):
            order.append("locked")
            yield
        order.append("released")

    monkeypatch.setattr(project, "lock", lock)
    moves = replace(releases(project), announce=lambda view, event: order.append(f"announced {event.event}"))
    moves.promote("local", STAGING, yes=True, confirm=lambda: True)
    assert order == ["locked", "released", f"announced {Event.PROMOTED}"]


def test_a_failed_verification_is_announced_and_a_passed_one_is_not(tmp_path: Path) -> None:
    sent: list[ReleaseEvent] = []
    answers = [Check("health", True, "200")]

    def verifier() -> Verifier:
        return Verifier(
            FakeProject(tmp_path),
            kube=FakeCluster(),
            local_check=lambda *_: answers,
            announce=lambda _, e: sent.append(e),
        )

    assert verifier().verify("local-prod", trigger="switch to blue").passed
    assert sent == []
    answers[:] = [Check("health", False, "HTTP 503 from /healthz")]
    record = verifier().verify("local-prod", trigger="switch to blue")
    ((event),) = sent
    assert (event.event, event.stack, event.image) == (Event.VERIFY_FAILED, "local-prod", record.image)
    assert event.detail == "switch to blue: health: HTTP 503 from /healthz"
