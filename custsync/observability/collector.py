"""Gauges of the state shared in Redis, read when Prometheus scrapes: one pipelined round trip.

Every worker exports the same values (they are cluster-wide): aggregate with max(), not sum().
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from custsync.dlq.entry import REASONS
from custsync.state.breaker import Breaker, BreakerState
from custsync.state.keys import UNACKED, Keys, all_queues
from custsync.targets import REGISTRY

log = logging.getLogger("custsync.metrics")


class RedisStateCollector(Collector):
    def __init__(
        self,
        redis: Any,
        keys: Keys,
        targets: dict[str, int],
        *,
        queue_in_redis: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.targets = targets  # name -> breaker failure threshold
        self.queue_in_redis = queue_in_redis
        self.queues = all_queues(REGISTRY)  # the public queue and every partner's, as status
        self.clock = clock

    def describe(self) -> Iterable[Any]:
        return self._families()  # empty families: registering must not call Redis

    def collect(self) -> Iterable[Any]:
        up = GaugeMetricFamily("custsync_redis_up", "1 if the state Redis answered this scrape.")
        try:
            answers = self._read()
        except Exception as exc:  # a scrape must answer even when Redis does not
            log.warning("metrics: cannot read Redis: %s", type(exc).__name__)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *self._fill(answers, self.clock())]

    def _read(self) -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        for name in self.targets:
            pipe.zcard(self.keys.retry(name))
            pipe.hgetall(self.keys.breaker(name))
            pipe.pttl(self.keys.pause(name))
            pipe.get(self.keys.last_success(name))
            pipe.zrange(self.keys.retry(name), 0, 0, withscores=True)  # the earliest due
            pipe.zrange(self.keys.dlq_by("target", name), 0, 0, withscores=True)
        for reason in REASONS:
            pipe.zcard(self.keys.dlq_by("reason", reason))
        if self.queue_in_redis:
            for queue in self.queues:
                pipe.llen(queue)
            pipe.hlen(UNACKED)
        return list(pipe.execute())

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "custsync_retry_set_size", "Events waiting in the retry set.", labels=["target"]
            ),
            GaugeMetricFamily(
                "custsync_breaker_state",
                "Circuit breaker state: 1 for the current one of closed, open, half_open.",
                labels=["target", "state"],
            ),
            GaugeMetricFamily(
                "custsync_breaker_consecutive_failures",
                "Customers that failed target-wide since the last success (the breaker's count).",
                labels=["target"],
            ),
            GaugeMetricFamily(
                "custsync_target_paused",
                "1 while the target is paused (429 Retry-After, auth failure, open breaker).",
                labels=["target"],
            ),
            GaugeMetricFamily(
                "custsync_dlq_entries", "Entries in the dead-letter queue.", labels=["reason"]
            ),
            GaugeMetricFamily(
                "custsync_queue_messages",
                "Messages waiting in the broker queue (Redis broker only).",
                labels=["queue"],
            ),
            GaugeMetricFamily(
                "custsync_queue_unacked_messages",
                "Messages taken by workers and not yet acknowledged (Redis broker only).",
            ),
            GaugeMetricFamily(
                "custsync_last_success_timestamp_seconds",
                "When the target last applied an event (epoch seconds); absent until it has.",
                labels=["target"],
            ),
            GaugeMetricFamily(
                "custsync_retry_oldest_age_seconds",
                "How far the retry set is behind: now minus the due time of its most overdue"
                " event, 0 when none is (it grows while the target is paused or its breaker open).",
                labels=["target"],
            ),
            GaugeMetricFamily(
                "custsync_dlq_oldest_age_seconds",
                "Age of the target's oldest dead letter, 0 when it has none.",
                labels=["target"],
            ),
        ]

    def _fill(self, answers: Sequence[Any], now: float) -> list[GaugeMetricFamily]:
        retry, breaker, failures, paused, dlq, queue, unacked, *ages = self._families()
        last_success, retry_behind, dlq_oldest = ages
        it = iter(answers)
        for name, threshold in self.targets.items():
            retry.add_metric([name], int(next(it)))
            current = Breaker.read(next(it), threshold, now)
            for state in BreakerState:
                breaker.add_metric([name, state.value], 1 if state is current.state else 0)
            failures.add_metric([name], current.failures)
            paused.add_metric([name], 1 if int(next(it)) > 0 else 0)
            last = next(it)
            if last is not None:
                last_success.add_metric([name], float(last))
            retry_behind.add_metric([name], _age(next(it), now))
            dlq_oldest.add_metric([name], _age(next(it), now))
        for reason in REASONS:
            dlq.add_metric([reason], int(next(it)))
        out = [retry, breaker, failures, paused, dlq, last_success, retry_behind, dlq_oldest]
        if self.queue_in_redis:
            for name in self.queues:
                queue.add_metric([name], int(next(it)))
            unacked.add_metric([], int(next(it)))
            out += [queue, unacked]
        return out


def _age(first: Sequence[tuple[Any, float]], now: float) -> float:
    """Seconds since the score of a ZRANGE 0 0 WITHSCORES answer; 0 if empty or in the future."""
    return max(0.0, now - float(first[0][1])) if first else 0.0
