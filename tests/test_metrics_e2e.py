"""A real worker's /metrics after applied events and a dead letter: the operator series the
alerts and the dashboard use (build info, last success, publish→applied, retry and DLQ ages)
are there with values that agree with what happened, and promtool accepts the page."""

from __future__ import annotations

import platform
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from custsync.embedded.server import EphemeralRedis
from custsync.producer import enqueue
from custsync.sandbox import Sandbox, SandboxClient
from custsync.version import VERSION
from tests.conftest import WorkerPool, custsync_env, db_url, wait_for
from tests.events import MINTED_EXAMPLE, envelope, minted_customer
from tests.operations_run import free_port
from tests.tools import debian_tool

DB = 29
HOUR_S = 3600.0


@dataclass(frozen=True)
class Scrape:
    text: str
    started: float  # epoch seconds before the first event was published
    scraped: float  # epoch seconds after the page was read

    def value(self, name: str, **labels: str) -> float | None:
        for family in text_string_to_metric_families(self.text):
            for s in family.samples:
                if s.name == name and s.labels == labels:
                    return float(s.value)
        return None


def _settled(pool: WorkerPool, event_id: str) -> bool:
    outcomes = {line["outcome"] for w in pool.workers for line in w.outcomes(event_id)}
    return bool(outcomes & {"applied", "dead_lettered"})


def _page(url: str) -> str | None:
    try:
        return requests.get(url, timeout=2).text
    except requests.ConnectionError:
        return None


@pytest.fixture(scope="module")
def scrape(
    redis_server: EphemeralRedis, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scrape]:
    redis.Redis.from_url(db_url(redis_server, DB)).flushdb()
    port = free_port()
    env = custsync_env(redis_server, sandbox, DB, CUSTSYNC_METRICS_PORT=str(port))
    pool = WorkerPool(env, tmp_path_factory.mktemp("metrics-worker"), 1)
    client = SandboxClient(sandbox.url)
    try:
        pool.start()
        started = time.time()
        events: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        for i in range(3):
            cid = minted_customer(client)
            changes = {**MINTED_EXAMPLE, "external_id": cid, "lastname": f"Metrics{i}"}
            events.append((envelope("minted", cid, changes), None))
        # One taken an hour ago (a retry's delivery record): its latency counts from then.
        events[2] = (events[2][0], {"attempts": 1, "first_seen_at": started - HOUR_S})
        invalid = envelope("minted", minted_customer(client), {"gender": "not-a-gender"})
        events.append((invalid, None))
        enqueue(events, pool.app)
        for env_, _ in events:
            wait_for(lambda e=env_["event_id"]: _settled(pool, e), timeout_s=45)
        text = wait_for(lambda: _page(f"http://127.0.0.1:{port}/metrics"), timeout_s=20)
        yield Scrape(text, started, time.time())
    finally:
        pool.stop()


def test_build_info_names_the_versions_the_worker_runs(scrape: Scrape) -> None:
    labels = {
        "version": VERSION,
        "python": platform.python_version(),
        "celery": metadata.version("celery"),
        "kombu": metadata.version("kombu"),
    }
    assert scrape.value("custsync_build_info", **labels) == 1


def test_publish_to_applied_counts_from_when_custsync_first_took_the_event(
    scrape: Scrape,
) -> None:
    name = "custsync_publish_to_applied_seconds"
    assert scrape.value(f"{name}_count", target="minted") == 3  # applied only, not the invalid
    # Two were taken fresh; the third an hour before: it lands above the 3600 s bucket.
    assert scrape.value(f"{name}_bucket", target="minted", le="3600.0") == 2
    assert scrape.value(f"{name}_bucket", target="minted", le="21600.0") == 3
    total = scrape.value(f"{name}_sum", target="minted")
    assert total is not None
    assert HOUR_S <= total <= HOUR_S + 3 * (scrape.scraped - scrape.started)
    assert scrape.value(f"{name}_count", target="vendor") == 0  # exists before any event


def test_last_success_is_the_time_of_the_last_applied_event(scrape: Scrape) -> None:
    last = scrape.value("custsync_last_success_timestamp_seconds", target="minted")
    assert last is not None and scrape.started <= last <= scrape.scraped
    assert scrape.value("custsync_last_success_timestamp_seconds", target="vendor") is None


def test_dead_letter_is_counted_and_aged_and_nothing_waits_for_a_retry(scrape: Scrape) -> None:
    assert scrape.value("custsync_dead_letters_total", target="minted", reason="invalid") == 1
    assert scrape.value("custsync_dlq_entries", reason="invalid") == 1
    age = scrape.value("custsync_dlq_oldest_age_seconds", target="minted")
    assert age is not None and 0 <= age <= scrape.scraped - scrape.started
    assert scrape.value("custsync_dlq_oldest_age_seconds", target="vendor") == 0
    for target in ("minted", "vendor"):
        assert scrape.value("custsync_retry_oldest_age_seconds", target=target) == 0
        assert scrape.value("custsync_retry_set_size", target=target) == 0


def test_promtool_accepts_the_metrics_page(scrape: Scrape) -> None:
    checked = subprocess.run(
        [debian_tool("promtool", "prometheus"), "check", "metrics"],
        input=scrape.text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
