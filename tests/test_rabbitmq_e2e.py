"""The pipeline end to end with RabbitMQ as the broker (state stays in Redis).

Runs when CUSTSYNC_TEST_AMQP_URL points at a RabbitMQ that answers; .ci/run sets it when
the machine has one. Otherwise skipped, with the reason shown by ``pytest -ra``.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from custsync.producer import enqueue, publish
from custsync.sandbox import SandboxClient
from tests.conftest import WorkerPool, wait_for
from tests.dlq_support import queued_count
from tests.events import MINTED_EXAMPLE, envelope, new_id, vendor_changes

AMQP_URL = os.environ.get("CUSTSYNC_TEST_AMQP_URL", "")


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 2):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not AMQP_URL or not _answers(AMQP_URL),
    reason="no RabbitMQ: set CUSTSYNC_TEST_AMQP_URL to one that answers",
)


@pytest.fixture
def amqp_pool(pool_factory: Callable[..., WorkerPool]) -> WorkerPool:
    from kombu import Connection

    # Start from an empty queue on the shared server; the queue may not exist yet.
    with Connection(AMQP_URL) as conn, contextlib.suppress(Exception):
        conn.channel().queue_purge("custsync")
    return pool_factory(15, size=1, CUSTSYNC_BROKER_URL=AMQP_URL)


def test_events_flow_through_rabbitmq_and_retries_still_use_the_redis_retry_set(
    amqp_pool: WorkerPool, sandbox_client: SandboxClient
) -> None:
    cid = new_id("MTD")
    sandbox_client.put_customer("minted", cid, {**MINTED_EXAMPLE, "external_id": cid})
    sandbox_client.script("minted", cid, [{"status": 503}])
    code = new_id("V")
    sandbox_client.put_customer("vendor", code, vendor_changes(code))
    minted = envelope("minted", cid, {**MINTED_EXAMPLE, "lastname": "Rabbit"})
    vendor = envelope("vendor", code, vendor_changes(code, title="via-amqp"))
    missing = envelope("minted", new_id("MISSING"), dict(MINTED_EXAMPLE))
    invalid = envelope("vendor", code, {"code": code})
    sandbox_client.script("vendor", code, [{"status": 429, "retry_after": 1}])

    publish(minted, app=amqp_pool.app)
    enqueue([(vendor, None), (missing, None), (invalid, None)], amqp_pool.app)

    wait_for(lambda: amqp_pool.counters("minted").get("applied", 0) == 1, timeout_s=60)
    wait_for(lambda: amqp_pool.counters("vendor").get("applied", 0) == 1, timeout_s=60)
    wait_for(lambda: amqp_pool.runtime.dlq.get(missing["event_id"]) is not None, timeout_s=60)
    wait_for(lambda: amqp_pool.runtime.dlq.get(invalid["event_id"]) is not None, timeout_s=60)
    assert amqp_pool.counters("minted")["retry_scheduled"] == 1
    assert amqp_pool.counters("vendor")["deferred"] == 1  # the 429
    assert sandbox_client.get_customer("minted", cid)["lastname"] == "Rabbit"
    assert sandbox_client.get_customer("vendor", code)["title"] == "via-amqp"
    entry = amqp_pool.runtime.dlq.get(missing["event_id"])
    assert entry is not None and entry.reason == "not_found"
    assert amqp_pool.runtime.dlq.get(invalid["event_id"]).reason == "invalid"  # type: ignore[union-attr]
    assert queued_count(amqp_pool.runtime.redis) == 0  # nothing went through Redis' queue
