"""The message a Celery producer would put on the Redis broker, built without talking to it.

DLQ replay pushes it from a Lua script that also deletes the entry (custsync.dlq.replay), so
an event is back on the queue and out of the DLQ in one atomic step. The layout is kombu's
Redis transport (``Channel._put`` after ``_inplace_augment_message``) around Celery's task
protocol 2 (``app.amqp.as_task_v2``); a worker cannot tell it from one sent by ``send_task``.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from typing import Any

from celery.utils.nodenames import anon_nodename
from kombu.serialization import dumps

from custsync.privacy import named_or_pseudonym
from custsync.state.keys import BATCH_TASK_NAME, QUEUE, TASK_NAME, partner_queue
from custsync.targets import REGISTRY


def label(envelope: Any) -> str:
    """What Flower and Celery logs show instead of the envelope's personal data."""
    return f"(<envelope {_shown_id(envelope)} {_shown_target(envelope)}>,)"


def _shown_target(envelope: Any) -> str:
    """A partner's name as it is; any other text by its pseudonym, as the DLQ shows it."""
    target = envelope.get("target") if isinstance(envelope, Mapping) else None
    if not isinstance(target, str) or not target:
        return "?"
    return named_or_pseudonym(target, REGISTRY)


def _shown_id(envelope: Any) -> str:
    event_id = envelope.get("event_id") if isinstance(envelope, Mapping) else None
    return str(event_id)[:128]


LABEL_IDS_MAX_CHARS = 4000  # a batch's label lists its event ids up to about this long


def batch_label(envelopes: list[Any]) -> str:
    """``label`` for a batch: how many events and their ids (an operator searching Flower
    for an event finds its batch), never a value."""
    ids: list[str] = []
    size = 0
    for envelope in envelopes:
        event_id = _shown_id(envelope)
        size += len(event_id) + 2
        if size > LABEL_IDS_MAX_CHARS:
            ids.append(f"… {len(envelopes) - len(ids)} more")
            break
        ids.append(event_id)
    return f"(<batch of {len(envelopes)} events: {', '.join(ids)}>,)"


def item_json(envelope: Any, delivery: Mapping[str, Any] | None, envelope_json: str = "") -> str:
    """One batch item, ``{"envelope": …, "delivery": …}`` as JSON; the journal stores the same
    text. ``envelope_json``: the envelope already encoded (a producer's size check did it)."""
    encoded = envelope_json or json.dumps(envelope, separators=(",", ":"))
    record = json.dumps(dict(delivery)) if delivery else "{}"  # a fresh event has none
    return f'{{"envelope":{encoded},"delivery":{record}}}'


# Protocol v2's third body element: no callbacks, errbacks, chain or chord.
_NO_EMBED = '{"callbacks":null,"errbacks":null,"chain":null,"chord":null}'


def queue_name(envelope: Any) -> str:
    """Where custsync's producers put an event: its partner's queue, or the public one
    when it names no known partner (the worker then refuses it with the reason)."""
    target = envelope.get("target") if isinstance(envelope, Mapping) else None
    return partner_queue(target) if isinstance(target, str) and target in REGISTRY else QUEUE


def key_prefix(app: Any) -> str:
    """kombu's global key prefix for the app's Redis broker (usually none)."""
    options = app.conf.broker_transport_options or {}
    return str(options.get("global_keyprefix", ""))


class MessageBuilder:
    """Builds messages for one app; what does not change per message is looked up once
    (Celery's configuration lookups and the origin host name cost ~30 % of a message)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.prefix = key_prefix(app)
        self.origin = anon_nodename()
        self.as_task = app.amqp.as_task_v2

    def key_for(self, envelope: Any) -> str:
        """The Redis list kombu uses for this event's queue (default priority)."""
        return f"{self.prefix}{queue_name(envelope)}"

    def build(
        self, envelope: Any, delivery: Mapping[str, Any] | None, queue: str | None = None
    ) -> str:
        """The JSON payload of one ``custsync.apply_update`` message, for LPUSH on
        ``key_for(envelope)``."""
        task_id = str(uuid.uuid4())
        kwargs = {"delivery": dict(delivery)} if delivery else {}
        task = self.as_task(
            task_id,
            TASK_NAME,
            args=(envelope,),
            kwargs=kwargs,
            argsrepr=label(envelope),
            kwargsrepr="{}",
            ignore_result=None,
            origin=self.origin,
        )
        content_type, content_encoding, body = dumps(task.body, serializer="json")  # type: ignore[no-untyped-call]
        raw = body if isinstance(body, bytes) else body.encode(content_encoding or "utf-8")
        return self._wrap(task, raw, content_type, content_encoding, queue or queue_name(envelope))

    def build_batch(self, items: list[str], queue: str, shown: str) -> str:
        """One ``custsync.apply_batch`` message of already-encoded items (``item_json``) for
        LPUSH on ``prefix + queue``: the body is joined text, no envelope is encoded again."""
        raw = f"[[[{','.join(items)}]],{{}},{_NO_EMBED}]".encode()
        return self._wrap(self._batch_task(shown), raw, "application/json", "utf-8", queue)

    def batch_frame(self, queue: str, shown: str) -> tuple[str, str]:
        """The text of an ``apply_batch`` message before and after its body, for a Lua
        script to put a body between (DLQ replay). The body travels as JSON text, no base64
        (Lua has none): kombu decodes a body without ``body_encoding`` as is."""
        task = self._batch_task(shown)
        message = json.loads(self._wrap(task, b"", "application/json", "utf-8", queue))
        del message["body"], message["properties"]["body_encoding"]
        rest = json.dumps(message)
        return '{"body":', "," + rest[1:]

    def _batch_task(self, shown: str) -> Any:
        """Celery's headers and properties of an ``apply_batch`` call (its body is ours)."""
        return self.as_task(
            str(uuid.uuid4()),
            BATCH_TASK_NAME,
            args=(),
            kwargs={},
            argsrepr=shown,
            kwargsrepr="{}",
            ignore_result=None,
            origin=self.origin,
        )

    def _wrap(
        self, task: Any, raw: bytes, content_type: str, content_encoding: str, queue: str
    ) -> str:
        """kombu's Redis transport envelope around a task body."""
        message = {
            "body": base64.b64encode(raw).decode("ascii"),
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": task.headers,
            "properties": {
                **task.properties,
                "delivery_mode": 2,  # persistent, as kombu's default for a direct exchange
                # The anonymous exchange: kombu's Redis transport routes by queue name alone.
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return json.dumps(message)


def build_message(
    app: Any, envelope: Any, delivery: Mapping[str, Any] | None, queue: str | None = None
) -> tuple[str, str]:
    """(Redis list key, JSON payload) of one message; for many, use one MessageBuilder.
    ``queue``: as a plain client would send it there (tests, benchmarks), not routed."""
    builder = MessageBuilder(app)
    key = f"{builder.prefix}{queue}" if queue else builder.key_for(envelope)
    return key, builder.build(envelope, delivery, queue)
