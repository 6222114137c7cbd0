"""The partner sees each change once, in order, through two real workers and a flaky sandbox."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from custsync.producer import enqueue
from custsync.sandbox import SandboxClient
from custsync.state.keys import all_queues
from custsync.targets import REGISTRY
from tests.conftest import WorkerPool, wait_for
from tests.events import MINTED_EXAMPLE, new_id, vendor_changes

T0 = datetime(2026, 3, 1, tzinfo=UTC)
VENDOR_FIELDS = ("email", "mobile", "address", "title", "cityCode")


def minted_versions(cid: str, rng: random.Random) -> list[dict[str, Any]]:
    events = []
    for v in range(5):
        changes = {
            **MINTED_EXAMPLE,
            "external_id": cid,
            "lastname": f"Last{v}x",
            "phone": f"+9050{rng.randint(10**7, 10**8 - 1)}",
        }
        events.append(_env("minted", cid, changes, v))
    return events


def vendor_versions(code: str, rng: random.Random) -> list[dict[str, Any]]:
    events = []
    for v in range(5):
        fields = rng.sample(VENDOR_FIELDS, rng.randint(1, 3))
        changes: dict[str, Any] = {"code": code, "erpCode": f"erp-{code}"}  # partial updates
        for name in fields:
            changes[name] = f"{name}@v{v}.example.com" if name == "email" else f"{name}-v{v}"
        events.append(_env("vendor", code, changes, v))
    return events


def _env(target: str, cid: str, changes: dict[str, Any], v: int) -> dict[str, Any]:
    return {
        "event_id": f"fold-{uuid.uuid4().hex}",
        "target": target,
        "customer_id": cid,
        "occurred_at": (T0 + timedelta(seconds=v)).isoformat(),
        "sequence": 0,
        "changes": changes,
    }


def fold(events: list[dict[str, Any]], start: dict[str, Any]) -> dict[str, Any]:
    """What the partner must hold: the changes applied in version order, field by field."""
    record = dict(start)
    for e in sorted(events, key=lambda e: e["occurred_at"]):
        record.update(e["changes"])
    return record


class Settled:
    """True once every event has an outcome and nothing is queued, waiting or in flight.

    Counters alone can run ahead (a worker killed after finishing but before acking gets
    its message redelivered and counted twice), so also require kombu's unacked set empty,
    and the journal: a worker killed between kombu's pop and its unacked record loses the
    message, which only the journal's recovery puts back (custsync.state.journal).
    Its repr is the last snapshot, so a timeout says what was still pending.
    """

    def __init__(self, pool: WorkerPool, expected: int) -> None:
        self.pool, self.expected = pool, expected
        self.last: dict[str, Any] = {}

    def __call__(self) -> bool:
        redis, keys = self.pool.runtime.redis, self.pool.runtime.keys
        total = 0
        for target in ("minted", "vendor"):
            c = self.pool.counters(target)
            total += c.get("applied", 0) + c.get("duplicate", 0) + c.get("superseded", 0)
            total += sum(v for k, v in c.items() if k.startswith("dead_lettered"))
        pipe = redis.pipeline(transaction=True)  # one snapshot: a restore moves atomically
        for name in all_queues(REGISTRY):
            pipe.llen(name)
        pipe.hlen("unacked")
        pipe.zcard(keys.journal)
        for target in ("minted", "vendor"):
            pipe.zcard(keys.retry(target))
            pipe.zcard(keys.retry_claimed(target))
        replies = pipe.execute()
        depths = len(all_queues(REGISTRY))
        queued, (unacked, journaled, *waiting) = sum(replies[:depths]), replies[depths:]
        self.last = {
            "outcomes": total,
            "expected": self.expected,
            "queued": queued,
            "unacked": unacked,
            "journaled": journaled,
            "retry/claimed": waiting,
        }
        return total >= self.expected and not (queued or unacked or journaled or any(waiting))

    def __repr__(self) -> str:
        return f"Settled({self.last})"


def test_fold_invariant_under_shuffle_duplicates_and_5xx(
    pool_factory: Callable[..., WorkerPool], sandbox_client: SandboxClient
) -> None:
    rng = random.Random(20261122)
    pool = pool_factory(
        3,
        size=2,
        CUSTSYNC_MINTED_MAX_ATTEMPTS="12",
        CUSTSYNC_VENDOR_MAX_ATTEMPTS="12",
        CUSTSYNC_MINTED_BREAKER_FAILURES="50",
        CUSTSYNC_VENDOR_BREAKER_FAILURES="50",
    )
    starts: dict[tuple[str, str], dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    for i in range(200):
        if i % 2:
            cid = new_id("FOLDM")
            starts[("minted", cid)] = {**MINTED_EXAMPLE, "external_id": cid}
            sandbox_client.put_customer("minted", cid, starts[("minted", cid)])
            events += minted_versions(cid, rng)
        else:
            code = new_id("FOLDV")
            starts[("vendor", code)] = vendor_changes(code)
            sandbox_client.put_customer("vendor", code, starts[("vendor", code)])
            events += vendor_versions(code, rng)
    stream = events + rng.sample(events, 100)  # some published twice
    rng.shuffle(stream)
    for target in ("minted", "vendor"):
        sandbox_client.set_faults(target, error_rate=0.2, latency_ms=5, latency_jitter_ms=10)
    try:
        enqueue([(e, None) for e in stream], pool.app)
        wait_for(Settled(pool, len(stream)), timeout_s=240, interval_s=0.5)
    finally:
        for target in ("minted", "vendor"):
            sandbox_client.clear_faults(target)

    assert pool.runtime.dlq.count() == 0
    # Every delivery path (applied, duplicate, superseded, retried) forgot its journal entry.
    assert pool.runtime.redis.zcard(pool.runtime.keys.journal) == 0
    for (target, cid), start in starts.items():
        mine = [e for e in events if e["customer_id"] == cid]
        expected = fold(mine, start)
        actual = sandbox_client.get_customer(target, cid)
        assert actual is not None
        assert {k: actual.get(k) for k in expected} == expected, (target, cid)
    applied_per_key = Counter(
        r["idempotency_key"]
        for r in sandbox_client.requests()
        if r["idempotency_key"] and r["idempotency_key"].startswith("fold-") and r["status"] == 200
    )
    assert applied_per_key and max(applied_per_key.values()) == 1
    counts = {t: pool.counters(t) for t in ("minted", "vendor")}
    assert sum(c.get("duplicate", 0) for c in counts.values()) >= 1
    assert sum(c.get("retry_scheduled", 0) for c in counts.values()) >= 1
