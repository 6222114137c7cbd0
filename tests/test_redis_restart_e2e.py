"""Redis restarts under load, twice, with no supervisor: both workers keep running and every
event is applied. Its own Redis (append-only, restartable on the same port)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from custsync.embedded.server import EphemeralRedis
from custsync.producer import enqueue
from custsync.sandbox import Sandbox, SandboxClient
from tests.conftest import WorkerPool, custsync_env, wait_for
from tests.events import MINTED_EXAMPLE, envelope, new_id
from tests.test_ordering_e2e import Settled

EVENTS = 400


@pytest.mark.timeout(240)
def test_two_redis_restarts_under_load_lose_nothing_and_stop_no_worker(
    restartable: EphemeralRedis, sandbox: Sandbox, sandbox_client: SandboxClient, tmp_path: Path
) -> None:
    # Celery does not ack a task that was running when the broker connection dropped; kombu
    # keeps its message in the unacked hash until the visibility timeout, then redelivers it
    # (a ledger duplicate). A short timeout lets the test see that redelivery settle.
    env = custsync_env(
        restartable,
        sandbox,
        0,
        CUSTSYNC_MINTED_MAX_ATTEMPTS="20",
        CUSTSYNC_VISIBILITY_TIMEOUT_S="20",
    )
    pool = WorkerPool(env, tmp_path, 2).start()
    try:
        customers = [new_id("RR") for _ in range(EVENTS)]
        sandbox_client.put_customers(
            "minted", {c: {**MINTED_EXAMPLE, "external_id": c} for c in customers}
        )
        sandbox_client.set_faults("minted", latency_ms=20)
        events = [
            envelope("minted", c, {**MINTED_EXAMPLE, "lastname": "Restarted"}) for c in customers
        ]
        sent = threading.Event()

        def stream() -> None:
            for start in range(0, EVENTS, 20):
                for _ in range(50):  # publishing retries while Redis is down
                    try:
                        enqueue([(e, None) for e in events[start : start + 20]], pool.app)
                        break
                    except redis.RedisError:  # the producer's Redis is restarting
                        time.sleep(0.2)
                time.sleep(0.05)
            sent.set()

        producer = threading.Thread(target=stream, daemon=True)
        producer.start()
        for _ in range(2):
            time.sleep(1.5)
            restartable.restart(down_s=2.0)
        assert sent.wait(60)
        wait_for(Settled(pool, EVENTS), timeout_s=120, interval_s=0.5)
    finally:
        sandbox_client.clear_faults("minted")
        alive = [w.proc is not None and w.proc.poll() is None for w in pool.workers]
        pool.stop()

    assert alive == [True, True], pool.log_text()[-3000:]
    applied = Counter(
        r["idempotency_key"] for r in sandbox_client.requests(target="minted") if r["status"] == 200
    )
    assert all(applied[e["event_id"]] >= 1 for e in events)
    assert all(
        sandbox_client.get_customer("minted", c)["lastname"] == "Restarted" for c in customers
    )
    assert pool.runtime.dlq.count() == 0
