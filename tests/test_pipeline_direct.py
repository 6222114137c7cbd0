"""The pipeline as plain code against the real Redis and sandbox, no worker: the retry set,
pause state and auth failures, with settings the shared worker cannot have."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from custsync.delivery import Delivery
from custsync.pipeline import Pipeline
from custsync.sandbox import SandboxClient
from tests.conftest import pipeline_for
from tests.events import MINTED_EXAMPLE, envelope, minted_customer


def one_event_waiting(
    env: dict[str, str], sandbox_client: SandboxClient
) -> tuple[Pipeline, dict[str, Any]]:
    """A pipeline whose one event got a 503 and now waits in the retry set."""
    pipeline = pipeline_for(env)
    cid = minted_customer(sandbox_client)
    sandbox_client.script("minted", cid, [{"status": 503}])
    event = envelope("minted", cid, dict(MINTED_EXAMPLE))
    pipeline.process(event, Delivery(first_seen_at=time.time()))
    return pipeline, event


def test_a_retry_waits_in_the_retry_set_not_in_the_worker(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    pipeline = pipeline_for(direct_env, CUSTSYNC_MINTED_BACKOFF_BASE_S="30")
    cid = minted_customer(sandbox_client)
    sandbox_client.script("minted", cid, [{"status": 503}])
    env = envelope("minted", cid, dict(MINTED_EXAMPLE))

    before = time.time()
    result = pipeline.process(env, Delivery(first_seen_at=before))

    assert result.outcome == "retry_scheduled"
    assert not pipeline.redis.exists(pipeline.keys.inflight("minted", cid))  # released
    members = pipeline.redis.zrange(pipeline.keys.retry("minted"), 0, -1, withscores=True)
    assert len(members) == 1
    member, due_at = members[0]
    waiting = json.loads(member)
    assert waiting["envelope"] == env
    assert waiting["delivery"]["attempts"] == 1
    assert before <= due_at <= before + 30.5  # full jitter over [0, 30 s]


def test_the_retry_set_hands_each_due_event_out_once(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    pipeline, env = one_event_waiting(direct_env, sandbox_client)
    rt = pipeline.rt
    later = time.time() + 60

    sent: list[tuple[object, dict[str, object]]] = []
    counts = [rt.retry_set.move_due("minted", later, sent.extend) for _ in range(3)]

    assert counts == [1, 0, 0]  # three pollers racing: the event moves once
    assert sent[0][0] == env
    assert sent[0][1]["attempts"] == 1
    assert rt.retry_set.size("minted") == 0


def test_a_claim_whose_send_failed_is_handed_out_again_after_its_lease(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    pipeline, env = one_event_waiting(direct_env, sandbox_client)
    rt = pipeline.rt
    now = time.time() + 60

    def broker_down(items: object) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        rt.retry_set.move_due("minted", now, broker_down)
    assert rt.retry_set.size("minted") == 1  # not lost: still claimed
    sent: list[tuple[object, dict[str, object]]] = []
    assert rt.retry_set.move_due("minted", now + 1, sent.extend) == 0  # lease still running
    assert rt.retry_set.move_due("minted", now + rt.retry_set.lease_s + 1, sent.extend) == 1
    assert sent[0][0] == env
    assert rt.retry_set.size("minted") == 0


def test_bad_digest_credentials_pause_the_target_and_end_in_the_dlq_as_auth(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    pipeline = pipeline_for(direct_env, CUSTSYNC_MINTED_PASSWORD="wrong-password")
    cid = minted_customer(sandbox_client)
    env = envelope("minted", cid, {**MINTED_EXAMPLE, "lastname": "Unauthorized"})

    first = pipeline.process(env, Delivery(first_seen_at=time.time()))
    assert first.outcome == "deferred"
    assert first.reason == "auth"
    pause = json.loads(pipeline.redis.get(pipeline.keys.pause("minted")))
    assert pause["reason"] == "auth"

    pipeline.redis.delete(pipeline.keys.pause("minted"))
    expired = Delivery(first_seen_at=time.time() - 90_000)  # older than the 24 h age budget
    last = pipeline.process(env, expired)
    assert last.outcome == "dead_lettered"
    entry = pipeline.rt.dlq.get(env["event_id"])
    assert entry is not None
    assert (entry.reason, entry.status) == ("auth", 401)
    assert sandbox_client.get_customer("minted", cid)["lastname"] == "Due"


def test_a_paused_target_defers_without_calling_the_partner(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    pipeline = pipeline_for(direct_env)
    cid = minted_customer(sandbox_client)
    pipeline.redis.set(
        pipeline.keys.pause("minted"), json.dumps({"until": time.time() + 30, "reason": "t"}), ex=30
    )
    env = envelope("minted", cid, dict(MINTED_EXAMPLE))

    result = pipeline.process(env, Delivery(first_seen_at=time.time()))

    assert result.outcome == "deferred"
    assert result.attempt == 0
    assert sandbox_client.requests(key=env["event_id"]) == []
    assert pipeline.redis.zcard(pipeline.keys.retry("minted")) == 1
