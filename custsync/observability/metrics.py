"""The worker's own Prometheus metrics: what happened in this process since it started.

State that lives in Redis (queue, retry set, DLQ, breakers) is read at scrape time by
collector.RedisStateCollector instead. Labels are bounded: target names from the registry
(anything else is ``other``), outcomes, reasons and status classes; never ids.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from custsync.dlq.entry import REASONS
from custsync.outcomes import Outcome, Result
from custsync.version import VERSION

OTHER = "other"  # label of a target name nobody configured (invalid events name anything)
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "error")
# Partner calls: loopback sandbox answers in ~1 ms, real partners in 50 ms-10 s (read timeout).
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# First take to applied: milliseconds on a first try, up to the retry age budget (24 h default).
PUBLISH_TO_APPLIED_BUCKETS_S = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
    21_600.0, 86_400.0,
)  # fmt: skip


def register_build_info(registry: CollectorRegistry) -> None:
    """custsync_build_info: which versions run where, for dashboards and upgrade checks."""
    build_info = Gauge(
        "custsync_build_info",
        "Always 1: the versions this worker runs.",
        ["version", "python", "celery", "kombu"],
        registry=registry,
    )
    python = platform.python_version()
    celery, kombu = metadata.version("celery"), metadata.version("kombu")
    build_info.labels(VERSION, python, celery, kombu).set(1)


def status_class(status: int | None) -> str:
    if status is None or not 100 <= status <= 599:
        return "error"
    return f"{status // 100}xx" if status >= 200 else "error"


class Metrics:
    """Counters and histograms, with each label combination's child looked up once."""

    def __init__(self, registry: CollectorRegistry, targets: Iterable[str]) -> None:
        self.targets = frozenset(targets)
        self.events = Counter(
            "custsync_events",
            "Deliveries processed, by target and outcome.",
            ["target", "outcome"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "custsync_dead_letters",
            "Events moved to the dead-letter queue, by target and reason.",
            ["target", "reason"],
            registry=registry,
        )
        self.partner_seconds = Histogram(
            "custsync_partner_request_duration_seconds",
            "Partner API request duration, by target and HTTP status class (error: no answer).",
            ["target", "status_class"],
            buckets=DURATION_BUCKETS_S,
            registry=registry,
        )
        self.token_renewals = Counter(
            "custsync_token_renewals",
            "Partner access tokens fetched by this worker.",
            ["target"],
            registry=registry,
        )
        self.breaker_opens = Counter(
            "custsync_breaker_opens",
            "Circuit breaker openings (including re-openings after a failed probe) seen here.",
            ["target"],
            registry=registry,
        )
        self.publish_to_applied = Histogram(
            "custsync_publish_to_applied_seconds",
            "From custsync first taking an event (its first delivery) to the partner applying"
            " it: retries and pauses included, the first wait in the queue not.",
            ["target"],
            buckets=PUBLISH_TO_APPLIED_BUCKETS_S,
            registry=registry,
        )
        register_build_info(registry)
        self._events: dict[tuple[str, str], Any] = {}
        self._partner: dict[tuple[str, str], Any] = {}
        # Series exist at zero from the start: rate() and increase() see the first one too.
        for target in self.targets:
            for outcome in Outcome:
                self._event_child(target, outcome.value)
            for cls in STATUS_CLASSES:
                self._partner_child(target, cls)
            self.token_renewals.labels(target)
            self.breaker_opens.labels(target)
            self.publish_to_applied.labels(target)
        for target in (*self.targets, OTHER):
            for reason in REASONS:
                self.dead_letters.labels(target, reason)

    def target(self, name: str) -> str:
        return name if name in self.targets else OTHER

    def _event_child(self, target: str, outcome: str) -> Any:
        child = self._events.get((target, outcome))
        if child is None:
            child = self._events[(target, outcome)] = self.events.labels(target, outcome)
        return child

    def _partner_child(self, target: str, cls: str) -> Any:
        child = self._partner.get((target, cls))
        if child is None:
            child = self._partner[(target, cls)] = self.partner_seconds.labels(target, cls)
        return child

    def outcome(self, result: Result, age_s: float | None = None) -> None:
        """``age_s``: seconds since custsync first took the event, if known."""
        target = self.target(result.target)
        self._event_child(target, result.outcome.value).inc()
        if result.outcome is Outcome.APPLIED and age_s is not None:
            # first_seen_at may come from another worker's clock: never a negative latency.
            self.publish_to_applied.labels(target).observe(max(0.0, age_s))
        if result.outcome is Outcome.DEAD_LETTERED:
            reason = result.reason if result.reason in REASONS else OTHER
            self.dead_letters.labels(target, reason).inc()

    def partner_call(self, target: str, status: int | None, duration_s: float) -> None:
        self._partner_child(self.target(target), status_class(status)).observe(duration_s)

    def token_renewal(self, target: str) -> None:
        self.token_renewals.labels(self.target(target)).inc()

    def breaker_opened(self, target: str) -> None:
        self.breaker_opens.labels(self.target(target)).inc()
