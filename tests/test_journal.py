"""The journal brings back an event the Redis broker lost (kombu pops before it records)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from custsync.producer import enqueue
from custsync.runtime import Runtime
from custsync.sandbox import SandboxClient
from custsync.settings import load_settings
from custsync.state.journal import Journal
from custsync.worker import producer_app
from tests.conftest import WorkerPool, wait_for
from tests.events import MINTED_EXAMPLE, envelope, new_id


def lost_in_transit(rt: Runtime, env: dict[str, Any], seconds_ago: float) -> None:
    """What a worker killed right after BRPOP leaves: a journal entry and no message."""
    journal = Journal(rt.redis, rt.keys)
    pipe = rt.redis.pipeline()
    journal.note(pipe, [(env, None)])
    pipe.execute()
    rt.redis.zadd(rt.keys.journal, {env["event_id"]: time.time() - seconds_ago})


def test_an_event_lost_by_the_broker_is_put_back_and_applied(
    pool_factory: Callable[..., WorkerPool], sandbox_client: SandboxClient
) -> None:
    pool = pool_factory(16, size=1)
    cid = new_id("MTD")
    sandbox_client.put_customer("minted", cid, {**MINTED_EXAMPLE, "external_id": cid})
    env = envelope("minted", cid, {**MINTED_EXAMPLE, "lastname": "Recovered"})
    lost_in_transit(pool.runtime, env, seconds_ago=60)

    wait_for(lambda: pool.counters("minted").get("applied", 0) == 1, timeout_s=60)
    assert sandbox_client.get_customer("minted", cid)["lastname"] == "Recovered"
    assert pool.runtime.redis.zcard(pool.runtime.keys.journal) == 0  # forgotten once applied
    assert "the broker lost 1 events" in pool.log_text()


def test_recovery_leaves_queued_and_recent_events_alone(direct_env: dict[str, str]) -> None:
    rt = Runtime(load_settings(direct_env))
    app = producer_app(rt)
    old = envelope("minted", "C1", dict(MINTED_EXAMPLE))
    enqueue([(old, None)], app)  # still on the queue: the tail
    rt.redis.zadd(rt.keys.journal, {old["event_id"]: time.time() - 120})
    behind_tail = envelope("minted", "C2", dict(MINTED_EXAMPLE))
    lost_in_transit(rt, behind_tail, seconds_ago=60)  # newer than the tail: maybe still queued
    journal = Journal(rt.redis, rt.keys)

    sent: list[object] = []
    assert journal.recover(sent.extend, 0.01) == 0

    rt.redis.delete("custsync.minted")  # the queue drains; now the older one is provably lost
    time.sleep(0.02)  # the recovery lock lasts one interval
    assert journal.recover(sent.extend, 0.01) == 2
    assert {e["event_id"] for e, _ in sent} == {old["event_id"], behind_tail["event_id"]}  # type: ignore[index]


def test_enqueue_notes_each_event_before_it_goes_out(direct_env: dict[str, str]) -> None:
    rt = Runtime(load_settings(direct_env))
    env = envelope("minted", "C3", dict(MINTED_EXAMPLE))
    enqueue([(env, None)], producer_app(rt))
    assert rt.redis.zscore(rt.keys.journal, env["event_id"]) is not None
    assert rt.redis.hexists(rt.keys.journal_body, env["event_id"])
