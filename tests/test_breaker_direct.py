"""The breaker counts failing customers, not failures: a partner that is down opens it, a
customer whose record fails does not (pipeline as plain code, real Redis and sandbox)."""

from __future__ import annotations

import json
import time

from custsync.sandbox import SandboxClient
from tests.conftest import pipeline_for
from tests.events import MINTED_EXAMPLE, envelope, minted_customer
from tests.test_ordering_direct import fresh


def test_one_customer_failing_again_and_again_uses_its_own_attempts(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    p = pipeline_for(
        direct_env, CUSTSYNC_MINTED_BREAKER_FAILURES="2", CUSTSYNC_MINTED_MAX_ATTEMPTS="4"
    )
    cid = minted_customer(sandbox_client)
    sandbox_client.script("minted", cid, [{"status": 503}] * 5)
    env = envelope("minted", cid, dict(MINTED_EXAMPLE))

    delivery = fresh()
    outcomes = []
    for _ in range(4):
        result = p.process(env, delivery)
        outcomes.append((result.outcome.value, result.reason))
        delivery = delivery.with_attempts(result.attempt)

    assert not p.redis.exists(p.keys.pause("minted"))  # its failures never opened the breaker
    assert p.redis.hget(p.keys.breaker("minted"), "failures") == "1"
    # Its last attempt is kept until another customer shows the partner is up.
    assert outcomes == [("retry_scheduled", None)] * 3 + [("deferred", "unconfirmed")]
    other = envelope("minted", minted_customer(sandbox_client), dict(MINTED_EXAMPLE))
    assert p.process(other, fresh()).outcome.value == "applied"
    again = p.process(env, delivery.with_attempts(3))  # fresh since that success: closed
    assert (again.outcome.value, again.attempt) == ("dead_lettered", 4)
    assert p.rt.dlq.get(env["event_id"]).reason == "exhausted"


def test_a_customer_failing_after_others_succeeded_spends_its_attempts(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    p = pipeline_for(
        direct_env, CUSTSYNC_MINTED_BREAKER_FAILURES="2", CUSTSYNC_MINTED_MAX_ATTEMPTS="2"
    )
    cid = minted_customer(sandbox_client)
    sandbox_client.script("minted", cid, [{"status": 503}] * 2)
    env = envelope("minted", cid, dict(MINTED_EXAMPLE))
    delivery = fresh()
    assert p.process(env, delivery).outcome.value == "retry_scheduled"
    other = envelope("minted", minted_customer(sandbox_client), dict(MINTED_EXAMPLE))
    assert p.process(other, fresh()).outcome.value == "applied"  # the partner works

    last = p.process(env, delivery.with_attempts(1))

    assert (last.outcome.value, last.reason, last.attempt) == ("dead_lettered", "exhausted", 2)


def test_a_customer_that_failed_probes_only_when_no_other_comes_forward(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    p = pipeline_for(
        direct_env, CUSTSYNC_MINTED_BREAKER_FAILURES="2", CUSTSYNC_MINTED_BREAKER_COOLDOWN_S="30"
    )
    failing = [minted_customer(sandbox_client) for _ in range(2)]
    for cid in failing:
        sandbox_client.script("minted", cid, [{"status": 503}] * 3)
    first = [p.process(envelope("minted", cid, dict(MINTED_EXAMPLE)), fresh()) for cid in failing]
    assert [r.outcome.value for r in first] == ["retry_scheduled", "deferred"]  # two customers
    assert json.loads(p.redis.get(p.keys.pause("minted")))["reason"] == "breaker"

    p.redis.delete(p.keys.pause("minted"))  # the cooldown ends: half-open
    again = p.process(envelope("minted", failing[0], dict(MINTED_EXAMPLE)), fresh())
    assert (again.outcome.value, again.reason) == ("deferred", "probing")
    assert sandbox_client.requests(customer_id=failing[0])[-1]["status"] == 503  # no new call

    healthy = envelope("minted", minted_customer(sandbox_client), dict(MINTED_EXAMPLE))
    assert p.process(healthy, fresh()).outcome.value == "applied"  # the probe closes it
    assert not p.redis.exists(p.keys.breaker("minted"))


def test_with_no_one_else_a_failed_customer_probes_after_a_grace(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    p = pipeline_for(
        direct_env, CUSTSYNC_MINTED_BREAKER_FAILURES="2", CUSTSYNC_MINTED_BREAKER_COOLDOWN_S="30"
    )
    failing = [minted_customer(sandbox_client) for _ in range(2)]
    for cid in failing:
        sandbox_client.script("minted", cid, [{"status": 503}] * 2)
    for cid in failing:
        p.process(envelope("minted", cid, dict(MINTED_EXAMPLE)), fresh())
    p.redis.delete(p.keys.pause("minted"))
    env = envelope("minted", failing[0], dict(MINTED_EXAMPLE))
    assert p.process(env, fresh()).reason == "probing"
    p.redis.hset(p.keys.breaker("minted"), "half_at", f"{time.time() - 60:.3f}")

    calls = len(sandbox_client.requests(customer_id=failing[0]))

    result = p.process(env, fresh())

    assert len(sandbox_client.requests(customer_id=failing[0])) == calls + 1  # it probed
    assert (result.outcome.value, result.reason, result.attempt) == ("deferred", "breaker", 0)
    assert json.loads(p.redis.get(p.keys.pause("minted")))["reason"] == "breaker"
