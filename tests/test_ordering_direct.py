"""The ledger, the version guard, the in-flight lock, the breaker and the rate limit, driven
through the pipeline as plain code against the real Redis and the sandbox."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from custsync.delivery import Delivery
from custsync.sandbox import SandboxClient
from tests.conftest import pipeline_for
from tests.events import (
    MINTED_EXAMPLE,
    envelope,
    minted_customer,
    new_id,
    vendor_changes,
    vendor_customer,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: int, seq: int = 0) -> dict[str, Any]:
    return {"occurred_at": (T0 + timedelta(seconds=seconds)).isoformat(), "sequence": seq}


def fresh() -> Delivery:
    return Delivery(first_seen_at=time.time())


def test_an_applied_event_is_not_sent_twice(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    p = pipeline_for(direct_env)
    cid = minted_customer(sandbox_client)
    env = envelope("minted", cid, dict(MINTED_EXAMPLE))

    assert p.process(env, fresh()).outcome == "applied"
    assert p.process(env, fresh()).outcome == "duplicate"
    assert len([r for r in sandbox_client.requests(key=env["event_id"]) if r["status"] == 200]) == 1
    ttl = p.redis.ttl(p.keys.applied(env["event_id"]))
    assert 0 < ttl <= 7 * 86_400


def test_an_older_minted_event_is_superseded_not_sent(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    p = pipeline_for(direct_env)
    cid = minted_customer(sandbox_client)
    newer = envelope("minted", cid, {**MINTED_EXAMPLE, "lastname": "Newer"}, **at(10))
    older = envelope("minted", cid, {**MINTED_EXAMPLE, "lastname": "Older"}, **at(5))
    same_time_later_seq = envelope(
        "minted", cid, {**MINTED_EXAMPLE, "lastname": "Seq2"}, **at(10, 2)
    )

    assert p.process(newer, fresh()).outcome == "applied"
    assert p.process(older, fresh()).outcome == "superseded"
    assert sandbox_client.requests(key=older["event_id"]) == []
    assert sandbox_client.get_customer("minted", cid)["lastname"] == "Newer"
    assert p.process(same_time_later_seq, fresh()).outcome == "applied"
    assert sandbox_client.get_customer("minted", cid)["lastname"] == "Seq2"


def test_force_bypasses_the_guard(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    p = pipeline_for(direct_env)
    cid = minted_customer(sandbox_client)
    p.process(envelope("minted", cid, {**MINTED_EXAMPLE, "lastname": "Newer"}, **at(10)), fresh())
    older = envelope("minted", cid, {**MINTED_EXAMPLE, "lastname": "Forced"}, **at(5))
    assert p.process(older, Delivery(first_seen_at=time.time(), force=True)).outcome == "applied"
    assert sandbox_client.get_customer("minted", cid)["lastname"] == "Forced"


def test_vendor_late_event_sends_only_fields_nothing_newer_wrote(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    p = pipeline_for(direct_env)
    code = vendor_customer(sandbox_client)
    newer = envelope("vendor", code, vendor_changes(code, email="new@example.com"), **at(10))
    newer["changes"] = {k: newer["changes"][k] for k in ("code", "erpCode", "email", "firstName")}
    late = envelope(
        "vendor", code, vendor_changes(code, email="old@example.com", address="Late St. 5"), **at(5)
    )

    assert p.process(newer, fresh()).outcome == "applied"
    assert p.process(late, fresh()).outcome == "applied"

    sent = next(r for r in sandbox_client.requests(key=late["event_id"]) if r["status"] == 200)[
        "body"
    ]
    assert "email" not in sent and "firstName" not in sent  # the newer event wrote them
    assert sent["address"] == "Late St. 5" and sent["code"] == code and "erpCode" in sent
    record = sandbox_client.get_customer("vendor", code)
    assert (record["email"], record["address"]) == ("new@example.com", "Late St. 5")


def test_vendor_late_event_with_nothing_left_is_superseded(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    p = pipeline_for(direct_env)
    code = vendor_customer(sandbox_client)
    assert (
        p.process(envelope("vendor", code, vendor_changes(code), **at(10)), fresh()).outcome
        == "applied"
    )
    late = envelope("vendor", code, vendor_changes(code), **at(5))
    assert p.process(late, fresh()).outcome == "superseded"
    assert sandbox_client.requests(key=late["event_id"]) == []


def test_vendor_rename_carries_the_guard_to_the_new_code(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    p = pipeline_for(direct_env)
    old = vendor_customer(sandbox_client)
    new = new_id("V")
    partial = {"code": new, "erpCode": f"erp-{old}", "title": "renamed"}  # no kind fields
    rename = envelope("vendor", old, partial, **at(10))
    assert p.process(rename, fresh()).outcome == "applied"
    assert sandbox_client.get_customer("vendor", new)["title"] == "renamed"

    late_for_new = envelope(
        "vendor",
        new,
        {"code": new, "erpCode": f"erp-{old}", "title": "late"},
        **at(5),
    )
    late_for_old = envelope(
        "vendor", old, {"code": old, "erpCode": f"erp-{old}", "title": "late-old"}, **at(5)
    )
    assert p.process(late_for_new, fresh()).outcome == "superseded"
    assert p.process(late_for_old, fresh()).outcome == "superseded"
    assert sandbox_client.get_customer("vendor", new)["title"] == "renamed"


def test_a_second_event_for_a_customer_in_flight_is_deferred(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    p = pipeline_for(direct_env)
    cid = minted_customer(sandbox_client)
    p.redis.set(p.keys.inflight("minted", cid), "someone-else", px=10_000)
    env = envelope("minted", cid, dict(MINTED_EXAMPLE))

    result = p.process(env, fresh())

    assert (result.outcome, result.reason, result.attempt) == ("deferred", "locked", 0)
    assert sandbox_client.requests(key=env["event_id"]) == []
    waiting = p.redis.zrange(p.keys.retry("minted"), 0, -1, withscores=True)
    assert len(waiting) == 1 and waiting[0][1] <= time.time() + 1


def test_consecutive_failures_open_the_breaker_and_one_probe_closes_it(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    p = pipeline_for(
        direct_env, CUSTSYNC_MINTED_BREAKER_FAILURES="3", CUSTSYNC_MINTED_BREAKER_COOLDOWN_S="30"
    )
    customers = [minted_customer(sandbox_client) for _ in range(4)]
    for cid in customers[:3]:
        sandbox_client.script("minted", cid, [{"status": 503}])
    outcomes = [
        p.process(envelope("minted", cid, dict(MINTED_EXAMPLE)), fresh()) for cid in customers[:3]
    ]

    assert [o.outcome for o in outcomes] == ["retry_scheduled", "retry_scheduled", "deferred"]
    assert outcomes[2].reason == "breaker" and outcomes[2].attempt == 0
    pause = json.loads(p.redis.get(p.keys.pause("minted")))
    assert pause["reason"] == "breaker" and pause["until"] > time.time() + 20
    blocked = envelope("minted", customers[3], dict(MINTED_EXAMPLE))
    assert p.process(blocked, fresh()).outcome == "deferred"
    assert sandbox_client.requests(key=blocked["event_id"]) == []

    p.redis.delete(p.keys.pause("minted"))  # the cooldown ends: half-open
    probe = p.process(blocked, fresh())
    assert probe.outcome == "applied"
    assert not p.redis.exists(p.keys.breaker("minted"))


def test_a_429_pauses_the_target_for_retry_after(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    p = pipeline_for(direct_env)
    cid = minted_customer(sandbox_client)
    sandbox_client.script("minted", cid, [{"status": 429, "retry_after": 4}])
    try:
        result = p.process(envelope("minted", cid, dict(MINTED_EXAMPLE)), fresh())
    finally:
        sandbox_client.clear_faults("minted")  # the partner's 429 window is target-wide

    assert (result.outcome, result.reason, result.attempt) == ("deferred", "throttled", 0)
    pause = json.loads(p.redis.get(p.keys.pause("minted")))
    assert pause["reason"] == "throttled"
    assert 3 <= pause["until"] - time.time() <= 4.5
    other = minted_customer(sandbox_client)
    assert p.process(envelope("minted", other, dict(MINTED_EXAMPLE)), fresh()).reason == "paused"


def test_a_poison_message_is_dead_lettered_after_too_many_unfinished_deliveries(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    p = pipeline_for(direct_env, CUSTSYNC_POISON_DELIVERIES="2")
    cid = minted_customer(sandbox_client)
    env = envelope("minted", cid, dict(MINTED_EXAMPLE))
    p.redis.set(p.keys.deliveries(env["event_id"]), 2)  # two deliveries died mid-call

    result = p.process(env, fresh())

    assert (result.outcome, result.reason) == ("dead_lettered", "poison")
    assert sandbox_client.requests(key=env["event_id"]) == []
    assert not p.redis.exists(p.keys.deliveries(env["event_id"]))
