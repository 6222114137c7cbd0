"""Producers: validate, then enqueue messages: up to CUSTSYNC_BATCH_MAX events of one queue in
one ``custsync.apply_batch`` message, a lone event as ``custsync.apply_update``.

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

from custsync.broker.messages import MessageBuilder, batch_label, item_json, label, queue_name
from custsync.celery_app import app as default_app
from custsync.celery_app import runtime_of
from custsync.dlq.entry import entry_id_for
from custsync.errors import InvalidEvent
from custsync.redis_connect import connect, is_sentinel
from custsync.settings import Settings
from custsync.state.journal import Journal
from custsync.state.keys import BATCH_TASK_NAME, TASK_NAME
from custsync.validation import validate_event

BATCH = 1000


class EventValidationError(ValidationError):
    """An event failed validation; ``messages`` maps each field to its errors."""


def _settings(app: Any = None) -> Settings:
    """The settings of the app's own runtime (a producer_app), else of this process."""

    return runtime_of(app).settings


def check(envelope: Any, settings: Settings | None = None) -> None:
    """Validate one envelope as a producer: schema and changes, not worker configuration."""
    checked_json(envelope, settings or _settings())


def checked_json(envelope: Any, settings: Settings) -> str:
    """Validate one envelope and return it encoded as JSON, the text its message carries:
    the size rule measures the same encoding, so an event is encoded once."""
    try:
        validate_event(envelope, settings, require_configured=False)
    except InvalidEvent as exc:
        raise EventValidationError(exc.details or {"_envelope": [str(exc)]}) from None
    encoded = encode_envelope(envelope)
    if encoded.isascii() and "\\u" not in encoded:
        size = len(encoded)  # ASCII only: the UTF-8 size is the length
    else:  # the limit counts UTF-8 bytes of the unescaped text
        plain = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
        size = len(plain.encode("utf-8", "surrogatepass"))
    if size > settings.max_event_bytes:
        message = (
            f"{size} bytes as JSON, over CUSTSYNC_MAX_EVENT_BYTES ({settings.max_event_bytes})."
        )
        raise EventValidationError({"_envelope": [message]})
    return encoded


def encode_envelope(envelope: Any) -> str:
    return json.dumps(envelope, separators=(",", ":"))


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


Item = tuple[Any, Mapping[str, Any] | None]  # (envelope, delivery state or None)
# A batch message is closed before its items pass this many bytes (the guard takes 16 MiB).
BATCH_SPLIT_BYTES = 4 * 1024 * 1024


def enqueue(items: Iterable[Item], app: Any = None) -> int:
    """Put already-validated envelopes (with optional delivery state) on their queues."""
    return _enqueue(((envelope, delivery, "") for envelope, delivery in items), app)


def _enqueue(items: Iterable[tuple[Any, Mapping[str, Any] | None, str]], app: Any) -> int:
    """``enqueue`` of (envelope, delivery, envelope as JSON or "") items."""
    if app is None:
        app = default_app
    client = _redis_broker(app)
    batch_max = runtime_of(app).settings.batch_max
    if client is None:
        return _send_tasks(((e, d) for e, d, _ in items), app, batch_max)
    packer = _Packer(MessageBuilder(app), _journal(app), batch_max)
    pipe = client.pipeline(transaction=False)
    sent = 0
    for envelope, delivery, encoded in items:
        packer.add(envelope, delivery, encoded)
        sent += 1
        if packer.pending >= BATCH:
            packer.flush(pipe)
            pipe.execute()
    packer.flush(pipe)
    pipe.execute()
    return sent


class _Packer:
    """Packs events into messages per queue: up to ``batch_max`` a message (one event goes as
    a plain ``apply_update``), the journal noted before the messages in the same pipeline."""

    def __init__(self, builder: MessageBuilder, journal: Journal | None, batch_max: int) -> None:
        self.builder = builder
        self.journal = journal
        self.batch_max = batch_max
        self.open: dict[str, list[tuple[Any, Mapping[str, Any] | None, str]]] = {}
        self.open_bytes: dict[str, int] = {}
        self.noted: dict[str, str] = {}
        self.ready: list[tuple[str, str]] = []  # (list key, message)
        self.pending = 0

    def add(self, envelope: Any, delivery: Mapping[str, Any] | None, encoded: str) -> None:
        text = item_json(envelope, delivery, encoded)
        key = self.builder.key_for(envelope)
        batch = self.open.setdefault(key, [])
        batch.append((envelope, delivery, text))
        self.open_bytes[key] = self.open_bytes.get(key, 0) + len(text)
        self.noted[entry_id_for(envelope)] = text
        self.pending += 1
        if len(batch) >= self.batch_max or self.open_bytes[key] >= BATCH_SPLIT_BYTES:
            self._close(key)

    def _close(self, key: str) -> None:
        batch = self.open.pop(key)
        self.open_bytes.pop(key)
        if len(batch) == 1:
            envelope, delivery, _ = batch[0]
            self.ready.append((key, self.builder.build(envelope, delivery)))
            return
        queue = key[len(self.builder.prefix) :]
        shown = batch_label([envelope for envelope, _, _ in batch])
        message = self.builder.build_batch([text for _, _, text in batch], queue, shown)
        self.ready.append((key, message))

    def flush(self, pipe: Any) -> None:
        for key in list(self.open):
            self._close(key)
        if self.journal is not None and self.noted:  # noted first: a lost message comes back
            self.journal.note_bodies(pipe, self.noted)
        for key, message in self.ready:
            pipe.lpush(key, message)
        self.noted, self.ready, self.pending = {}, [], 0


def _journal(app: Any) -> Journal | None:
    """The journal, when the broker is the state Redis (the default)."""

    runtime = runtime_of(app)
    if not runtime.broker_shares_state_redis:
        return None
    return Journal(None, runtime.keys)


def _send_tasks(items: Iterable[Item], app: Any, batch_max: int) -> int:
    """Another broker: kombu sends, batched per queue the same way."""
    sent = 0
    open_batches: dict[str, list[Item]] = {}
    with app.producer_or_acquire() as producer, producer.batch(BATCH):

        def send(queue: str) -> None:
            batch = open_batches.pop(queue)
            if len(batch) == 1:
                envelope, delivery = batch[0]
                app.send_task(
                    TASK_NAME,
                    args=(envelope,),
                    kwargs={"delivery": dict(delivery)} if delivery else {},
                    queue=queue,
                    producer=producer,
                    argsrepr=label(envelope),
                    kwargsrepr="{}",
                )
                return
            app.send_task(
                BATCH_TASK_NAME,
                args=([{"envelope": e, "delivery": dict(d or {})} for e, d in batch],),
                queue=queue,
                producer=producer,
                argsrepr=batch_label([e for e, _ in batch]),
                kwargsrepr="{}",
            )

        for envelope, delivery in items:
            queue = queue_name(envelope)
            open_batches.setdefault(queue, []).append((envelope, delivery))
            sent += 1
            if len(open_batches[queue]) >= batch_max:
                send(queue)
        for queue in list(open_batches):
            send(queue)
    return sent


def publish(envelope: Mapping[str, Any], *, app: Any = None) -> str:
    """Validate and enqueue one event; returns its event id.

    Raises EventValidationError (a marshmallow ValidationError) naming each bad field;
    nothing is enqueued then.
    """
    encoded = checked_json(envelope, _settings(app))
    _enqueue([(envelope, None, encoded)], app)
    return str(envelope["event_id"])


def publish_many(envelopes: Iterable[Mapping[str, Any]], *, app: Any = None) -> int:
    """Validate every event, then enqueue them all in pipelined batches.

    All or nothing: if any event is invalid, EventValidationError maps its position
    to its field errors and nothing is enqueued.
    """
    batch: Sequence[Mapping[str, Any]] = list(envelopes)
    settings = _settings(app)
    errors: dict[int, Any] = {}
    encoded: list[str] = []
    for i, envelope in enumerate(batch):
        try:
            encoded.append(checked_json(envelope, settings))
        except EventValidationError as exc:
            errors[i] = exc.messages
    if errors:
        raise EventValidationError(errors)
    return _enqueue(((e, None, text) for e, text in zip(batch, encoded, strict=True)), app)
