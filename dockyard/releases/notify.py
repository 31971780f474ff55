"""Release notifications: the events a stack's webhooks (``dockyard:notifications``) are told of, and their sending.

Two payloads: a Slack incoming webhook's JSON (``text`` and one attachment; Mattermost and Rocket.Chat take the same),
and a CloudEvents 1.0 event in structured JSON mode (``type`` ``dev.dockyard.release.<event>``). The moves, the
verifier and ``dockyard notify`` (the pipelines' failure paths) send them after the fact: a notification that fails
never fails a release. Each webhook is tried twice; a second failure is logged with the webhook's host only, since
its URL carries the receiver's token. The URLs are decrypted when an event is sent, never before, never stored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from dockyard.model.notifications import KEY, Event, Webhook
from dockyard.model.stack import StackView
from dockyard_components.image_ref import short_image

log = logging.getLogger(__name__)

#: Seconds a webhook gets to answer, per attempt: a notification may hold up a command, never for long.
TIMEOUT = 10.0
#: Seconds between the first attempt and the one retry.
RETRY_DELAY = 2.0
CLOUDEVENTS_TYPE = "dev.dockyard.release"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"


@dataclass(frozen=True)
class ReleaseEvent:
    """One event of one stack; ``image`` is what it is about, ``previous`` what the stack served before."""

    event: Event
    project: str
    stack: str
    actor: str
    image: str | None = None
    previous: str | None = None
    #: Why (a failed check, an abort's reason) or what (the move's config write), in one line.
    detail: str | None = None
    #: The CI run that sent it, when a pipeline did.
    run_url: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_json(self) -> dict[str, Any]:
        data = {
            "event": self.event.value,
            "project": self.project,
            "stack": self.stack,
            "image": self.image,
            "previous": self.previous,
            "detail": self.detail,
            "actor": self.actor,
            "runUrl": self.run_url,
            "at": self.at.isoformat(timespec="seconds"),
        }
        return {key: value for key, value in data.items() if value is not None}


# --- payloads ---------------------------------------------------------------------------------------------------


def summary(event: ReleaseEvent) -> str:
    """One line: ``prod: promoted app@sha256:1234567 (from ...)``."""
    text = f"{event.project}/{event.stack}: {event.event.headline}"
    if event.image:
        text += f" {short_image(event.image)}"
    if event.previous and event.previous != event.image:
        text += f" (was {short_image(event.previous)})"
    return text


def slack_payload(event: ReleaseEvent) -> dict[str, Any]:
    """A Slack incoming webhook's message: the summary as ``text``, the facts as one coloured attachment."""
    facts = {"Stack": event.stack, "Image": event.image, "Before": event.previous, "Detail": event.detail}
    facts |= {"By": event.actor, "Run": event.run_url}
    return {
        "text": summary(event),
        "attachments": [
            {
                "color": "danger" if event.event.bad else "good",
                "fallback": summary(event),
                "fields": [
                    {"title": title, "value": value, "short": title in ("Stack", "By")}
                    for title, value in facts.items()
                    if value
                ],
                "ts": int(event.at.timestamp()),
            }
        ],
    }


def cloudevent(event: ReleaseEvent) -> dict[str, Any]:
    """The event in CloudEvents 1.0 structured JSON mode (``source`` + ``id`` identify it; ``subject`` the stack)."""
    return {
        "specversion": "1.0",
        "type": f"{CLOUDEVENTS_TYPE}.{event.event.value}",
        "source": f"/dockyard/{event.project}/{event.stack}",
        "subject": event.stack,
        "id": event.id,
        "time": event.at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": event.to_json(),
    }


#: Per webhook kind: the body, and its content type.
PAYLOADS: Mapping[str, tuple[Callable[[ReleaseEvent], dict[str, Any]], str]] = {
    "slack": (slack_payload, "application/json"),
    "cloudevents": (cloudevent, CLOUDEVENTS_CONTENT_TYPE),
}


# --- sending ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A webhook with its decrypted URL, for the time one event is sent."""

    kind: str
    url: str = field(repr=False)

    @property
    def host(self) -> str:
        """What a log line may name: the host, never the path or query (the token lives there) or a userinfo."""
        try:
            return httpx.URL(self.url).host or "a URL without a host"
        except (httpx.InvalidURL, TypeError):
            return "an invalid URL"


@dataclass(frozen=True)
class Delivery:
    """How sending one event to one webhook went (``problem``: the last attempt's, redacted)."""

    kind: str
    host: str
    attempts: int
    problem: str | None = None

    @property
    def sent(self) -> bool:
        return self.problem is None


def redact(text: str, url: str) -> str:
    """``text`` without ``url`` or any part of its path and query."""
    parts = [url]
    try:
        parsed = httpx.URL(url)
        parts += [str(parsed.copy_with(query=None, fragment=None)), parsed.path, parsed.query.decode()]
        parts += [parsed.userinfo.decode()]
    except (httpx.InvalidURL, TypeError):
        pass
    for part in sorted({p for p in parts if p and p != "/"}, key=len, reverse=True):
        text = text.replace(part, "***")
    return text


def _attempt(client: httpx.Client, target: Target, body: bytes, content_type: str) -> str | None:
    """One POST; None when the receiver took it (2xx), else what went wrong, without the URL."""
    try:
        response = client.post(target.url, content=body, headers={"Content-Type": content_type})
    except Exception as error:  # a webhook's failure, whatever it is, must not stop the release
        return redact(f"{error.__class__.__name__}: {error}", target.url)
    if response.is_success:
        return None
    return f"HTTP {response.status_code}"


def deliver(
    client: httpx.Client, target: Target, event: ReleaseEvent, *, sleep: Callable[[float], None] = time.sleep
) -> Delivery:
    """Send ``event`` to ``target``, once more after :data:`RETRY_DELAY` if the first attempt fails; log a failure."""
    render, content_type = PAYLOADS[target.kind]
    body = json.dumps(render(event)).encode()
    problem = _attempt(client, target, body, content_type)
    attempts = 1
    if problem is not None:
        sleep(RETRY_DELAY)
        problem = _attempt(client, target, body, content_type)
        attempts = 2
    if problem is not None:
        log.warning(
            "notification %s of %s to the %s webhook at %s failed twice (%s); the release is unaffected",
            event.event,
            event.stack,
            target.kind,
            target.host,
            problem,
        )
    return Delivery(target.kind, target.host, attempts, problem)


def targets(webhooks: Sequence[Webhook], decrypted: str) -> list[Target]:
    """The webhooks with their URLs from ``decrypted`` (``pulumi config get dockyard:notifications``'s value)."""
    values = json.loads(decrypted)
    if not isinstance(values, list) or len(values) != len(webhooks):
        raise ValueError(f"{KEY} decrypted to something else than the stack file's {len(webhooks)} webhook(s)")
    urls = [value.get("url") if isinstance(value, dict) else None for value in values]
    if not all(isinstance(url, str) for url in urls):
        raise ValueError(f"{KEY}: a url decrypted to no string")
    return [Target(webhook.kind, str(url)) for webhook, url in zip(webhooks, urls, strict=True)]


def announce(
    view: StackView,
    event: ReleaseEvent,
    *,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Delivery]:
    """Tell ``view``'s webhooks of ``event``; never raises (a failure is logged, without any URL)."""
    webhooks = view.env.notifications
    if not webhooks:
        return []
    try:
        decrypted = view.secret(KEY)
        if decrypted is None:
            raise ValueError(f"{KEY} is not in the stack file")
        found = targets(webhooks, decrypted)
    except Exception as error:  # no notification is worth a failed release
        # An engine error never holds the decrypted value; a parse error of it names no value either.
        log.warning(
            "notification %s of %s not sent: %s cannot be read (%s: %s)",
            event.event,
            event.stack,
            KEY,
            error.__class__.__name__,
            error,
        )
        return []
    with contextlib.ExitStack() as scope:
        http = client or scope.enter_context(httpx.Client(timeout=TIMEOUT))
        return [deliver(http, target, event, sleep=sleep) for target in found]


#: (the stack, the event) → its webhooks told; what the moves and the verifier call (a fake in tests).
Announce = Callable[[StackView, ReleaseEvent], object]
