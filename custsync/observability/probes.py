"""What a worker's /healthz and /readyz decide (custsync.observability.endpoints serves them).

Liveness never asks Redis: during an outage a worker waits and resumes by itself, and a
kubelet that restarted it would only add cold starts to the outage (CrashLoopBackOff).
Readiness is where Redis and the broker are checked.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from custsync.redis_connect import connect
from custsync.redis_errors import cause

if TYPE_CHECKING:
    from custsync.runtime import Runtime


class Beating(Protocol):
    """The retry poller as liveness sees it: its thread, and when its loop last went round."""

    last_beat: float  # time.monotonic()

    @property
    def beat_stale_s(self) -> float: ...

    def is_alive(self) -> bool: ...


class Liveness:
    """Alive and working: Celery's consumer (the main thread), the pool's threads, and the
    retry poller's thread with a fresh beat. Failing until the worker's steps started."""

    def __init__(self) -> None:
        self._pool: Any = None
        self._poller: Beating | None = None

    def watch(self, pool: Any, poller: Beating) -> None:
        self._pool, self._poller = pool, poller

    def __call__(self) -> dict[str, str]:
        poller = self._poller
        if poller is None:
            return {"worker": "starting: the pool and the retry poller are not running yet"}
        failed: dict[str, str] = {}
        if not threading.main_thread().is_alive():
            failed["consumer"] = "the main thread, Celery's consumer, has ended"
        pool = _pool_problem(self._pool)
        if pool:
            failed["pool"] = pool
        if not poller.is_alive():
            failed["poller"] = "the retry poller's thread has ended"
        age = time.monotonic() - poller.last_beat
        if age > poller.beat_stale_s:
            failed["beat"] = (
                f"the retry poller's loop last went round {age:.0f} s ago"
                f" (stale after {poller.beat_stale_s:g} s)"
            )
        return failed


def _pool_problem(pool: Any) -> str | None:
    """What is wrong with the threads pool's executor; other pools are not looked into."""
    executor = getattr(pool, "executor", None)
    if executor is None:
        return None
    if getattr(executor, "_shutdown", False):
        return "the thread pool was shut down"
    if getattr(executor, "_broken", False):
        return "the thread pool is broken"
    threads: set[threading.Thread] = getattr(executor, "_threads", set()).copy()  # atomic copy
    dead = sum(1 for t in threads if not t.is_alive())
    return f"{dead} of the pool's {len(threads)} threads have ended" if dead else None


class Readiness:
    """The state Redis and the broker answer, each within CUSTSYNC_REDIS_TIMEOUT_S, on
    clients of the probe's own: a worker whose connection pools are busy still answers."""

    def __init__(self, runtime: Runtime, app: Any) -> None:
        self._runtime = runtime
        self._app = app

    def __call__(self) -> dict[str, str]:
        timeout_s = self._runtime.settings.redis_timeout_s
        failed: dict[str, str] = {}
        redis_down = _ping_redis(self._runtime.redis_url, timeout_s)
        if redis_down:
            failed["redis"] = redis_down
        if self._runtime.broker_shares_state_redis:
            broker_down = f"the state Redis: {redis_down}" if redis_down else None
        else:
            broker_down = _reach_broker(self._app, timeout_s)
        if broker_down:
            failed["broker"] = broker_down
        return failed


def _ping_redis(url: str, timeout_s: float) -> str | None:
    client = connect(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),  # one try: the kubelet repeats
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return cause(exc, timeout_s)
    finally:
        client.close()
    return None


def _reach_broker(app: Any, timeout_s: float) -> str | None:
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=0, timeout=timeout_s)  # one try, as above
    except Exception as exc:  # any transport's failure, in one line
        return cause(exc)  # its socket timeout is the transport's, not necessarily timeout_s
    return None
