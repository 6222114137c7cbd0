"""Celery's consumer with a guard in front of its task handler (``worker_consumer``).

Every message is checked (``custsync.broker.contract``) before Celery reads it; one that is
not a valid call of our task is stored in the DLQ as ``malformed`` and only then
acknowledged. Celery's own files are untouched: this subclass replaces the handler it builds.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery.worker.consumer import Consumer

from custsync.broker.contract import (
    Malformed,
    check_batch_body,
    check_body,
    check_content,
    check_headers,
    max_body_bytes,
)
from custsync.broker.messages import batch_label, label
from custsync.broker.quarantine import quarantine
from custsync.runtime import get_runtime
from custsync.state.keys import BATCH_TASK_NAME

log = logging.getLogger("custsync.consumer")


def check_message(message: Any, max_event_bytes: int) -> None:
    """Raise Malformed unless Celery can turn ``message`` into a call of our tasks."""
    headers = message.headers
    check_headers(headers)
    body = message.body
    size = len(body) if isinstance(body, bytes | str) else 0
    limit = max_body_bytes(headers["task"], max_event_bytes)
    check_content(message.content_type, message.content_encoding, size, limit)
    try:
        decoded = message.decode()  # cached on the message: Celery does not decode again
    except Exception as exc:  # any decoder error is the message's fault
        raise Malformed("body", f"cannot be decoded as JSON ({type(exc).__name__})") from None
    if headers["task"] == BATCH_TASK_NAME:
        shown = batch_label([item.envelope for item in check_batch_body(decoded).items])
    else:
        shown = label(check_body(decoded).envelope)
    # Celery acknowledges an expired task and drops it; custsync's age budget decides instead.
    headers.pop("expires", None)
    # Task events, Flower and Celery's logs show these: never the envelope, whoever sent it.
    headers["argsrepr"], headers["kwargsrepr"] = shown, "{}"


HEART_STEP = "celery.worker.consumer.heart:Heart"


class GuardedConsumer(Consumer):  # type: ignore[misc]
    class Blueprint(Consumer.Blueprint):  # type: ignore[misc]
        # A heartbeat that never blocks the consumer's thread on a hung broker.
        default_steps = [
            "custsync.broker.heart:Heart" if step == HEART_STEP else step
            for step in Consumer.Blueprint.default_steps
        ]

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        """kombu could not decode it (e.g. an unknown compression): Celery would drop it."""
        _set_aside(message, Malformed("body", f"cannot be decoded ({type(exc).__name__})"))

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Any:
        handle = super().create_task_handler(*args, **kwargs)
        rt = get_runtime()
        max_bytes = rt.settings.max_event_bytes

        def on_task_received(message: Any) -> Any:
            try:
                check_message(message, max_bytes)
            except Malformed as problem:
                return _set_aside(message, problem)
            except Exception as exc:  # no message may stop the consumer
                return _set_aside(message, Malformed("message", type(exc).__name__))
            try:
                return handle(message)
            except Exception as exc:  # a valid-looking message Celery still failed on
                log.exception("celery could not take a checked message")
                return _set_aside(message, Malformed("message", f"{type(exc).__name__} in celery"))

        return on_task_received


def _set_aside(message: Any, problem: Malformed) -> None:
    try:
        quarantine(get_runtime(), message, problem)
    except redis.RedisError as exc:
        # Not stored, so not acknowledged: back on the queue for when Redis answers again.
        log.warning("malformed message not stored (%s); requeued", type(exc).__name__)
        message.reject_log_error(log, (), requeue=True)
        return
    message.ack_log_error(log, ())
