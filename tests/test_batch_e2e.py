"""``custsync.apply_batch`` with a real worker and the sandbox: a batch mixing both partners
and invalid events, on the public queue and on a partner's; each event its own outcome, a
customer's events in version order, the message acknowledged once all have landed."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from custsync.broker.messages import MessageBuilder, batch_label, item_json
from custsync.sandbox import SandboxClient
from custsync.state.keys import QUEUE, partner_queue
from tests.conftest import WorkerPool, wait_for
from tests.dlq_support import queued_count
from tests.events import (
    MINTED_EXAMPLE,
    envelope,
    minted_customer,
    new_id,
    vendor_changes,
    vendor_customer,
)

DB = 25
T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _push_batch(pool: WorkerPool, queue: str, envelopes: list[Any]) -> None:
    """One apply_batch message as any Celery client could put it on ``queue``."""
    builder = MessageBuilder(pool.app)
    texts = [item_json(e, None) for e in envelopes]
    message = builder.build_batch(texts, queue, batch_label(envelopes))
    pool.runtime.redis.lpush(queue, message)


def _outcomes(pool: WorkerPool) -> dict[str, list[str]]:
    """Each event id's outcomes, from every worker's JSON log."""
    found: dict[str, list[str]] = {}
    for line in pool.log_text().splitlines():
        if line.startswith("{") and '"outcome"' in line:
            data = json.loads(line)
            found.setdefault(data.get("event_id", ""), []).append(data["outcome"])
    return found


def _mixed(client: SandboxClient, tag: str) -> tuple[list[Any], dict[str, Any]]:
    """Three versions of one Minted customer (out of order), another Minted customer, two
    vendor customers and three invalid events."""
    first = minted_customer(client)
    versions = []
    for v in (2, 0, 1):
        env = envelope("minted", first, {**MINTED_EXAMPLE, "lastname": f"{tag}Version{v}"})
        env["occurred_at"] = (T0 + timedelta(seconds=v)).isoformat()
        versions.append(env)
    other = envelope("minted", minted_customer(client), {**MINTED_EXAMPLE, "lastname": tag})
    codes = [vendor_customer(client) for _ in range(2)]
    vendors = [envelope("vendor", c, vendor_changes(c, title=tag)) for c in codes]
    bad_field = envelope("minted", new_id("X"), {**MINTED_EXAMPLE, "gender": "X"})
    unknown = envelope("nobody", new_id("X"), {"a": 1})
    not_object = ["an", "envelope", "that", "is", "a", "list", tag]
    events = [versions[0], bad_field, vendors[0], versions[1], unknown, other]
    events += [not_object, vendors[1], versions[2]]
    named = {"first": first, "versions": versions, "other": other, "vendors": vendors}
    return events, {**named, "bad_field": bad_field, "unknown": unknown}


def _check(pool: WorkerPool, client: SandboxClient, tag: str, named: dict[str, Any]) -> None:
    outcomes = _outcomes(pool)
    applied = [*named["versions"], named["other"], *named["vendors"]]
    for env in applied:
        assert outcomes.get(env["event_id"]) == ["applied"], env["event_id"]
    for env in (named["bad_field"], named["unknown"]):
        assert outcomes.get(env["event_id"]) == ["dead_lettered"]
        entry = pool.runtime.dlq.get(env["event_id"])
        assert entry is not None and entry.reason == "invalid"
    bad = pool.runtime.dlq.get(named["bad_field"]["event_id"])
    assert bad is not None and "changes.gender" in bad.error
    # Each applied event reached its partner once, and the customer's in version order.
    calls = [r for r in client.requests() if r["status"] == 200]
    keys = [r["idempotency_key"] for r in calls]
    for env in applied:
        assert keys.count(env["event_id"]) == 1
    order = [k for k in keys if k in {e["event_id"] for e in named["versions"]}]
    by_version = sorted(named["versions"], key=lambda e: e["occurred_at"])
    assert order == [e["event_id"] for e in by_version]
    final = client.get_customer("minted", named["first"]) or {}
    assert final["lastname"] == f"{tag}Version2"


def test_a_batch_mixing_both_partners_and_invalid_events(
    pool_factory: Callable[..., WorkerPool], sandbox_client: SandboxClient
) -> None:
    pool = pool_factory(DB, size=1)
    rt = pool.runtime
    # On the public queue (a plain client): partners' events are forwarded, the rest is
    # judged in place.
    public, named = _mixed(sandbox_client, "Pub")
    _push_batch(pool, QUEUE, public)
    wait_for(lambda: rt.dlq.count() == 3 and len(_outcomes(pool)) >= 9, timeout_s=60)
    _check(pool, sandbox_client, "Pub", named)
    # On one partner's queue (custsync's producers never mix, a client might): all in place.
    mixed, named = _mixed(sandbox_client, "Part")
    _push_batch(pool, partner_queue("minted"), mixed)
    wait_for(lambda: rt.dlq.count() == 6 and len(_outcomes(pool)) >= 18, timeout_s=60)
    _check(pool, sandbox_client, "Part", named)
    assert rt.dlq.count() == 6  # 2 x (bad field, unknown target, a list for an envelope)
    wait_for(lambda: queued_count(rt.redis) == 0 and not rt.redis.hlen("unacked"), timeout_s=30)
    assert rt.redis.zcard(rt.keys.journal) == 0  # every event landed, nothing left to recover
