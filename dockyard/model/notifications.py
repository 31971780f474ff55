"""What a stack's webhooks are told of (:class:`Event`), and where they are (``dockyard:notifications``).

The sending is :mod:`dockyard.releases.notify`'s; the pipelines name the events their failure paths send.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, model_validator

from dockyard.model.problems import Problem
from dockyard_components.app_spec import Model

#: The stack key of the webhooks.
KEY = "dockyard:notifications"


class Event(StrEnum):
    """What happened to a release; the value is ``dockyard notify --event``'s and the CloudEvents type's last part."""

    BUILD_FAILED = "build-failed"
    DEPLOYED = "deployed"
    DEPLOY_FAILED = "deploy-failed"
    PROMOTED = "promoted"
    SWITCHED = "switched"
    CANARY_ABORTED = "canary-aborted"
    ROLLED_BACK = "rolled-back"
    VERIFY_FAILED = "verify-failed"

    @property
    def bad(self) -> bool:
        """Someone should look: a failure, or a move that undid a release."""
        return self not in (Event.DEPLOYED, Event.PROMOTED, Event.SWITCHED)

    @property
    def headline(self) -> str:
        return self.value.replace("-", " ")


class SecureValue(Model):
    """A value the stack file holds encrypted (``{secure: v1:...}``): the ciphertext, never the plaintext."""

    secure: str = Field(min_length=1, description="what pulumi config set --secret wrote")


class Webhook(Model):
    """A webhook told of this stack's releases. Its URL carries the receiver's token, so it is a secret."""

    kind: Literal["slack", "cloudevents"] = Field(
        description="slack: an incoming webhook's JSON (Slack, Mattermost, Rocket.Chat); cloudevents: a CloudEvents "
        "1.0 JSON event (structured mode)"
    )
    url: SecureValue = Field(
        description="encrypted: pulumi config set --secret --path 'dockyard:notifications[<n>].url' https://..."
    )

    @model_validator(mode="before")
    @classmethod
    def _url_encrypted(cls, data: Any) -> Any:
        # Refused here, naming the key only: pydantic's own error would quote the plaintext URL in the message.
        if isinstance(data, Mapping) and "url" in data:
            url = data["url"]
            if not (isinstance(url, Mapping) and set(url) == {"secure"} and isinstance(url["secure"], str)):
                raise ValueError(
                    "url: stored in plaintext; allowed: an encrypted value (pulumi config set --secret --path "
                    "'dockyard:notifications[<n>].url' URL)"
                )
        return data


def shape_problem(stack: str, value: Any) -> Problem | None:
    """Why ``dockyard:notifications`` is no list of webhook mappings, naming types only: pydantic's own message would
    quote the value, which may be a plaintext URL."""
    allowed = "allowed: a list of webhooks ({kind, url})"
    if not isinstance(value, list):
        return Problem(stack, KEY, f"found {type(value).__name__}", allowed)
    strays = [str(i) for i, item in enumerate(value) if not isinstance(item, Mapping)]
    if strays:
        return Problem(stack, KEY, f"found no mapping at [{', '.join(strays)}]", allowed)
    return None
