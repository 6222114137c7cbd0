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

Selected by ``celery_config`` for plain ``redis://`` brokers; everything else is kombu's.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from typing import Any

from kombu.transport import redis as kombu_redis

from custsync.broker.guard import MALFORMED_HEADER, MALFORMED_RAW
from custsync.broker.quarantine import RAW_MAX_BYTES

MALFORMED_CONTENT_TYPE = "application/x-custsync-malformed"


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


class Channel(kombu_redis.Channel):
    _reused: tuple[Any, Any] | None = None

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
            if command_name == "BRPOP" and reply:
                dest, item = reply
                name = dest.decode() if isinstance(dest, bytes) else str(dest)
                queue = name.rsplit(self.sep, 1)[0]
                reply = (dest, checked_item(item, queue, self.codecs))
            return reply

        return parse_response


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"
