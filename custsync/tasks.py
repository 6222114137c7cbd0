"""The task: decode, call the pipeline, map the outcome. Nothing else lives here."""

from __future__ import annotations

from typing import Any

import redis
from celery.exceptions import Reject

from custsync import observability
from custsync.celery_app import app
from custsync.delivery import Delivery
from custsync.pipeline import Pipeline
from custsync.runtime import get_runtime
from custsync.state.keys import TASK_NAME

_pipeline: Pipeline | None = None


def _get_pipeline() -> Pipeline:
    global _pipeline
    if _pipeline is None:
        _pipeline = Pipeline(get_runtime())
    return _pipeline


@app.task(name=TASK_NAME, bind=True, ignore_result=True)
def apply_update(self: Any, envelope: Any, delivery: Any = None) -> str:
    """Apply one customer-change envelope (README, "The event envelope") to its target."""
    with observability.handling(envelope):  # scrubbing knows this event's personal values
        try:
            result = _get_pipeline().process(envelope, Delivery.from_message(delivery))
        except redis.RedisError as exc:
            # State is unreachable: give the message back rather than lose it.
            raise Reject(f"redis unavailable: {type(exc).__name__}", requeue=True) from exc
        result.log()
    observability.record_outcome(result)
    return result.outcome.value
