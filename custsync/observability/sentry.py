"""Sentry: errors without personal data, one grouped warning per dead letter, one per outage.

Where events come from: exceptions logged at error level (the logging integration, e.g. the
pipeline's "unexpected error"), unhandled task exceptions (the Celery integration), and the
two explicit reports below. Outcome lines are not events (retries are expected; dead letters
are reported explicitly), nor is a log record marked ``REPORTED``, nor the same logged
error again within a minute.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

from custsync.dlq.entry import DeadLetter
from custsync.observability.scrub import (
    OUTCOME_LOGGER,
    REPORTED_ATTR,
    scrub_breadcrumb,
    scrub_event,
)
from custsync.privacy import mask_text, personal_values
from custsync.targets import declared_fields, public_fields

REPEAT_WINDOW_S = 60.0  # the same logged error again within this is not sent again


class _Repeats:
    """Per process: a Redis outage or a bug hitting every message is one event a minute."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str, str], float] = {}

    def seen(self, record: logging.LogRecord, event: Any) -> bool:
        values = (event.get("exception") or {}).get("values") or [{}]
        key = (record.name, str(record.msg), str(values[-1].get("type")))
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < REPEAT_WINDOW_S:
                return True
            self._last[key] = now
            return False


_repeats = _Repeats()


def _before_send(event: Any, hint: Any) -> Any:
    record = (hint or {}).get("log_record")
    if record is None:
        return scrub_event(event, hint)
    if getattr(record, REPORTED_ATTR, False) or _repeats.seen(record, event):
        return None
    return scrub_event(event, hint)


def init(dsn: str, environment: str | None, release: str) -> None:
    # Keys Sentry's scrubber blanks; values are masked by allow-list in before_send as well.
    denylist = [*DEFAULT_DENYLIST, *sorted({f.lower() for f in declared_fields()})]
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        send_default_pii=False,
        include_local_variables=False,  # frames would carry whole envelopes
        max_request_body_size="never",
        traces_sample_rate=None,  # no tracing: no spans, no per-task cost
        trace_propagation_targets=[],  # never add sentry-trace/baggage to partner requests
        auto_enabling_integrations=False,  # e.g. the redis one: breadcrumbs of keys with ids
        integrations=[
            CeleryIntegration(propagate_traces=False),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        event_scrubber=EventScrubber(denylist=denylist, recursive=True),
        before_send=_before_send,
        before_breadcrumb=scrub_breadcrumb,
    )
    ignore_logger(OUTCOME_LOGGER)


def report_dead_letter(entry: DeadLetter, target: str) -> None:
    """One warning per dead-lettered event, grouped by target and reason."""
    changes = entry.envelope.get("changes") if isinstance(entry.envelope, Mapping) else None
    known = personal_values(changes, public_fields(entry.target))
    tags = {"target": target, "reason": entry.reason, "event_id": entry.event_id}
    if entry.status is not None:
        tags["http_status"] = str(entry.status)
    details: dict[str, Any] = {
        "error_class": entry.error_class,
        "error": entry.error,  # masked by the pipeline
        "attempts": entry.attempts,
        "replays": entry.replays,
        "field_errors": entry.field_errors,
    }
    if entry.response:
        details["response"] = mask_text(
            entry.response, known, entry.customer_id
        )  # secrets: before_send
    sentry_sdk.capture_message(
        f"{target}: event dead-lettered ({entry.reason})",
        level="warning",
        fingerprint=["custsync-dead-letter", target, entry.reason],
        tags=tags,
        contexts={"dead_letter": details},
    )


def report_breaker_opened(target: str, failures: int) -> None:
    sentry_sdk.capture_message(
        f"{target}: partner unavailable, circuit breaker opened",
        level="error",
        fingerprint=["custsync-breaker-open", target],
        tags={"target": target},
        contexts={"breaker": {"consecutive_failures": failures}},
    )
