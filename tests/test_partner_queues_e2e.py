"""One queue per partner: custsync's producers route each event to its partner's queue, a
worker started with ``--targets`` consumes only those, and an event a plain Celery client
puts on the public queue is forwarded to its partner's queue, then applied."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from custsync.celery_app import producer_app
from custsync.embedded.server import EphemeralRedis
from custsync.producer import publish_many
from custsync.runtime import Runtime
from custsync.sandbox import Sandbox, SandboxClient
from custsync.settings import load_settings
from custsync.state.keys import QUEUE, TASK_NAME, partner_queue
from tests.conftest import WorkerProcess, custsync_env, db_url, run_cli, wait_for
from tests.dlq_support import queued_event_ids
from tests.events import MINTED_EXAMPLE, envelope, new_id, vendor_changes, vendor_customer
from tests.events import minted_customer as minted_customer_of

DB = 31


@pytest.fixture
def env(redis_server: EphemeralRedis, sandbox: Sandbox) -> Iterator[dict[str, str]]:
    redis.Redis.from_url(db_url(redis_server, DB)).flushdb()
    yield custsync_env(redis_server, sandbox, DB)
    redis.Redis.from_url(db_url(redis_server, DB)).flushdb()


def test_producers_route_each_event_to_its_partners_queue(env: dict[str, str]) -> None:
    rt = Runtime(load_settings(env))
    minted = envelope("minted", new_id("Q"), dict(MINTED_EXAMPLE))
    code = new_id("Q")
    vendor = envelope("vendor", code, vendor_changes(code))
    publish_many([minted, vendor], app=producer_app(rt))
    assert rt.redis.llen(QUEUE) == 0
    assert [_event_id(r) for r in rt.redis.lrange(partner_queue("minted"), 0, -1)] == [
        minted["event_id"]
    ]
    assert [_event_id(r) for r in rt.redis.lrange(partner_queue("vendor"), 0, -1)] == [
        vendor["event_id"]
    ]
    status = json.loads(run_cli(env, "status", "--json").stdout)
    assert status["queue"]["queues"] == {QUEUE: 0, "custsync.minted": 1, "custsync.vendor": 1}
    assert status["targets"]["minted"]["queued"] == 1


def test_a_worker_for_one_partner_leaves_the_other_and_the_public_queue_is_forwarded(
    env: dict[str, str], sandbox_client: SandboxClient, tmp_path: Path
) -> None:
    rt = Runtime(load_settings(env))
    app = producer_app(rt)
    minted_customer, vendor_code = (
        minted_customer_of(sandbox_client),
        vendor_customer(sandbox_client),
    )
    minted = envelope("minted", minted_customer, {**MINTED_EXAMPLE, "lastname": "Routed"})
    vendor = envelope("vendor", vendor_code, vendor_changes(vendor_code))
    publish_many([minted, vendor], app=app)
    # A plain Celery client knows only the public queue.
    plain = envelope("minted", minted_customer, {**MINTED_EXAMPLE, "lastname": "Forwarded"})
    plain["sequence"] = minted.get("sequence", 0) + 1
    app.send_task(TASK_NAME, args=(plain,), queue=QUEUE)

    only_vendor = WorkerProcess(env, tmp_path / "vendor.log", "--targets", "vendor").start()
    try:
        wait_for(lambda: _applied(sandbox_client, "vendor", vendor["event_id"]), timeout_s=60)
        # Its worker took nothing of Minted's, nor the public queue's message.
        assert rt.redis.llen(partner_queue("minted")) == 1
        assert rt.redis.llen(QUEUE) == 1
    finally:
        only_vendor.stop()

    everything = WorkerProcess(env, tmp_path / "all.log").start()
    try:
        wait_for(lambda: _applied(sandbox_client, "minted", plain["event_id"]), timeout_s=60)
        assert _applied(sandbox_client, "minted", minted["event_id"])
        assert queued_event_ids(rt.redis) == []
    finally:
        everything.stop()
    customer = sandbox_client.get_customer("minted", minted_customer) or {}
    assert customer.get("lastname") == "Forwarded"  # the newer change won, in order
    bad = run_cli(env, "worker", "--targets", "nobody")
    assert bad.returncode == 2 and "--targets: unknown partner nobody" in bad.stderr


def _applied(client: SandboxClient, target: str, event_id: str) -> bool:
    return any(
        r["status"] == 200 and r["idempotency_key"] == event_id
        for r in client.requests(target=target)
    )


def _event_id(raw: str) -> str:
    import base64

    args = json.loads(base64.b64decode(json.loads(raw)["body"]))[0]
    return str(args[0]["event_id"])
