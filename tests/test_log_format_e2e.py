"""In JSON mode every line a worker writes to stderr is one JSON object, through a broker
outage: Celery's and kombu's records (the lost connection, the retries, the reconnect, task
lines), Python warnings, tracebacks inside ``exc``; and no banner on stdout. Its own Redis,
stopped and started again on the same port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from custsync.embedded.server import EphemeralRedis
from custsync.producer import enqueue
from custsync.sandbox import Sandbox, SandboxClient
from custsync.state.keys import TASK_NAME
from tests.conftest import (
    MINTED_PASSWORD,
    WorkerPool,
    WorkerProcess,
    apply_fresh_events,
    custsync_env,
    wait_for,
)
from tests.events import MINTED_EXAMPLE, envelope, new_id

EVENTS = 3  # applied before the outage, and as many after it


class SplitLogWorker(WorkerProcess):
    """The buggy worker (customers BUG-* raise an unexpected error) at ``-l INFO``, so Celery
    logs its task and connection lines too; stderr in ``log_path``, stdout in ``out_path``."""

    def __init__(self, env: dict[str, str], log_path: Path, out_path: Path) -> None:
        super().__init__(env, log_path)
        self.out_path = out_path
        self.name = f"logs-{new_id()}@%h"

    def start(self) -> SplitLogWorker:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.buggy_worker", "worker", "-l", "INFO", "-n", self.name],
            env=self.env,
            stdout=self.out_path.open("ab"),
            stderr=self.log_path.open("ab"),
        )
        return self


def _records(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"a line of the worker's stderr is not JSON: {line!r}")
        if not isinstance(record, dict):
            pytest.fail(f"a line of the worker's stderr is not a JSON object: {line!r}")
        records.append(record)
    return records


def _first(records: list[dict[str, Any]], logger: str, *words: str) -> int:
    """The index of the first record from ``logger`` (or below it) holding every word."""
    for i, r in enumerate(records):
        if r["logger"].startswith(logger) and all(w in r["msg"] for w in words):
            return i
    pytest.fail(f"no record from {logger} with {words} among {len(records)}")


@pytest.mark.timeout(240)
def test_every_stderr_line_of_a_worker_is_json_through_a_broker_outage(
    restartable: EphemeralRedis, sandbox: Sandbox, sandbox_client: SandboxClient, tmp_path: Path
) -> None:
    env = custsync_env(restartable, sandbox, 0)
    assert env["CUSTSYNC_LOG_FORMAT"] == "json"
    pool = WorkerPool(env, tmp_path, 0)
    worker = SplitLogWorker(env, tmp_path / "stderr.log", tmp_path / "stdout.log")
    pool.workers = [worker]
    pool.start()
    try:
        apply_fresh_events(pool, worker, sandbox_client, "Beforeoutage", EVENTS)
        bug = envelope("minted", f"BUG-{uuid.uuid4().hex[:6]}", MINTED_EXAMPLE)
        enqueue([(bug, None)], pool.app)
        wait_for(lambda: "unexpected error applying" in worker.log_text(), timeout_s=60)
        restartable.restart(down_s=5.0)
        reconnected = lambda: worker.log_text().count("Connected to") >= 2  # noqa: E731
        wait_for(reconnected, timeout_s=60, interval_s=0.2)
        apply_fresh_events(pool, worker, sandbox_client, "Afteroutage", EVENTS)
    finally:
        pool.stop()  # SIGTERM: Celery's "Warm shutdown" notice is a record too

    records = _records(worker.log_text())
    stdout = worker.out_path.read_text()
    assert stdout.strip() == "", stdout[:2000]  # no banner, no notices: records instead
    _first(records, "celery.apps.worker", "Warm shutdown")
    _first(records, "custsync.worker", "starting: Celery")

    lost = _first(records, "celery.worker.consumer", "Connection to broker lost")
    retrying = _first(records, "celery.worker.consumer", "Cannot connect to", "Trying again")
    connects = [
        i
        for i, r in enumerate(records)
        if r["logger"].startswith("celery.") and r["msg"].startswith("Connected to")
    ]
    assert connects[0] < lost < retrying < connects[-1], (connects, lost, retrying)
    assert records[lost]["level"] == "warning" and records[retrying]["level"] == "error"
    _first(records, "custsync.poller", "Redis reachable again")
    _first(records, "celery.", f"Task {TASK_NAME}[", "received")
    _first(records, "celery.", f"Task {TASK_NAME}[", "succeeded in")
    if os.geteuid() == 0:  # Celery warns through warnings.warn before its logging is set up
        _first(records, "py.warnings", "SecurityWarning")

    (crash, *_) = [r for r in records if "unexpected error applying" in r["msg"]]
    assert crash["level"] == "error" and crash["logger"].startswith("custsync.")
    assert crash["exc"].startswith("Traceback (most recent call last)")
    assert "RuntimeError: client bug sending" in crash["exc"]
    assert "'password': '***'" in crash["exc"]  # still scrubbed
    assert MINTED_PASSWORD not in worker.log_text()
