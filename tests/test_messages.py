"""The replay message is the one Celery's producer would send, byte layout and all.
(That a real worker consumes one is shown in test_dlq_replay_e2e.py.)"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from custsync.broker.messages import build_message
from custsync.embedded.server import EphemeralRedis
from custsync.producer import enqueue
from custsync.sandbox import Sandbox
from tests.dlq_support import Quiet
from tests.events import MINTED_EXAMPLE, envelope

PER_MESSAGE = {"id", "root_id", "correlation_id", "delivery_tag", "reply_to", "origin"}


@pytest.fixture
def quiet(redis_server: EphemeralRedis, sandbox: Sandbox) -> Quiet:
    return Quiet(redis_server, sandbox)


def _stable(part: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in part.items() if k not in PER_MESSAGE}


def test_build_message_is_what_the_celery_producer_pushes(quiet: Quiet) -> None:
    app = quiet.app
    event = envelope("minted", "C-1", dict(MINTED_EXAMPLE))
    delivery = {"attempts": 0, "first_seen_at": 1.5, "replays": 1, "force": False}
    enqueue([(event, delivery)], app)
    (sent_raw,) = quiet.raw.lrange("custsync.minted", 0, -1)  # Minted's own queue

    key, built_raw = build_message(app, event, delivery)
    sent, built = json.loads(sent_raw), json.loads(built_raw)
    assert key == "custsync.minted"
    assert set(built) == set(sent)
    assert _stable(built["headers"]) == _stable(sent["headers"])
    assert built["headers"]["argsrepr"] == f"(<envelope {event['event_id']} {event['target']}>,)"
    # Celery also copies argsrepr/kwargsrepr into the properties; the worker reads headers.
    sent_props = {
        k: v for k, v in sent["properties"].items() if k not in ("argsrepr", "kwargsrepr")
    }
    assert _stable(built["properties"]) == _stable(sent_props)
    assert built["properties"]["correlation_id"] == built["headers"]["id"]
    for k in ("content-type", "content-encoding"):
        assert built[k] == sent[k]
    body = json.loads(base64.b64decode(built["body"]))
    assert body == json.loads(base64.b64decode(sent["body"]))
    assert body[0] == [event]
    assert MINTED_EXAMPLE["identity_number"] not in json.dumps(built["headers"])
