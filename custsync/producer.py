"""Producers: validate, then enqueue ``custsync.apply_update`` messages.

``enqueue`` batches the broker writes: one pipelined round trip per 1,000 events. On a plain
``redis://`` broker it builds each message itself (``custsync.broker.messages``, the layout kombu's
Redis transport writes, also used by DLQ replay) and LPUSHes it: kombu's ``send_task`` costs
~200 µs of CPU per message, 6x more, and the retry poller pays it inside the worker while a
backlog drains (bench/: bulk_publish, backlog_memory). Other brokers go through kombu.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis
from marshmallow import ValidationError

from custsync.broker.messages import MessageBuilder, label, queue_name
from custsync.celery_app import app as default_app
from custsync.celery_app import runtime_of
from custsync.errors import InvalidEvent
from custsync.redis_connect import connect, is_sentinel
from custsync.settings import Settings
from custsync.state.journal import Journal
from custsync.state.keys import TASK_NAME
from custsync.validation import validate_event

BATCH = 1000


class EventValidationError(ValidationError):
    """An event failed validation; ``messages`` maps each field to its errors."""


def _settings(app: Any = None) -> Settings:
    """The settings of the app's own runtime (a producer_app), else of this process."""

    return runtime_of(app).settings


def check(envelope: Any, settings: Settings | None = None) -> None:
    """Validate one envelope as a producer: schema and changes, not worker configuration."""

    settings = settings or _settings()
    try:
        validate_event(envelope, settings, require_configured=False)
    except InvalidEvent as exc:
        raise EventValidationError(exc.details or {"_envelope": [str(exc)]}) from None
    size = len(json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode())
    if size > settings.max_event_bytes:
        message = (
            f"{size} bytes as JSON, over CUSTSYNC_MAX_EVENT_BYTES ({settings.max_event_bytes})."
        )
        raise EventValidationError({"_envelope": [message]})


_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def _redis_broker(app: Any) -> redis.Redis | None:
    """A client for the app's broker when it is one Redis (a plain server, or the master of a
    Sentinel-watched one, which is then the state Redis too); None otherwise."""
    url = app.conf.broker_url
    if isinstance(url, str) and url.startswith("sentinel://"):
        url = runtime_of(app).redis_url  # ours, not kombu's ";"-joined form
        if not is_sentinel(url):
            return None  # a Sentinel broker apart from the state Redis: kombu's path
    elif not isinstance(url, str) or not url.startswith("redis://") or ";" in url:
        return None  # TLS, sockets, failover lists, AMQP: kombu knows their options
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            timeout = (app.conf.broker_transport_options or {}).get("socket_timeout") or 5.0
            client = _clients[url] = connect(
                url,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
                health_check_interval=30,
            )
        return client


def enqueue(items: Iterable[tuple[Any, Mapping[str, Any] | None]], app: Any = None) -> int:
    """Put already-validated envelopes (with optional delivery state) on the queue."""
    if app is None:
        app = default_app
    client = _redis_broker(app)
    if client is None:
        return _send_tasks(items, app)

    builder = MessageBuilder(app)
    journal = _journal(app)
    sent = 0
    pipe = client.pipeline(transaction=False)
    chunk: list[tuple[Any, Mapping[str, Any] | None]] = []

    def flush() -> None:
        if journal is not None:  # noted first: a message lost after this comes back
            journal.note(pipe, chunk)
        for envelope, delivery in chunk:
            pipe.lpush(builder.key_for(envelope), builder.build(envelope, delivery))
        pipe.execute()
        chunk.clear()

    for item in items:
        chunk.append(item)
        sent += 1
        if len(chunk) >= BATCH:
            flush()
    flush()
    return sent


def _journal(app: Any) -> Journal | None:
    """The journal, when the broker is the state Redis (the default)."""

    runtime = runtime_of(app)
    if not runtime.broker_shares_state_redis:
        return None
    return Journal(None, runtime.keys)


def _send_tasks(items: Iterable[tuple[Any, Mapping[str, Any] | None]], app: Any) -> int:
    sent = 0
    with app.producer_or_acquire() as producer, producer.batch(BATCH):
        for envelope, delivery in items:
            app.send_task(
                TASK_NAME,
                args=(envelope,),
                kwargs={"delivery": dict(delivery)} if delivery else {},
                queue=queue_name(envelope),
                producer=producer,
                argsrepr=label(envelope),
                kwargsrepr="{}",
            )
            sent += 1
    return sent


def publish(envelope: Mapping[str, Any], *, app: Any = None) -> str:
    """Validate and enqueue one event; returns its event id.

    Raises EventValidationError (a marshmallow ValidationError) naming each bad field;
    nothing is enqueued then.
    """
    check(envelope, _settings(app))
    enqueue([(envelope, None)], app)
    return str(envelope["event_id"])


def publish_many(envelopes: Iterable[Mapping[str, Any]], *, app: Any = None) -> int:
    """Validate every event, then enqueue them all in pipelined batches.

    All or nothing: if any event is invalid, EventValidationError maps its position
    to its field errors and nothing is enqueued.
    """
    batch: Sequence[Mapping[str, Any]] = list(envelopes)
    settings = _settings(app)
    errors: dict[int, Any] = {}
    for i, envelope in enumerate(batch):
        try:
            check(envelope, settings)
        except EventValidationError as exc:
            errors[i] = exc.messages
    if errors:
        raise EventValidationError(errors)
    return enqueue(((e, None) for e in batch), app)
