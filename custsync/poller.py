"""The retry-set poller: a thread in every worker moving due events back to the queue."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from kombu.exceptions import OperationalError

from custsync.producer import enqueue
from custsync.redis_errors import cause
from custsync.runtime import Runtime
from custsync.state.breaker import Breaker, BreakerState
from custsync.state.journal import Journal

log = logging.getLogger("custsync.poller")

RECOVERY_INTERVAL_S = 5.0  # how often one worker looks for events the broker lost
BEAT_STALE_MIN_S = 60.0  # /healthz fails once the loop has not gone round for this long


class RetryPoller:
    def __init__(self, runtime: Runtime, app: Any) -> None:
        self.rt = runtime
        self.app = app
        self.interval_s = runtime.settings.poll_interval_s
        self._stop = threading.Event()
        self.journal = Journal(runtime.redis, runtime.keys)
        self._journaled = runtime.broker_shares_state_redis
        self._next_recovery = 0.0
        self.last_beat = time.monotonic()  # when the loop last went round
        self._thread = threading.Thread(target=self._run, name="custsync-retry-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def beat_stale_s(self) -> float:
        """How old ``last_beat`` may grow while the loop still runs: a pass waits on Redis a
        few times (each at most CUSTSYNC_REDIS_TIMEOUT_S), then pauses; ten such waits, and
        at least a minute."""
        return max(BEAT_STALE_MIN_S, 10 * self.rt.settings.redis_timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def poll_once(self) -> int:
        """Move every due event of every unpaused target; returns how many moved."""
        moved = 0
        now = time.time()
        for target, limit in self._allowances().items():
            while limit > 0:
                n = self.rt.retry_set.move_due(
                    target, now, lambda items: enqueue(items, self.app), limit=limit
                )
                moved += n
                if n < limit or limit == 1:
                    break
        return moved

    def _allowances(self) -> dict[str, int]:
        """Per target, how many due events may move now: none while paused or probing,
        one (the probe) while the breaker is half-open, else a full batch."""
        names = list(self.rt.settings.targets)
        pipe = self.rt.redis.pipeline(transaction=False)
        for name in names:
            pipe.exists(self.rt.keys.pause(name))
            pipe.exists(self.rt.keys.probe(name))
            pipe.hgetall(self.rt.keys.breaker(name))
        answers = pipe.execute()
        out = {}
        now = time.time()
        for i, name in enumerate(names):
            paused, probing, fields = answers[3 * i : 3 * i + 3]
            threshold = self.rt.settings.targets[name].breaker.failures
            state = Breaker.read(fields, threshold, now).state
            if paused or probing:
                out[name] = 0
            elif state is not BreakerState.CLOSED:
                out[name] = 1
            else:
                out[name] = self.rt.retry_set.batch
        return out

    def _recover_lost(self) -> None:
        now = time.monotonic()
        if now < self._next_recovery or not self._journaled:
            return
        self._next_recovery = now + RECOVERY_INTERVAL_S
        self.journal.recover(lambda items: enqueue(items, self.app), RECOVERY_INTERVAL_S)

    def _run(self) -> None:
        down_since: float | None = None  # an outage is one line when it starts, one at its end
        while not self._stop.is_set():
            self.last_beat = time.monotonic()  # Redis or not: the worker's liveness reads it
            try:
                self.poll_once()
                self.rt.dlq.retention.maybe_trim()  # an idle DLQ must age out too
                self._recover_lost()
            except (
                redis.RedisError,
                OperationalError,
            ) as exc:  # keep polling: retries resume when Redis is back
                if down_since is None:
                    down_since = time.monotonic()
                    log.error(
                        "retry poller: cannot reach Redis: %s; retrying every %g s",
                        cause(exc, self.rt.settings.redis_timeout_s),
                        self._backoff_s,
                    )
                self._stop.wait(self._backoff_s)
                continue
            except Exception:  # a bug: its traceback, but the poller goes on
                log.exception("retry poller failed; trying again")
                self._stop.wait(self._backoff_s)
            if down_since is not None:
                log.warning(
                    "retry poller: Redis reachable again after %.0f s",
                    time.monotonic() - down_since,
                )
                down_since = None
            self._stop.wait(self.interval_s)

    @property
    def _backoff_s(self) -> float:
        return min(5.0, self.interval_s * 10)
