"""No message can stop the pipeline: garbage on the queue, mixed with valid events, through
two real workers. Every valid event is applied once; every broken message is in the DLQ."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from kombu import Message

from custsync.broker.consumer import check_message
from custsync.broker.messages import MessageBuilder
from custsync.sandbox import SandboxClient
from custsync.state.keys import QUEUE  # garbage arrives where any client writes
from tests.conftest import WorkerPool, wait_for
from tests.events import MINTED_EXAMPLE, new_id
from tests.garbage import CASES, marker_envelope, oversized, valid_envelope

GARBAGE_DB = 20
VALID = 500


def kombu_garbage(pool: WorkerPool) -> int:
    """Broken messages sent the way another Celery client would: through kombu itself."""
    envelope = marker_envelope()
    sends: list[dict[str, Any]] = [
        {"body": json.dumps([envelope]), "headers": {"task": "custsync.apply_update", "id": "k1"}},
        {
            "body": b"\x80\x04pickled",
            "content_type": "application/x-python-serialize",
            "headers": {"task": "custsync.apply_update", "id": "k2"},
        },
        {"body": json.dumps([[envelope], {}, {}]), "headers": {"task": 42, "id": "k3"}},
    ]
    with pool.app.connection_for_write() as conn:
        producer = conn.Producer()
        for send in sends:
            producer.publish(
                send["body"],
                routing_key="custsync",
                exchange="",
                headers=send["headers"],
                content_type=send.get("content_type", "application/json"),
                content_encoding="utf-8" if isinstance(send["body"], str) else "binary",
            )
    return len(sends)


def test_garbage_mixed_with_valid_events_stops_no_worker_and_loses_nothing(
    pool_factory: Callable[..., WorkerPool], sandbox_client: SandboxClient
) -> None:
    pool = pool_factory(GARBAGE_DB, size=2)
    rt = pool.runtime
    builder = MessageBuilder(pool.app)
    customers = [new_id("GB") for _ in range(VALID)]
    sandbox_client.put_customers(
        "minted", {cid: {**MINTED_EXAMPLE, "external_id": cid} for cid in customers}
    )
    valid = [valid_envelope(cid) for cid in customers]
    markers: list[str] = []

    def broken(build: Callable[[str], bytes]) -> bytes:
        env = marker_envelope()
        markers.append(env["event_id"])
        return build(builder.build(env, None))

    garbage = [(name, broken(build)) for name, build in CASES]
    garbage.append(("oversized", broken(lambda valid: oversized(valid, 300 * 1024))))
    items: list[bytes | str] = [builder.build(env, None) for env in valid]
    items += [raw for _, raw in garbage]
    random.Random(7).shuffle(items)
    pipe = rt.redis.pipeline(transaction=False)
    for item in items:
        pipe.lpush(QUEUE, item)
    pipe.execute()
    expected_dlq = len(garbage) + kombu_garbage(pool)

    def settled() -> bool:
        applied = pool.counters("minted").get("applied", 0)
        queued, unacked = rt.redis.llen(QUEUE), rt.redis.hlen("unacked")
        return applied >= VALID and rt.dlq.count() >= expected_dlq and not (queued or unacked)

    wait_for(settled, timeout_s=180, interval_s=0.5)

    assert all(w.proc is not None and w.proc.poll() is None for w in pool.workers)
    logs = pool.log_text()
    assert "Unrecoverable error" not in logs and "Traceback" not in logs
    assert MINTED_EXAMPLE["identity_number"] not in logs  # the garbage carried personal data
    entries = rt.dlq.newest(1000)
    assert len(entries) == expected_dlq  # every broken message accounted for, once
    assert {e.reason for e in entries} == {"malformed"}, Counter(e.error for e in entries)
    assert all(e.raw is not None and len(e.raw) <= 64 * 1024 for e in entries)
    assert all(e.error.startswith("not a valid task message: ") for e in entries)
    # The worker applied every valid event exactly once and none of the broken ones.
    applied = Counter(
        r["idempotency_key"] for r in sandbox_client.requests(target="minted") if r["status"] == 200
    )
    assert all(applied[env["event_id"]] == 1 for env in valid)
    assert not any(applied[m] for m in markers)


def test_an_envelope_in_a_body_of_the_wrong_shape_is_kept_for_replay(
    pool_factory: Callable[..., WorkerPool], sandbox_client: SandboxClient
) -> None:
    pool = pool_factory(GARBAGE_DB, size=1)
    rt = pool.runtime
    builder = MessageBuilder(pool.app)
    cid = new_id("GB")
    sandbox_client.put_customer("minted", cid, {**MINTED_EXAMPLE, "external_id": cid})
    env = valid_envelope(cid)
    message = json.loads(builder.build(env, None))
    from tests.garbage import _with_body

    rt.redis.lpush(QUEUE, json.dumps(_with_body(message, [env])))  # [envelope]: v1-ish

    entry = wait_for(lambda: rt.dlq.get(env["event_id"]), timeout_s=30)
    assert entry.reason == "malformed" and entry.envelope == env
    assert "body: not protocol v2" in entry.error
    assert rt.redis.hlen("unacked") == 0 and rt.redis.llen(QUEUE) == 0


def test_a_plain_celery_client_s_envelope_never_reaches_task_events() -> None:
    """A message as ``send_task`` writes it (argsrepr is the envelope's repr): the guard
    replaces what task events, Flower and Celery's logs show before Celery reads it."""
    env = valid_envelope("C-1")
    env["changes"]["identity_number"] = "99911122233"
    body = json.dumps([[env], {"delivery": {"attempts": 1}}, None])
    headers = {"task": "custsync.apply_update", "id": "t-1", "argsrepr": repr((env,))}
    headers["kwargsrepr"] = repr({"delivery": {"attempts": 1}, "envelope": env})
    message = Message(body=body, content_type="application/json", headers=headers)
    message.content_encoding = "utf-8"

    check_message(message, 256 * 1024)

    assert headers["argsrepr"] == f"(<envelope {env['event_id']} {env['target']}>,)"
    assert headers["kwargsrepr"] == "{}"
    assert "99911122233" not in json.dumps(headers)
