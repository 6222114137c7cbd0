"""One real run for the operations tests: a worker with Sentry (a local capture endpoint) and
metrics on, Flower watching, its own sandbox whose passwords are canaries, and events that
plant canary personal data where it could leak: validation errors, partner 422s echoing it,
an unexpected exception echoing the request, a partner outage."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from custsync.embedded.server import EphemeralRedis
from custsync.producer import enqueue
from custsync.sandbox import Sandbox, SandboxClient
from tests.conftest import WorkerPool, WorkerProcess, custsync_env, db_url, wait_for
from tests.events import MINTED_EXAMPLE, envelope, new_id, vendor_changes
from tests.sentry_capture import SentryCapture

DB = 9
TCKN, TAX, PHONE = "98123456702", "7319462850", "+905559871234"
EMAIL, NAME = "zeynep.canary@leak-check.example", "Zeynepcanary"
PASSWORD = "Canary-Pass-6fq2"
CANARIES = {"national id": TCKN, "tax number": TAX, "phone": PHONE, "email": EMAIL}
CANARIES |= {"name": NAME, "password": PASSWORD}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BuggyWorker(WorkerProcess):
    """A worker run through tests.buggy_worker (customers BUG-* hit an unexpected error)."""

    def start(self) -> BuggyWorker:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.buggy_worker", "worker", "-n", f"ops-{new_id()}@%h"],
            env=self.env,
            stdout=log,
            stderr=log,
        )
        return self


@dataclass
class Run:
    pool: WorkerPool
    worker: WorkerProcess
    capture: SentryCapture
    metrics_url: str
    flower_url: str
    client: SandboxClient
    dead: dict[str, tuple[str, str]] = field(default_factory=dict)  # event id -> target, reason
    applied: list[str] = field(default_factory=list)
    buggy: list[str] = field(default_factory=list)
    token: str = ""

    def canaries(self) -> dict[str, str]:
        return {**CANARIES, "vendor token": self.token}

    def terminal(self, event_id: str) -> dict[str, Any] | None:
        for line in self.worker.outcomes(event_id):
            if line["outcome"] in ("applied", "dead_lettered"):
                return line
        return None

    def settle(self, event_ids: list[str]) -> None:
        wait_for(lambda: all(self.terminal(e) for e in event_ids), timeout_s=45)


def _personal(**overrides: Any) -> dict[str, Any]:
    planted = {"identity_number": TCKN, "email": EMAIL, "phone": PHONE, "firstname": NAME}
    return {**MINTED_EXAMPLE, **planted, **overrides}


def _corporate(code: str, **overrides: Any) -> dict[str, Any]:
    base = vendor_changes(code, isCompany=True, companyName=f"{NAME} AS", taxNumber=TAX)
    for key in ("firstName", "lastName", "tckn"):
        base.pop(key)
    return base | {"email": EMAIL, "phone": PHONE} | overrides


def _start_flower(broker: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"}
    log = log_path.open("ab")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            f"--broker={broker}",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
        ],
        env=env,
        stdout=log,
        stderr=log,
    )


def _flower_up(url: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        pytest.fail("flower exited early")
    try:
        return requests.get(f"{url}/healthcheck", timeout=1).text == "OK"
    except requests.ConnectionError:
        return False


def flower_tasks(url: str) -> dict[str, Any]:
    result: dict[str, Any] = requests.get(f"{url}/api/tasks", timeout=5).json()
    return result


@contextlib.contextmanager
def operations_run(redis_server: EphemeralRedis, logs: Path) -> Iterator[Run]:
    """Start everything, play the events, and hand over the settled run."""
    metrics_port, flower_port = free_port(), free_port()
    with (
        SentryCapture() as capture,
        Sandbox(
            minted_credentials=("custsync", PASSWORD), vendor_credentials=("custsync", PASSWORD)
        ) as box,
    ):
        redis.Redis.from_url(db_url(redis_server, DB)).flushdb()
        env = custsync_env(
            redis_server,
            box,
            DB,
            SENTRY_DSN=capture.dsn,
            SENTRY_ENVIRONMENT="test",
            CUSTSYNC_METRICS_PORT=str(metrics_port),
            CUSTSYNC_MINTED_PASSWORD=PASSWORD,
            CUSTSYNC_VENDOR_PASSWORD=PASSWORD,
            CUSTSYNC_VENDOR_BREAKER_FAILURES="3",
            CUSTSYNC_VENDOR_BREAKER_COOLDOWN_S="0.3",
            CUSTSYNC_VENDOR_BREAKER_COOLDOWN_MAX_S="1",
            NO_PROXY="127.0.0.1,localhost",
        )
        pool = WorkerPool(env, logs, 0)
        worker = BuggyWorker(env, logs / "worker.log")
        pool.workers = [worker]
        flower_url = f"http://127.0.0.1:{flower_port}"
        flower = _start_flower(db_url(redis_server, DB), flower_port, logs / "flower.log")
        try:
            pool.start()
            wait_for(lambda: _flower_up(flower_url, flower), timeout_s=30, interval_s=0.2)
            r = Run(
                pool,
                worker,
                capture,
                f"http://127.0.0.1:{metrics_port}/metrics",
                flower_url,
                SandboxClient(box.url),
            )
            _play(r)
            yield r
        finally:
            pool.stop()
            flower.terminate()
            flower.wait(10)


def _play(r: Run) -> None:
    client, app = r.client, r.pool.app
    rt = r.pool.runtime

    # Warm up until Flower is listening to task events (they are not stored for latecomers).
    def flower_listening() -> bool:
        cid = new_id("MTD")
        client.put_customer("minted", cid, {**MINTED_EXAMPLE, "external_id": cid})
        env = envelope("minted", cid, {**MINTED_EXAMPLE, "lastname": "Warm"})
        enqueue([(env, None)], app)
        r.applied.append(env["event_id"])
        r.settle([env["event_id"]])
        tasks = flower_tasks(r.flower_url).values()
        return any(env["event_id"] in (t.get("args") or "") for t in tasks)

    wait_for(flower_listening, timeout_s=30, interval_s=0.5)
    code = new_id("V")
    client.put_customer("vendor", code, vendor_changes(code))
    warm = envelope("vendor", code, vendor_changes(code, title="warm"))
    enqueue([(warm, None)], app)
    r.applied.append(warm["event_id"])
    r.settle([warm["event_id"]])
    r.token = json.loads(rt.redis.get(rt.keys.token("vendor")))["token"]

    batch: list[dict[str, Any]] = []

    def dead(env: dict[str, Any], target: str, reason: str) -> None:
        batch.append(env)
        r.dead[env["event_id"]] = (target, reason)

    # Validation errors: no call, DLQ invalid.
    dead(envelope("minted", new_id("C"), _personal(gender="X"), note=EMAIL), "minted", "invalid")
    corp = new_id("V")
    dead(envelope("vendor", corp, _corporate(corp, erpCode=None)), "vendor", "invalid")
    dead(envelope("salesforce", new_id("C"), _personal()), "other", "invalid")
    # Partner 422s echoing the values back.
    cid = new_id("MTD")
    client.put_customer("minted", cid, {**MINTED_EXAMPLE, "external_id": cid})
    echo = f"identity_number {TCKN} of {NAME} <{EMAIL}> phone {PHONE} is blacklisted"
    client.script("minted", cid, [{"status": 422, "message": echo}])
    dead(envelope("minted", cid, _personal(external_id=cid)), "minted", "rejected")
    corp = new_id("V")
    client.put_customer("vendor", corp, _corporate(corp))
    client.script("vendor", corp, [{"status": 422, "message": f"taxNumber {TAX} unknown"}])
    dead(envelope("vendor", corp, _corporate(corp)), "vendor", "rejected")
    # An unexpected exception echoing body, bearer token and password: retried, then exhausted.
    for target, changes in (("minted", _personal()), ("vendor", _corporate("BUG-x"))):
        env = envelope(target, f"BUG-{uuid.uuid4().hex[:8]}", changes)
        if target == "vendor":
            env["changes"]["code"] = env["customer_id"]
        dead(env, target, "exhausted")
        r.buggy.append(env["event_id"])
    enqueue([(env, None) for env in batch], app)
    r.settle(list(r.dead))

    # A vendor outage: the breaker opens (and re-opens on failed probes), then all apply.
    codes = [new_id("V") for _ in range(6)]
    client.put_customers("vendor", {c: vendor_changes(c) for c in codes})
    client.set_faults("vendor", outage_s=1.5)
    outage = [envelope("vendor", c, vendor_changes(c, title="after-outage")) for c in codes]
    enqueue([(env, None) for env in outage], app)
    r.applied += [env["event_id"] for env in outage]
    r.settle(r.applied)
