"""Personal data stays out of every surface, by allow-list: a test field names cannot fool.

Canaries are words no pattern could recognise as personal (no digits, no @), planted in a
known field, an unknown field, a string ``changes``, a string envelope, an unknown envelope
field, a customer id, a target that names no partner, a partner's 422 echo and an exception
message; published through ``custsync publish`` and through a plain ``send_task`` client
that knows nothing of us.
Then every output surface is searched: the worker log at DEBUG, the CLI's default views,
``dlq export`` without ``--show-payload``, the Sentry envelopes, the task events a Flower
would receive, and /metrics. The same canaries must show with ``--show-payload``, so the
search is known to look where they are.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from celery import Celery

from custsync.embedded.server import EphemeralRedis
from custsync.http.app import create_app
from custsync.runtime import Runtime
from custsync.sandbox import Sandbox, SandboxClient
from custsync.settings import load_settings
from custsync.state.keys import TASK_NAME
from tests.conftest import WorkerPool, custsync_env, db_url, run_cli, wait_for
from tests.events import MINTED_EXAMPLE, envelope, new_id, vendor_changes
from tests.operations_run import BuggyWorker, free_port
from tests.sentry_capture import SentryCapture

DB = 22
CANARIES = {
    "known field": "Quorvathine",
    "partner echo": "Prynnecottle",
    "unknown field": "Bellwraxon",
    "unknown envelope field": "Gorsemantle",
    "string changes": "Tindrelossquay",
    "string envelope": "Vashmoorling",
    "customer id": "Ravenmoorcust",
    "unknown target": "Wendlebrickmoor",
    "exception echo": "Harrowquintel",
    "vendor name": "Oskellandra",
    "over http": "Lunderquistel",
    "refused over http": "Caddowmarsh",
}


@dataclass
class Played:
    env: dict[str, str]
    worker: BuggyWorker
    capture: SentryCapture
    metrics_url: str
    task_events: list[dict[str, Any]]
    publish_output: str
    http_answers: str
    entry_ids: list[str] = field(default_factory=list)


def _send_task_client(broker: str) -> Celery:
    """Any Celery client: no custsync code, its own defaults."""
    client = Celery("someone-else", broker=broker, set_as_current=False)
    client.conf.task_default_queue = "custsync"
    return client


class TaskEvents:
    """Every task event on the broker, received as Flower receives them."""

    def __init__(self, broker: str) -> None:
        self.app = Celery("listener", broker=broker, set_as_current=False)
        self.events: list[dict[str, Any]] = []
        self._ready = threading.Event()
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.app.connection_for_read() as conn:
            self._receiver = self.app.events.Receiver(
                conn, handlers={"*": self.events.append}, app=self.app
            )
            self._ready.set()
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def __enter__(self) -> TaskEvents:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(5)


def _publish_file(tmp: Path, cid: str, echo_cid: str, vendor_code: str) -> Path:
    known = {**MINTED_EXAMPLE, "external_id": cid, "firstname": CANARIES["known field"]}
    echoed = {
        **MINTED_EXAMPLE,
        "external_id": echo_cid,
        "lastname": CANARIES["partner echo"],
    }
    vendor = vendor_changes(vendor_code, firstName=CANARIES["vendor name"])
    lines = [
        envelope("minted", cid, known),
        envelope("minted", echo_cid, echoed),
        envelope("vendor", vendor_code, vendor),
        # Invalid before it leaves: publish names the field, never the value.
        envelope("minted", cid, {**known, "gender": CANARIES["known field"]}),
    ]
    path = tmp / "events.ndjson"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


class DebugWorker(BuggyWorker):
    """The buggy worker (customers BUG-* hit an exception echoing the body) at -l DEBUG."""

    def start(self) -> DebugWorker:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.buggy_worker", "worker", "-l", "DEBUG"],
            env=self.env,
            stdout=log,
            stderr=log,
        )
        return self


@pytest.fixture(scope="module")
def played(
    redis_server: EphemeralRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Played]:
    tmp = tmp_path_factory.mktemp("privacy")
    metrics_port = free_port()
    with (
        SentryCapture() as capture,
        Sandbox(
            port=0,
            minted_credentials=("custsync", "pw-minted"),
            vendor_credentials=("custsync", "pw-vendor"),
        ) as box,
        TaskEvents(db_url(redis_server, DB)) as task_events,
    ):
        redis.Redis.from_url(db_url(redis_server, DB)).flushdb()
        env = custsync_env(
            redis_server,
            box,
            DB,
            SENTRY_DSN=capture.dsn,
            CUSTSYNC_METRICS_PORT=str(metrics_port),
            CUSTSYNC_LOG_LEVEL="DEBUG",
            CUSTSYNC_MINTED_PASSWORD="pw-minted",
            CUSTSYNC_VENDOR_PASSWORD="pw-vendor",
            CUSTSYNC_MINTED_MAX_ATTEMPTS="2",
        )
        pool = WorkerPool(env, tmp, 0)
        worker = DebugWorker(env, tmp / "worker.log")
        pool.workers = [worker]
        pool.start()
        try:
            yield _play(env, worker, capture, metrics_port, task_events, box, tmp)
        finally:
            pool.stop()


def _play(
    env: dict[str, str],
    worker: BuggyWorker,
    capture: SentryCapture,
    metrics_port: int,
    task_events: TaskEvents,
    box: Sandbox,
    tmp: Path,
) -> Played:
    client = SandboxClient(box.url)
    cid, echo_cid, code = new_id("MTD"), new_id("MTD"), new_id("V")
    client.put_customer("minted", cid, {**MINTED_EXAMPLE, "external_id": cid})
    client.put_customer("minted", echo_cid, {**MINTED_EXAMPLE, "external_id": echo_cid})
    client.put_customer("vendor", code, vendor_changes(code))
    message = f"lastname {CANARIES['partner echo']} is not allowed"
    client.script("minted", echo_cid, [{"status": 422, "message": message}])
    published = run_cli(env, "publish", str(_publish_file(tmp, cid, echo_cid, code)))

    other = _send_task_client(env["CUSTSYNC_REDIS_URL"])
    plain = [
        envelope("minted", cid, {**MINTED_EXAMPLE, "nickname": CANARIES["unknown field"]}),
        envelope("minted", cid, MINTED_EXAMPLE, note=CANARIES["unknown envelope field"]),
        {**envelope("minted", cid, {}), "changes": f"{CANARIES['string changes']} tckn"},
        envelope("minted", CANARIES["customer id"], MINTED_EXAMPLE),
        envelope(CANARIES["unknown target"], cid, MINTED_EXAMPLE),
        envelope(
            "minted",
            f"BUG-{uuid.uuid4().hex[:6]}",
            {**MINTED_EXAMPLE, "firstname": CANARIES["exception echo"]},
        ),
    ]
    for body in plain:
        other.send_task(TASK_NAME, args=[body])
    other.send_task(TASK_NAME, args=[f"{CANARIES['string envelope']} wants an update"])
    http_answers = _over_http(env, cid)

    def dead_lettered() -> list[str] | None:
        done = run_cli(env, "dlq", "list", "--json", "--limit", "100")
        ids = [json.loads(line)["entry_id"] for line in done.stdout.splitlines()]
        return ids if len(ids) >= len(plain) + 1 else None  # the echo and each plain event

    entry_ids = wait_for(dead_lettered, timeout_s=60, interval_s=0.5)
    wait_for(lambda: len(capture.events()) >= len(entry_ids), timeout_s=30)
    return Played(
        env,
        worker,
        capture,
        f"http://127.0.0.1:{metrics_port}/metrics",
        task_events.events,
        published.stdout + published.stderr,
        http_answers,
        entry_ids,
    )


def _over_http(env: dict[str, str], cid: str) -> str:
    """Through the HTTP ingest app: one event applied, one batch refused with a 422."""
    key = "privacy-test-key-0123456789"
    sources = json.dumps({"privacy": {"api_keys": [key]}})
    app = create_app(Runtime(load_settings({**env, "CUSTSYNC_INGEST_SOURCES": sources})))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    good = envelope("minted", cid, {**MINTED_EXAMPLE, "middlename": CANARIES["over http"]})
    bad = envelope("minted", cid, {**MINTED_EXAMPLE, "alias": CANARIES["refused over http"]})
    accepted = client.post("/v1/events", json=[good], headers=headers)
    refused = client.post("/v1/events", json=[good, bad], headers=headers)
    assert (accepted.status_code, refused.status_code) == (202, 422)
    return accepted.get_data(as_text=True) + refused.get_data(as_text=True)


def _leaks(text: str) -> list[str]:
    return [where for where, canary in CANARIES.items() if canary in text]


def _cli(played: Played, *args: str) -> str:
    done = run_cli(played.env, *args)
    assert "Traceback" not in done.stderr
    return done.stdout + done.stderr


def test_every_canary_reached_the_dlq_or_the_partner(played: Played) -> None:
    shown = "".join(
        _cli(played, "dlq", "show", entry, "--json", "--show-payload") for entry in played.entry_ids
    )
    # Applied (so not in the DLQ), or refused at the door (so nowhere):
    expected = set(CANARIES) - {"known field", "vendor name", "over http", "refused over http"}
    assert set(_leaks(shown)) == expected


def test_the_worker_log_at_debug_holds_none(played: Played) -> None:
    text = played.worker.log_text()
    assert '"level":"debug","logger":"celery.' in text  # Celery's own lines at debug are in
    assert _leaks(text) == []


def test_the_cli_default_views_hold_none(played: Played) -> None:
    outputs = [
        played.publish_output,
        played.http_answers,
        _cli(played, "status"),
        _cli(played, "status", "--json"),
        _cli(played, "dlq", "list"),
        _cli(played, "dlq", "list", "--json"),
        _cli(played, "dlq", "stats"),
        _cli(played, "dlq", "replay", "--all", "--dry-run"),
    ]
    for entry in played.entry_ids:
        outputs += [
            _cli(played, "dlq", "show", entry),
            _cli(played, "dlq", "show", entry, "--json"),
        ]
    assert "line 4: changes.gender" in played.publish_output
    assert _leaks("\n".join(outputs)) == []


def test_dlq_export_masks_unless_asked(played: Played) -> None:
    masked = _cli(played, "dlq", "export") + _cli(played, "dlq", "export", "--entries")
    assert masked.count("\n") >= len(played.entry_ids)
    assert _leaks(masked) == []
    full = _cli(played, "dlq", "export", "--show-payload")
    assert CANARIES["customer id"] in full


def test_sentry_task_events_and_metrics_hold_none(played: Played) -> None:
    raw = played.capture.raw().decode("utf-8", errors="replace")
    assert "custsync-dead-letter" in raw
    assert _leaks(raw) == []
    events = json.dumps(played.task_events)
    assert "task-received" in events
    assert _leaks(events) == []
    metrics = requests.get(played.metrics_url, timeout=5).text
    assert "custsync_events_total" in metrics
    assert _leaks(metrics) == []
