"""A few failing customers cannot hold a partner's breaker shut, through two real workers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from custsync.producer import enqueue
from custsync.sandbox import SandboxClient
from tests.conftest import WorkerPool, wait_for
from tests.events import MINTED_EXAMPLE, new_id

BREAKER_DB = 17
T0 = datetime(2026, 6, 1, tzinfo=UTC)


def event(cid: str, n: int) -> dict[str, object]:
    return {
        "event_id": f"brk-{new_id()}",
        "target": "minted",
        "customer_id": cid,
        "occurred_at": (T0 + timedelta(seconds=n)).isoformat(),
        "changes": {**MINTED_EXAMPLE, "external_id": cid, "lastname": f"Last{n}x"},
    }


def test_five_percent_of_customers_failing_forever_leave_the_rest_flowing(
    pool_factory: Callable[..., WorkerPool], sandbox_client: SandboxClient
) -> None:
    pool = pool_factory(BREAKER_DB, size=2, CUSTSYNC_MINTED_MAX_ATTEMPTS="4")
    failing = [new_id("BRKF") for _ in range(3)]
    healthy = [new_id("BRKH") for _ in range(57)]
    records = {cid: {**MINTED_EXAMPLE, "external_id": cid} for cid in failing + healthy}
    sandbox_client.put_customers("minted", records)
    for cid in failing:  # a partner bug on these records: 5xx on every call
        sandbox_client.script("minted", cid, [{"status": 503}] * 200)
    bad = [event(cid, n) for cid in failing for n in range(4)]
    good = [event(cid, n) for cid in healthy for n in range(2)]

    enqueue([(e, None) for e in bad], pool.app)  # the failing ones first: the worst case
    enqueue([(e, None) for e in good], pool.app)

    def applied_healthy() -> bool:
        counts = pool.counters("minted")
        return counts.get("applied", 0) + counts.get("superseded", 0) >= len(good)

    wait_for(applied_healthy, timeout_s=90, interval_s=0.5)

    def failing_dead_lettered() -> bool:
        return pool.counters("minted").get("dead_lettered:exhausted", 0) >= len(bad)

    wait_for(failing_dead_lettered, timeout_s=60, interval_s=0.5)
    entries = [pool.runtime.dlq.get(str(e["event_id"])) for e in bad]
    assert all(e is not None and e.reason == "exhausted" and e.attempts == 4 for e in entries)
    calls = Counter(
        r["idempotency_key"] for r in sandbox_client.requests(target="minted") if r["status"] == 503
    )
    # Each failing event used its own attempts, no more: the partner saw 4 calls for each.
    assert all(calls[str(e["event_id"])] == 4 for e in bad), calls
    assert '"reason":"breaker"' not in pool.log_text().replace(" ", "")
    final = {cid: sandbox_client.get_customer("minted", cid) for cid in healthy}
    assert all(rec is not None and rec["lastname"] == "Last1x" for rec in final.values())
