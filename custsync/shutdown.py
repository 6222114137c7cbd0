"""A worker stops on SIGTERM or SIGINT within its grace period, even when Redis hangs.

Celery sends its heartbeat with "retry until the broker answers" on the consumer's own
thread: with a Redis that accepts connections but never answers, that loop never returns
to see the shutdown flag. Our heartbeat does not retry (a missed beat is buffered and sent
later), and a watchdog ends the process if a shutdown still has not finished by its
deadline: late-acked messages are then redelivered, nothing is lost.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery.worker import heartbeat
from celery.worker.consumer import heart

log = logging.getLogger("custsync.worker")

HEART_STEP = "celery.worker.consumer.heart:Heart"
SHUTDOWN_MARGIN_S = 5.0  # after the soft shutdown and a last Redis wait, before SIGKILL


class _Heart(heartbeat.Heart):  # type: ignore[misc]
    def _send(self, event: str, retry: bool = False) -> Any:
        return super()._send(event, retry=retry)


class Heart(heart.Heart):  # type: ignore[misc]
    """Celery's heartbeat step, sending beats that give up instead of retrying forever."""

    def start(self, c: Any) -> None:
        c.heart = _Heart(c.timer, c.event_dispatcher, self.heartbeat_interval)
        c.heart.start()


def deadline_s(soft_shutdown_s: float, redis_timeout_s: float) -> float:
    """How long a shutdown may take: in-flight calls, then one Redis wait to ack, then a margin."""
    return soft_shutdown_s + 2 * redis_timeout_s + SHUTDOWN_MARGIN_S


_armed = threading.Lock()


def arm_watchdog(deadline: float, exitcode: int) -> None:
    """End the process ``deadline`` seconds from now unless it has exited by then."""
    if not _armed.acquire(blocking=False):
        return  # a second signal: the first deadline stands

    def expire() -> None:
        log.error(
            "shutdown did not finish within %g s (Redis or the broker not answering);"
            " exiting now, unacknowledged messages will be redelivered",
            deadline,
        )
        logging.shutdown()
        os._exit(exitcode or 1)

    timer = threading.Timer(deadline, expire)
    timer.name, timer.daemon = "custsync-shutdown-watchdog", True
    timer.start()
