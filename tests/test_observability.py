"""The observability parts on their own: scrubbing, metrics, the Redis collector (against the
session's real Redis), Sentry's setup in a real process (no trace headers to partners)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from custsync.embedded.server import EphemeralRedis
from custsync.logs import JsonFormatter
from custsync.observability import ScrubFilter, handling, scrub_text
from custsync.observability.collector import RedisStateCollector
from custsync.observability.metrics import Metrics, status_class
from custsync.observability.scrub import scrub_breadcrumb, scrub_event
from custsync.outcomes import Outcome, Result
from custsync.state.keys import QUEUE, Keys, partner_queue
from custsync.targets import REGISTRY
from tests.conftest import db_url
from tests.sentry_capture import SentryCapture

COLLECTOR_DB = 10
ENVELOPE = {
    "event_id": "ev-20260101-123456",
    "target": "vendor",
    "changes": {"firstName": "vendor", "lastName": "Yıldırım", "tckn": "10000000146"},
}


def test_scrub_masks_personal_values_and_secrets_but_keeps_the_event_id() -> None:
    text = (
        "ev-20260101-123456 failed for Yıldırım tckn 10000000146 <a.b@example.com>"
        " Authorization: Bearer eyJ.abc.def password=hunter22 at redis://:s3cret@host:6379/0"
        " on vendor"
    )
    with handling(ENVELOPE):
        scrubbed = scrub_text(text)
    assert scrubbed.startswith("ev-20260101-123456 failed")
    for leak in ("Yıldırım", "10000000146", "a.b@example.com", "eyJ", "hunter22", "s3cret"):
        assert leak not in scrubbed
    assert scrubbed.endswith("on vendor")  # a first name equal to a target name masks nothing
    assert "Yıldırım" in scrub_text("Yıldırım")  # outside a task only shapes are known


def test_scrub_event_masks_data_and_leaves_the_sdk_fields_intact() -> None:
    event: dict[str, Any] = {
        "event_id": "0123456789abcdef0123456789abcdef",
        "timestamp": "2026-11-22T10:11:12.123456Z",
        "exception": {
            "values": [
                {
                    "type": "RuntimeError",
                    "value": "tckn 10000000146 rejected",
                    "stacktrace": {"frames": [{"function": "f", "vars": {"envelope": "x"}}]},
                }
            ]
        },
        "logentry": {"message": "sent %s", "params": ["a.b@example.com"], "formatted": "sent ***"},
        "extra": {"body": {"email": "a.b@example.com", "Authorization": "Bearer t"}},
        "contexts": {"trace": {"trace_id": "1234567890abcdef"}, "dead_letter": {"phone": "5"}},
        "tags": {"event_id": "ev-123456789", "other": "call 905551112233"},
        "user": {"email": "a.b@example.com"},
        "breadcrumbs": {
            "values": [
                {"category": "httplib", "data": {"url": "http://u:p@h:1/vendor/customer/V123456"}}
            ]
        },
    }
    out = json.dumps(scrub_event(event))
    for leak in ("10000000146", "a.b@example.com", "Bearer t", "V123456", "905551112233", "vars"):
        assert leak not in out
    assert event["event_id"] == "0123456789abcdef0123456789abcdef"
    assert event["timestamp"] == "2026-11-22T10:11:12.123456Z"
    assert event["contexts"]["trace"]["trace_id"] == "1234567890abcdef"
    assert event["tags"]["event_id"] == "ev-123456789"
    assert event["breadcrumbs"]["values"][0]["data"]["url"] == "http://u:***@h:1/…"
    assert "user" not in event


def test_breadcrumbs_keep_the_partner_host_not_the_customer() -> None:
    crumb = scrub_breadcrumb(
        {"data": {"url": "https://api.example.com/partner/customer/C-1?x=1", "http.query": "x=1"}}
    )
    assert crumb["data"] == {"url": "https://api.example.com/…"}


def test_log_filter_scrubs_messages_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ScrubFilter())
    log = logging.getLogger("custsync.test-scrub")
    log.addHandler(handler)
    log.propagate = False
    try:
        with handling(ENVELOPE):
            try:
                raise ValueError("partner echoed Yıldırım 10000000146 token=abc123")
            except ValueError:
                log.exception("applying %s failed for %s", ENVELOPE["event_id"], "a.b@example.com")
    finally:
        log.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["msg"] == "applying ev-20260101-123456 failed for ***"
    assert "partner echoed *** *** token=***" in line["exc"]


# Celery's own lines, as its worker logs them: ids, timings and times are not personal.
CELERY_LINES = [
    "Task custsync.apply_update[6a1f2c14-1234-5678-9abc-def012345678] succeeded in"
    " 0.012345678s: None",
    "Task custsync.apply_update[0c1d2e3f-4455-6677-8899-aabbccddeeff] received",
    "Connected to redis://127.0.0.1:40123/3 at 2026-12-04 13:31:33,123",
]


@pytest.mark.parametrize("line", CELERY_LINES)
def test_log_filter_masks_values_not_shapes(line: str) -> None:
    def scrubbed(msg: str) -> str:
        record = logging.LogRecord("celery.app.trace", logging.INFO, __file__, 1, msg, None, None)
        with handling(ENVELOPE):
            ScrubFilter().filter(record)
        return record.getMessage()

    assert scrubbed(line) == line
    assert scrubbed(f"{line} for 10000000146 <a.b@example.com>") == f"{line} for *** <***>"


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_metrics_count_by_bounded_labels() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, REGISTRY)
    metrics.outcome(Result(Outcome.APPLIED, "ev-1", "minted", "C-1"))
    metrics.outcome(Result(Outcome.DEAD_LETTERED, "ev-2", "sales<force>", "C-2", reason="invalid"))
    metrics.partner_call("vendor", 503, 0.2)
    metrics.partner_call("vendor", None, 3.0)
    metrics.token_renewal("vendor")
    assert _sample(registry, "custsync_events_total", target="minted", outcome="applied") == 1
    assert _sample(registry, "custsync_events_total", target="vendor", outcome="applied") == 0
    assert _sample(registry, "custsync_dead_letters_total", target="other", reason="invalid") == 1
    name = "custsync_partner_request_duration_seconds_count"
    assert _sample(registry, name, target="vendor", status_class="5xx") == 1
    assert _sample(registry, name, target="vendor", status_class="error") == 1
    assert _sample(registry, "custsync_token_renewals_total", target="vendor") == 1
    text = generate_latest(registry).decode()
    assert "ev-" not in text and "C-1" not in text and "force" not in text


@pytest.mark.parametrize(
    ("status", "cls"), [(200, "2xx"), (204, "2xx"), (422, "4xx"), (503, "5xx"), (None, "error")]
)
def test_status_class(status: int | None, cls: str) -> None:
    assert status_class(status) == cls


@pytest.fixture
def state_redis(redis_server: EphemeralRedis) -> Iterator[Any]:
    client = redis.Redis.from_url(db_url(redis_server, COLLECTOR_DB), decode_responses=True)
    client.flushdb()
    yield client
    client.close()


def _collect(collector: RedisStateCollector) -> dict[tuple[str, tuple[Any, ...]], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_collector_reads_the_shared_state_in_one_scrape(state_redis: Any) -> None:
    keys = Keys()
    now = time.time()
    state_redis.zadd(keys.retry("vendor"), {"a": now, "b": now + 60})
    state_redis.hset(keys.breaker("vendor"), mapping={"failures": 7, "opened_until": now + 30})
    state_redis.set(keys.pause("vendor"), "{}", px=30_000)
    state_redis.hset(keys.breaker("minted"), mapping={"failures": 9, "opened_until": now - 1})
    state_redis.zadd(keys.dlq_by("reason", "invalid"), {"ev-1": now, "ev-2": now})
    state_redis.rpush(QUEUE, "m1", "m2", "m3")
    state_redis.rpush(partner_queue("vendor"), "m4")
    got = _collect(
        RedisStateCollector(state_redis, keys, {"vendor": 5, "minted": 5}, queue_in_redis=True)
    )
    assert got[("custsync_redis_up", ())] == 1
    assert got[("custsync_retry_set_size", (("target", "vendor"),))] == 2
    assert got[("custsync_breaker_state", (("state", "open"), ("target", "vendor")))] == 1
    assert got[("custsync_breaker_state", (("state", "half_open"), ("target", "minted")))] == 1
    assert got[("custsync_breaker_consecutive_failures", (("target", "vendor"),))] == 7
    assert got[("custsync_target_paused", (("target", "vendor"),))] == 1
    assert got[("custsync_target_paused", (("target", "minted"),))] == 0
    assert got[("custsync_dlq_entries", (("reason", "invalid"),))] == 2
    assert got[("custsync_queue_messages", (("queue", QUEUE),))] == 3
    assert got[("custsync_queue_messages", (("queue", partner_queue("vendor")),))] == 1
    assert got[("custsync_queue_messages", (("queue", partner_queue("minted")),))] == 0


def test_collector_reports_last_success_and_how_far_retries_and_the_dlq_are_behind(
    state_redis: Any,
) -> None:
    keys, now = Keys(), 1_800_000_000.0
    state_redis.set(keys.last_success("vendor"), now - 42.5)
    # Scored by due time: the most overdue was due 300 s ago; the other is not due yet.
    state_redis.zadd(keys.retry("vendor"), {"overdue": now - 300, "later": now + 60})
    state_redis.zadd(keys.retry("minted"), {"not-yet": now + 5})
    state_redis.zadd(keys.dlq_by("target", "vendor"), {"e1": now - 7200, "e2": now - 60})
    collector = RedisStateCollector(
        state_redis, keys, {"vendor": 5, "minted": 5}, queue_in_redis=False, clock=lambda: now
    )
    got = _collect(collector)
    assert got[("custsync_last_success_timestamp_seconds", (("target", "vendor"),))] == now - 42.5
    assert ("custsync_last_success_timestamp_seconds", (("target", "minted"),)) not in got
    assert got[("custsync_retry_oldest_age_seconds", (("target", "vendor"),))] == 300
    assert got[("custsync_retry_oldest_age_seconds", (("target", "minted"),))] == 0
    assert got[("custsync_dlq_oldest_age_seconds", (("target", "vendor"),))] == 7200
    assert got[("custsync_dlq_oldest_age_seconds", (("target", "minted"),))] == 0


def test_metrics_time_applied_events_and_start_dead_letter_series_at_zero() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, REGISTRY)
    metrics.outcome(Result(Outcome.APPLIED, "ev-1", "minted", "C-1"), age_s=3700.0)
    metrics.outcome(Result(Outcome.RETRY_SCHEDULED, "ev-2", "minted", "C-2"), age_s=10.0)
    name = "custsync_publish_to_applied_seconds"
    assert _sample(registry, f"{name}_count", target="minted") == 1  # applied only
    assert _sample(registry, f"{name}_sum", target="minted") == 3700.0
    assert _sample(registry, f"{name}_bucket", target="minted", le="3600.0") == 0
    assert _sample(registry, f"{name}_bucket", target="minted", le="21600.0") == 1
    assert _sample(registry, f"{name}_count", target="vendor") == 0
    # A first dead letter must be an increase() to the alert: its series exists at 0 before.
    assert _sample(registry, "custsync_dead_letters_total", target="vendor", reason="auth") == 0
    assert _sample(registry, "custsync_dead_letters_total", target="other", reason="invalid") == 0


def test_collector_answers_when_redis_does_not() -> None:
    dead = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    got = _collect(RedisStateCollector(dead, Keys(), {"vendor": 5}, queue_in_redis=True))
    assert got == {("custsync_redis_up", ()): 0}


class _Headers(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        _Headers.seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


# Sentry's setup, then a call as a partner call is made; prints the headers the partner saw.
_CALL = """
import json, sys, requests, sentry_sdk
from custsync.observability import setup
from custsync.runtime import Runtime
from custsync.settings import load_settings
dsn, url, ours = sys.argv[1:]
if ours == "1":
    setup(Runtime(load_settings({"SENTRY_DSN": dsn, "CUSTSYNC_REDIS_URL": "redis://x"})))
    setup(Runtime(load_settings({"SENTRY_DSN": dsn, "CUSTSYNC_REDIS_URL": "redis://x"})))
else:
    sentry_sdk.init(dsn=dsn)  # the SDK's defaults, as a control
with sentry_sdk.start_transaction(name="t"):
    requests.get(url, timeout=5)
"""


@pytest.mark.parametrize("ours", [True, False])
def test_partner_requests_carry_no_trace_headers(ours: bool) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Headers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Headers.seen.clear()
    try:
        with SentryCapture() as capture:
            url = f"http://127.0.0.1:{server.server_address[1]}/partner/customer/C-1"
            done = subprocess.run(
                [sys.executable, "-c", _CALL, capture.dsn, url, "1" if ours else "0"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr
    (headers,) = _Headers.seen
    traced = {"sentry-trace", "baggage"} & set(headers)
    assert traced == (set() if ours else {"sentry-trace", "baggage"})
