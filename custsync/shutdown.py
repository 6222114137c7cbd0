"""A worker stops on SIGTERM or SIGINT within its grace period, even when Redis hangs.

The heartbeat no longer blocks on a hung broker (custsync.broker.heart); for anything else
Celery might be stuck on, a watchdog ends the process if a shutdown still has not finished
by its deadline: late-acked messages are then redelivered, nothing is lost. No Celery
import here: the worker imports this before Sentry patches Celery's tracer.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("custsync.worker")

SHUTDOWN_MARGIN_S = 5.0  # after the soft shutdown and a last Redis wait, before SIGKILL


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
