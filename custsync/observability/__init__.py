"""What the rest of custsync calls to be observed: metrics, Sentry, scrubbing.

Every hook is a no-op costing one global lookup until ``setup`` turned its part on, so the
hot path pays nothing for what is off (Celery's own per-task overhead is ~2.5-3 ms).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from custsync.observability.scrub import REPORTED, ScrubFilter, handling, scrub_text
from custsync.targets import REGISTRY as TARGET_REGISTRY

if TYPE_CHECKING:
    from custsync.delivery import Delivery
    from custsync.dlq.entry import DeadLetter
    from custsync.observability.endpoints import Check
    from custsync.observability.metrics import Metrics
    from custsync.outcomes import Result
    from custsync.runtime import Runtime

__all__ = [
    "REPORTED",
    "ScrubFilter",
    "handling",
    "record_outcome",
    "record_partner_call",
    "record_token_renewal",
    "report_breaker_opened",
    "report_dead_letter",
    "scrub_text",
    "setup",
]

log = logging.getLogger("custsync.observability")

_metrics: Metrics | None = None
_sentry_runtime: Runtime | None = None  # set when Sentry is on
_setup_lock = threading.Lock()
_done = False


def record_outcome(result: Result, delivery: Delivery | None = None) -> None:
    m = _metrics
    if m is not None:
        m.outcome(result, None if delivery is None else delivery.age_s(time.time()))


def record_partner_call(target: str, status: int | None, duration_s: float) -> None:
    m = _metrics
    if m is not None:
        m.partner_call(target, status, duration_s)


def record_token_renewal(target: str) -> None:
    m = _metrics
    if m is not None:
        m.token_renewal(target)


def report_dead_letter(entry: DeadLetter) -> None:
    if _sentry_runtime is None:
        return
    from custsync.observability import sentry

    try:
        sentry.report_dead_letter(entry, _label(entry.target))
    except Exception:  # observing must never fail the delivery
        log.warning("cannot report a dead letter to Sentry", exc_info=True)


def report_breaker_opened(target: str, failures: int) -> None:
    """Once per outage across all workers: the first to open the breaker claims the alert."""
    m = _metrics
    if m is not None:
        m.breaker_opened(target)
    rt = _sentry_runtime
    if rt is None:
        return
    from custsync.observability import sentry

    try:
        claim = rt.scripts(
            "breaker_alert_claim", keys={"breaker": rt.keys.breaker(target)}, args={}
        )
        if claim:
            sentry.report_breaker_opened(_label(target), failures)
    except Exception:
        log.warning("cannot report an open breaker to Sentry", exc_info=True)


def _label(target: str) -> str:
    return target if target in TARGET_REGISTRY else "other"


def setup(
    runtime: Runtime, *, liveness: Check | None = None, readiness: Check | None = None
) -> None:
    """Turn on what the settings ask for: Sentry (SENTRY_DSN) and the HTTP endpoints
    (CUSTSYNC_METRICS_PORT: /metrics, and /healthz and /readyz for the checks given; no
    port, no endpoints). Idempotent: the second call does nothing."""
    global _done, _metrics, _sentry_runtime
    with _setup_lock:
        if _done:
            return
        _done = True
        s = runtime.settings
        if s.sentry_dsn:
            from custsync.observability import sentry
            from custsync.version import VERSION as __version__

            sentry.init(s.sentry_dsn, s.sentry_environment, f"custsync@{__version__}")
            _sentry_runtime = runtime
        if s.metrics_port is not None:
            _metrics = _start_metrics(runtime, s.metrics_port, liveness, readiness)


def _start_metrics(
    runtime: Runtime, port: int, liveness: Check | None, readiness: Check | None
) -> Metrics:
    """Counters in the default registry (one process: the threads pool), the Redis gauges
    read at scrape time, and the HTTP endpoints in a daemon thread."""
    from prometheus_client import REGISTRY, disable_created_metrics

    from custsync.observability import endpoints
    from custsync.observability.collector import RedisStateCollector
    from custsync.observability.metrics import Metrics

    s = runtime.settings
    disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created: noise, never graphed
    metrics = Metrics(REGISTRY, TARGET_REGISTRY)
    thresholds = {name: cfg.breaker.failures for name, cfg in s.targets.items()}
    queue_in_redis = runtime.broker_shares_state_redis
    REGISTRY.register(
        RedisStateCollector(runtime.redis, runtime.keys, thresholds, queue_in_redis=queue_in_redis)
    )
    try:
        endpoints.serve(port, REGISTRY, liveness=liveness, readiness=readiness)
    except OSError as exc:  # a second worker on the same host: run on, without metrics
        log.error("metrics: cannot listen on port %d: %s", port, exc.strerror)
    return metrics
