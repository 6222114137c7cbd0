"""Redis high availability through Sentinel, for real: a primary, a replica and three
sentinels on loopback ports; 2,000 events stream through two workers; the primary is
killed (SIGKILL) mid-stream. The workers and the producer follow the failover by
themselves, every event is applied, and the partner sees at most the events that were in
flight at the kill twice."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from custsync.embedded.server import EphemeralRedis
from custsync.producer import enqueue
from custsync.sandbox import Sandbox, SandboxClient
from custsync.settings import load_settings
from tests.conftest import WorkerPool, custsync_env, wait_for
from tests.events import MINTED_EXAMPLE, envelope, new_id
from tests.sentinel_support import SentinelSet

EVENTS = 2000
WORKERS, CONCURRENCY = 2, 4


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    ha = SentinelSet(tmp_path / "ha")
    try:
        yield ha.start()
    finally:
        ha.stop()


def test_settings_name_what_is_wrong_with_a_sentinel_url() -> None:
    from custsync.errors import SettingsError

    for bad, says in (
        ("sentinel://127.0.0.1:26379", "master name"),
        ("sentinel:///mymaster", "no sentinel"),
        ("sentinel://h:port/m", "port is not a number"),
        ("sentinel://h:1/m/x", "/MASTER/DB"),
    ):
        with pytest.raises(SettingsError, match="CUSTSYNC_REDIS_URL") as caught:
            load_settings({"CUSTSYNC_REDIS_URL": bad})
        assert says in str(caught.value)
    good = load_settings({"CUSTSYNC_REDIS_URL": "sentinel://:pw@h1:1,h2/m/3"})
    assert good.redis_url == "sentinel://:pw@h1:1,h2/m/3"


@pytest.mark.timeout(400)
def test_workers_follow_a_failover_and_lose_nothing(
    sentinels: SentinelSet,
    redis_server: EphemeralRedis,
    sandbox: Sandbox,
    sandbox_client: SandboxClient,
    tmp_path: Path,
) -> None:
    env = custsync_env(
        redis_server,
        sandbox,
        0,
        CUSTSYNC_REDIS_URL=sentinels.url,
        CUSTSYNC_CONCURRENCY=str(CONCURRENCY),
        CUSTSYNC_REDIS_TIMEOUT_S="2",
        CUSTSYNC_MINTED_MAX_ATTEMPTS="30",
        # Celery does not ack a task that ran across the connection loss: redelivered soon.
        CUSTSYNC_VISIBILITY_TIMEOUT_S="20",
    )
    first_master = sentinels.master_port()
    assert sentinels.primary is not None and first_master == sentinels.primary.port
    customers = [new_id("HA") for _ in range(EVENTS)]
    sandbox_client.put_customers(
        "minted", {c: {**MINTED_EXAMPLE, "external_id": c} for c in customers}
    )
    events = [envelope("minted", c, {**MINTED_EXAMPLE, "lastname": "Failover"}) for c in customers]
    pool = WorkerPool(env, tmp_path, WORKERS).start()
    sent = threading.Event()
    published = [0]

    def stream() -> None:
        for start in range(0, EVENTS, 50):
            for _ in range(200):  # publishing retries while the sentinels elect a new master
                try:
                    enqueue([(e, None) for e in events[start : start + 50]], pool.app)
                    break
                except (redis.RedisError, OSError):
                    time.sleep(0.2)
            published[0] = start + 50
            time.sleep(0.02)
        sent.set()

    try:
        sandbox_client.set_faults("minted", latency_ms=10)
        producer = threading.Thread(target=stream, daemon=True)
        producer.start()
        wait_for(lambda: published[0] >= EVENTS // 3, timeout_s=60)
        sentinels.kill_primary()
        at_kill = published[0]
        assert sentinels.replica is not None
        wait_for(lambda: sentinels.master_port() == sentinels.replica.port, timeout_s=60)
        assert sent.wait(180), "the producer did not get through the failover"
        wait_for(lambda: _all_applied(sandbox_client, events), timeout_s=240, interval_s=1)
        alive = [w.proc is not None and w.proc.poll() is None for w in pool.workers]
    finally:
        sandbox_client.clear_faults("minted")
        pool.stop()

    assert alive == [True, True], pool.log_text()[-3000:]
    assert at_kill < EVENTS  # the rest went to the new master
    assert "Connection to broker lost" in pool.log_text()  # the workers did see it go
    applied = Counter(
        r["idempotency_key"] for r in sandbox_client.requests(target="minted") if r["status"] == 200
    )
    assert all(applied[e["event_id"]] >= 1 for e in events)  # nothing lost
    twice = sum(n - 1 for n in applied.values() if n > 1)
    in_flight = WORKERS * (CONCURRENCY + 1)  # each worker's threads plus its one prefetched
    assert twice <= in_flight, f"{twice} partner duplicates, at most {in_flight} were in flight"


def _all_applied(client: SandboxClient, events: list[dict]) -> bool:  # type: ignore[type-arg]
    done = {r["idempotency_key"] for r in client.requests(target="minted") if r["status"] == 200}
    return all(e["event_id"] in done for e in events)
