"""Reading custsync's messages as they sit in Redis (queues and kombu's unacked hash), for
the journal and erasure: which envelopes one message carries."""

from __future__ import annotations

import base64
import json
from typing import Any

from custsync.state.keys import BATCH_TASK_NAME


def envelopes_in(message_json: str | bytes) -> list[Any]:
    """The envelopes inside one kombu Redis message: one for ``apply_update``, each item's
    for ``apply_batch``; [] for anything unreadable."""
    return [envelope for envelope, _ in items_in(message_json)]


def items_in(message_json: str | bytes) -> list[tuple[Any, Any]]:
    """(envelope, delivery or None) of each event inside one kombu Redis message."""
    try:
        message = json.loads(message_json)
        if isinstance(message, list):  # kombu's unacked hash stores [message, exchange, key]
            message = message[0]
        raw = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            raw = base64.b64decode(raw)
        body = json.loads(raw)  # a body without body_encoding is the JSON text itself
        args, kwargs = body[0], body[1]
        if message.get("headers", {}).get("task") == BATCH_TASK_NAME:
            return [(item["envelope"], item.get("delivery")) for item in args[0]]
        return [(args[0], kwargs.get("delivery"))] if args else []
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return []
