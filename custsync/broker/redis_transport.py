"""kombu's Redis transport, reusing one client per pool, and safe against raw garbage.

kombu builds a fresh ``redis.Redis`` for every acknowledgement, unacked-record and task
event it writes; each one copies redis-py's table of response callbacks, about a tenth of
a worker's CPU (bench/apply_throughput with ``--profile``). A client on a connection pool
is thread-safe, so one per pool does the same work.

kombu parses each popped item before it records it as unacknowledged; an item that is not
kombu's message layout (not JSON, no ``properties`` or ``delivery_tag``, a body it cannot
decode) raised there and stopped the worker, and the item was gone. Each popped item is
checked first; one that would fail becomes a well-formed wrapper that carries the original
bytes and says what was wrong, which the consumer's guard then sets aside in the DLQ.

Selected by ``celery_config`` for plain ``redis://`` and ``sentinel://`` brokers.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

from custsync.broker.contract import MALFORMED_HEADER, MALFORMED_RAW
from custsync.broker.quarantine import RAW_MAX_BYTES

MALFORMED_CONTENT_TYPE = "application/x-custsync-malformed"
log = logging.getLogger("custsync.transport")

# What a lost connection raises inside kombu: AttributeError is kombu 5.7.0's closed channel.
_LOST = (AttributeError, redis.RedisError, OSError)

# Delivery tags a closing channel could not give back, and acks that could not reach Redis;
# the next channel of this process does both as soon as it consumes (see QoS).
_orphans: set[str] = set()
_acks_due: set[str] = set()
_orphans_lock = threading.Lock()


def _layout_problem(payload: Any, codecs: Mapping[str, Any]) -> str | None:
    """Why kombu could not build a Message from ``payload``, or None if it can."""
    if not isinstance(payload, Mapping):
        return "not a JSON object"
    properties = payload.get("properties")
    if not isinstance(properties, Mapping):
        return "no properties object"
    if not isinstance(properties.get("delivery_tag"), str) or not properties["delivery_tag"]:
        return "no delivery_tag"
    info = properties.get("delivery_info")
    if not isinstance(info, Mapping) or not all(
        isinstance(info.get(k), str) for k in ("exchange", "routing_key")
    ):
        return "no delivery_info with exchange and routing_key"
    headers = payload.get("headers")
    if headers is not None and not isinstance(headers, Mapping):
        return "headers is not an object"
    body, encoding = payload.get("body"), properties.get("body_encoding")
    if body in (None, ""):
        return None
    if not isinstance(body, str):
        return "body is not a string"
    if encoding is not None and not isinstance(encoding, str):
        return "body_encoding is not a string"
    if encoding and encoding.lower() != "utf-8":
        codec = codecs.get(encoding)
        if codec is None:
            return "unknown body_encoding"
        try:
            codec.decode(body)
        except Exception:  # whatever the codec raises, kombu would raise too
            return f"body is not valid {encoding}"
    return None


def wrap_malformed(item: bytes, queue: str, problem: str) -> bytes:
    """A message kombu can carry, holding the original bytes and what was wrong with them."""
    wrapper = {
        "body": "",
        "content-type": MALFORMED_CONTENT_TYPE,
        "content-encoding": "utf-8",
        "headers": {MALFORMED_HEADER: f"broker message: {problem}"},
        "properties": {
            "delivery_tag": str(uuid.uuid4()),
            "delivery_info": {"exchange": "", "routing_key": queue},
            MALFORMED_RAW: base64.b64encode(item[:RAW_MAX_BYTES]).decode(),
        },
    }
    return json.dumps(wrapper).encode()


def checked_item(item: bytes, queue: str, codecs: Mapping[str, Any]) -> bytes:
    try:
        payload = json.loads(item)
    except (ValueError, RecursionError):
        return wrap_malformed(item, queue, "not JSON")
    problem = _layout_problem(payload, codecs)
    return item if problem is None else wrap_malformed(item, queue, problem)


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client: Any = None) -> Any:
        """Give back what this channel holds; if Redis is gone, leave it to the next channel.

        kombu 5.7.0: closing a channel after its connection was lost (a Redis restart)
        restores unacked messages through a client it can no longer build
        (``Channel._connparams``: AttributeError "'NoneType' object has no attribute
        'hostname'", as ``connection.client`` is already None), and the error ends the
        worker. The messages are safe in kombu's ``unacked`` hash meanwhile; their tags are
        kept here and given back as soon as a new channel consumes, not after the
        visibility timeout.
        """
        try:
            return super().restore_unacked(client)  # type: ignore[no-untyped-call]
        except _LOST as exc:
            tags = list(self._delivered)
            with _orphans_lock:
                _orphans.update(tags)
            self._delivered.clear()
            log.warning(
                "%d unacknowledged messages not given back while closing (%s);"
                " the next connection gives them back",
                len(tags),
                type(exc).__name__,
            )
            return []

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        """A requeue that fails while Redis is down (or the channel is gone, the same kombu
        bug as above) is done by the next channel instead."""
        try:
            super().reject(delivery_tag, requeue=requeue)  # type: ignore[no-untyped-call]
        except _LOST as exc:
            self._delivered.pop(delivery_tag, None)
            if requeue:
                with _orphans_lock:
                    _orphans.add(delivery_tag)
            log.warning(
                "reject of a message failed (%s); %s",
                type(exc).__name__,
                "the next connection gives it back" if requeue else "it stays unacknowledged",
            )

    def ack(self, delivery_tag: str) -> None:
        """An ack that cannot reach Redis is done by the next channel (until then, the
        message waits in kombu's unacked hash; a redelivery would be a ledger duplicate)."""
        try:
            super().ack(delivery_tag)  # type: ignore[no-untyped-call]
        except _LOST as exc:
            self._delivered.pop(delivery_tag, None)
            with _orphans_lock:
                _acks_due.add(delivery_tag)
            log.warning("ack failed (%s); the next connection does it", type(exc).__name__)


class Channel(kombu_redis.Channel):
    QoS = QoS
    _reused: tuple[Any, Any] | None = None

    def basic_consume(self, *args: Any, **kwargs: Any) -> Any:
        consumed = super().basic_consume(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.restore_orphans()
        return consumed

    def restore_orphans(self) -> int:
        """Finish what an earlier channel of this process could not: acks, then give back
        the messages it held. Returns how many messages were given back."""
        with _orphans_lock:
            acks, tags = sorted(_acks_due), sorted(_orphans)
            _acks_due.clear()
            _orphans.clear()
        if acks:
            try:
                pipe = self.client.pipeline()
                for tag in acks:
                    self.qos._remove_from_indices(tag, pipe)
                pipe.execute()
            except (redis.RedisError, OSError):
                with _orphans_lock:
                    _acks_due.update(acks)
                    _orphans.update(tags)
                return 0
        for done, tag in enumerate(tags):
            try:
                self.qos.restore_by_tag(tag)
            except (redis.RedisError, OSError):
                with _orphans_lock:
                    _orphans.update(tags[done:])
                return done
        return len(tags)

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the event loop's own client: BRPOP replies are checked
            client = super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
            client.parse_response = self._checking(client.parse_response)
            return client
        pool = self.pool
        reused = self._reused
        if reused is None or reused[0] is not pool:  # a reconnect replaces the pool
            reused = self._reused = (pool, super()._create_client())  # type: ignore[no-untyped-call]
        return reused[1]

    def _checking(self, parse: Any) -> Any:
        def parse_response(connection: Any, command_name: Any, **options: Any) -> Any:
            reply = parse(connection, command_name, **options)
            if command_name == "BRPOP":
                if _orphans or _acks_due:  # an old channel's task finished after we began
                    self.restore_orphans()
                if reply:
                    dest, item = reply
                    name = dest.decode() if isinstance(dest, bytes) else str(dest)
                    queue = name.rsplit(self.sep, 1)[0]
                    reply = (dest, checked_item(item, queue, self.codecs))
            return reply

        return parse_response


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """The same checks and reuse, on a channel that finds the master through Sentinel."""


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


TRANSPORT = f"{__name__}:Transport"
SENTINEL_TRANSPORT = f"{__name__}:SentinelTransport"
