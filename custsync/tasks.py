"""The tasks: what arrives on the public queue goes on to its partner's queue; the rest is
decoded, run through the pipeline and its outcome mapped. ``apply_update`` takes one
envelope (the public contract), ``apply_batch`` the items of custsync's own producers."""

from __future__ import annotations

from typing import Any

import redis
from celery.exceptions import Reject

from custsync import batch, observability
from custsync.broker.contract import TaskCall
from custsync.broker.messages import queue_name
from custsync.celery_app import app
from custsync.delivery import Delivery
from custsync.dlq.entry import event_id_of
from custsync.pipeline import Pipeline
from custsync.producer import enqueue
from custsync.runtime import get_runtime
from custsync.state.keys import BATCH_TASK_NAME, QUEUE, TASK_NAME

_pipeline: Pipeline | None = None


def _get_pipeline() -> Pipeline:
    global _pipeline
    if _pipeline is None:
        _pipeline = Pipeline(get_runtime())
    return _pipeline


@app.task(name=TASK_NAME, bind=True, ignore_result=True)
def apply_update(self: Any, envelope: Any, delivery: Any = None) -> str:
    """Apply one customer-change envelope (README, "The event envelope") to its target."""
    if _from_public_queue(self.request) and queue_name(envelope) != QUEUE:
        return _forward([(envelope, delivery)])
    try:
        return _apply_one(TaskCall(envelope, delivery))
    except redis.RedisError as exc:
        # State is unreachable: give the message back rather than lose it.
        raise Reject(f"redis unavailable: {type(exc).__name__}", requeue=True) from exc


@app.task(name=BATCH_TASK_NAME, bind=True, ignore_result=True)
def apply_batch(self: Any, items: list[Any]) -> str:
    """Apply each ``{"envelope", "delivery"}`` item as ``apply_update`` would, each with its
    own outcome; returns once every one has landed (the message is acknowledged then)."""
    calls = [TaskCall(item["envelope"], item.get("delivery")) for item in items]
    if _from_public_queue(self.request):
        elsewhere = [c for c in calls if queue_name(c.envelope) != QUEUE]
        if elsewhere:
            _forward([(c.envelope, c.delivery) for c in elsewhere])
            calls = [c for c in calls if queue_name(c.envelope) == QUEUE]
    # Redelivered (a worker died holding it), or holding an event that was in flight when a
    # worker died (the retry set or the journal brings those back in fresh batches): one
    # event at a time, so a crash is blamed on the one event in flight (poison counting), not
    # on every event that ran beside it.
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    one_by_one = redelivered or _outlived_a_crash(calls)
    results = batch.run(calls, _apply_one, one_by_one=one_by_one)
    failed = [r for r in results if isinstance(r, BaseException)]
    redis_down = [r for r in failed if isinstance(r, redis.RedisError)]
    if redis_down:
        # What landed is in the ledger: the redelivered message finds those as duplicates.
        raise Reject(f"redis unavailable: {type(redis_down[0]).__name__}", requeue=True)
    if any(isinstance(r, batch.NotStarted) for r in failed):
        raise Reject("worker shutting down: the events not started go back", requeue=True)
    if failed:
        raise failed[0]  # a bug: Celery logs it; the journal brings those events back
    counts: dict[str, int] = {}
    for outcome in results:
        counts[str(outcome)] = counts.get(str(outcome), 0) + 1
    return ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))


def _outlived_a_crash(calls: list[TaskCall]) -> bool:
    """Whether an event of these has a delivery count left behind (it is kept only while a
    delivery is in flight, so one left means that delivery died). Only events that were
    taken before (they carry a delivery record: retried, deferred, replayed) can have one,
    so a batch of fresh events costs no round trip; others cost one."""
    rt = get_runtime()
    ids = {event_id_of(c.envelope) for c in calls if c.delivery} - {""}
    if not ids:
        return False
    try:
        return int(rt.redis.exists(*(rt.keys.deliveries(i) for i in ids))) > 0
    except redis.RedisError as exc:
        raise Reject(f"redis unavailable: {type(exc).__name__}", requeue=True) from exc


def _apply_one(call: TaskCall) -> str:
    with observability.handling(call.envelope):  # scrubbing knows this event's personal values
        received = Delivery.from_message(call.delivery)
        result = _get_pipeline().process(call.envelope, received)
        result.log()
    observability.record_outcome(result, received)
    return result.outcome.value


def _from_public_queue(request: Any) -> bool:
    info = getattr(request, "delivery_info", None) or {}
    return info.get("routing_key") == QUEUE


def _forward(items: list[tuple[Any, Any]]) -> str:
    """Events a plain Celery client put on the public queue go on to their partner's
    queue (journaled there), so each partner's workers scale and pause on their own."""
    moved = [
        (envelope, Delivery.from_message(delivery).as_dict() if delivery is not None else None)
        for envelope, delivery in items
    ]
    try:
        enqueue(moved, app)
    except redis.RedisError as exc:
        raise Reject(f"redis unavailable: {type(exc).__name__}", requeue=True) from exc
    return "forwarded"
