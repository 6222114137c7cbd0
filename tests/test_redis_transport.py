"""custsync's Redis transport against a real Redis: kombu's restore crash on a lost
connection is contained, and what it could not give back comes back on the next channel."""

from __future__ import annotations

import redis
from kombu import Connection

from custsync.broker.redis_transport import TRANSPORT
from custsync.embedded.server import EphemeralRedis
from tests.conftest import db_url

TRANSPORT_DB = 18
QUEUE = "transport-orphans"


def test_a_channel_that_cannot_restore_while_closing_leaves_it_to_the_next(
    redis_server: EphemeralRedis,
) -> None:
    url = db_url(redis_server, TRANSPORT_DB)
    raw = redis.Redis.from_url(url, decode_responses=True)
    raw.flushdb()
    first = Connection(url, transport=TRANSPORT)
    queue = first.SimpleQueue(QUEUE)
    queue.put({"n": 1})
    held = queue.get(timeout=5)  # delivered, not acknowledged
    assert raw.hlen("unacked") == 1 and raw.llen(QUEUE) == 0
    channel = queue.channel
    # What kombu 5.7 meets when closing after a Redis restart: no client to restore with.
    channel._pool = None
    channel.connection.client = None

    channel.qos.restore_unacked_once()  # kombu's own call on close: must not raise

    assert raw.hlen("unacked") == 1  # still safe in kombu's unacked hash
    second = Connection(url, transport=TRANSPORT)
    again = second.SimpleQueue(QUEUE)
    message = again.get(timeout=5)  # consuming gives the orphan back first
    assert message.payload == held.payload == {"n": 1}
    message.ack()
    assert raw.hlen("unacked") == 0 and raw.llen(QUEUE) == 0
    again.close()
    second.release()
