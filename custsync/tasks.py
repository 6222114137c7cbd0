"""The task: what arrives on the public queue goes on to its partner's queue; the rest is
decoded, run through the pipeline and its outcome mapped. Nothing else lives here."""

from __future__ import annotations

from typing import Any

import redis
from celery.exceptions import Reject

from custsync import observability
from custsync.broker.messages import queue_name
from custsync.celery_app import app
from custsync.delivery import Delivery
from custsync.pipeline import Pipeline
from custsync.producer import enqueue
from custsync.runtime import get_runtime
from custsync.state.keys import QUEUE, TASK_NAME

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
        return _forward(envelope, delivery)
    with observability.handling(envelope):  # scrubbing knows this event's personal values
        received = Delivery.from_message(delivery)
        try:
            result = _get_pipeline().process(envelope, received)
        except redis.RedisError as exc:
            # State is unreachable: give the message back rather than lose it.
            raise Reject(f"redis unavailable: {type(exc).__name__}", requeue=True) from exc
        result.log()
    observability.record_outcome(result, received)
    return result.outcome.value


def _from_public_queue(request: Any) -> bool:
    info = getattr(request, "delivery_info", None) or {}
    return info.get("routing_key") == QUEUE


def _forward(envelope: Any, delivery: Any) -> str:
    """An event a plain Celery client put on the public queue goes on to its partner's
    queue (journaled there), so each partner's workers scale and pause on their own."""
    received = Delivery.from_message(delivery) if delivery is not None else None
    try:
        enqueue([(envelope, received.as_dict() if received else None)], app)
    except redis.RedisError as exc:
        raise Reject(f"redis unavailable: {type(exc).__name__}", requeue=True) from exc
    return "forwarded"
