"""Real parts for every test: a Redis server this session starts on a free loopback port,
the partner sandbox over real HTTP, and a real Celery worker in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from custsync.embedded.server import EphemeralRedis
from custsync.pipeline import Pipeline
from custsync.runtime import Runtime, set_runtime
from custsync.sandbox import Sandbox, SandboxClient
from custsync.settings import load_settings

MINTED_USER, MINTED_PASSWORD = "custsync", "minted-sandbox-secret"
VENDOR_USER, VENDOR_PASSWORD = "custsync", "vendor-sandbox-secret"
WORKER_DB = 0  # the worker's queue and state
DIRECT_DB = 1  # pipeline-level tests that run without the worker


def wait_for(
    predicate: Callable[[], Any], timeout_s: float = 30.0, interval_s: float = 0.05
) -> Any:
    """Poll until ``predicate`` returns something truthy; fail with a clear message if never."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s}s: {predicate}")
        time.sleep(interval_s)


def run_cli(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``custsync ARGS`` in a fresh interpreter, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "custsync.cli", *args],
        env={**env, "PATH": "/usr/bin:/bin"},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EphemeralRedis]:
    server = EphemeralRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(
        port=0,
        minted_credentials=(MINTED_USER, MINTED_PASSWORD),
        vendor_credentials=(VENDOR_USER, VENDOR_PASSWORD),
    ) as box:
        yield box


@pytest.fixture(scope="session")
def sandbox_client(sandbox: Sandbox) -> SandboxClient:
    return SandboxClient(sandbox.url)


def db_url(server: EphemeralRedis, db: int) -> str:
    return server.url.rsplit("/", 1)[0] + f"/{db}"


def custsync_env(server: EphemeralRedis, box: Sandbox, db: int, **overrides: str) -> dict[str, str]:
    """The environment a worker or CLI needs: this Redis, this sandbox, quick retries."""
    env = {
        "CUSTSYNC_REDIS_URL": db_url(server, db),
        "CUSTSYNC_MINTED_BASE_URL": box.url,
        "CUSTSYNC_MINTED_USERNAME": MINTED_USER,
        "CUSTSYNC_MINTED_PASSWORD": MINTED_PASSWORD,
        "CUSTSYNC_VENDOR_BASE_URL": box.url,
        "CUSTSYNC_VENDOR_USERNAME": VENDOR_USER,
        "CUSTSYNC_VENDOR_PASSWORD": VENDOR_PASSWORD,
        "CUSTSYNC_POLL_INTERVAL_S": "0.05",
        "CUSTSYNC_RETRY_AFTER_MAX_S": "5",
        "CUSTSYNC_CONCURRENCY": "4",
        "CUSTSYNC_LOG_FORMAT": "json",
    }
    for target in ("MINTED", "VENDOR"):
        env[f"CUSTSYNC_{target}_BACKOFF_BASE_S"] = "0.05"
        env[f"CUSTSYNC_{target}_BACKOFF_CAP_S"] = "0.2"
        env[f"CUSTSYNC_{target}_MAX_ATTEMPTS"] = "4"
        env[f"CUSTSYNC_{target}_READ_TIMEOUT_S"] = "1"
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def worker_env(redis_server: EphemeralRedis, sandbox: Sandbox) -> dict[str, str]:
    return custsync_env(redis_server, sandbox, WORKER_DB)


@pytest.fixture(scope="session")
def runtime(worker_env: dict[str, str]) -> Iterator[Runtime]:
    """This process talks to the worker's Redis with the worker's settings (to publish, inspect)."""
    rt = Runtime(load_settings(worker_env))
    set_runtime(rt)
    yield rt
    set_runtime(None)


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.args = args  # more ``custsync worker`` options, e.g. --targets
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "custsync.cli",
                "worker",
                "-n",
                f"test-{uuid.uuid4().hex[:6]}@%h",
                *self.args,
            ],
            env=self.env,
            stdout=log,
            stderr=log,
        )
        return self

    def outcomes(self, event_id: str) -> list[dict[str, Any]]:
        """The outcome log lines the worker wrote for one event."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if event_id in line and line.startswith("{"):
                try:
                    data = json.loads(line)
                except ValueError:
                    continue
                if data.get("event_id") == event_id and "outcome" in data:
                    found.append(data)
        return found

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="session")
def worker(
    worker_env: dict[str, str], runtime: Runtime, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(worker_env, tmp_path_factory.mktemp("worker") / "worker.log").start()
    from custsync.worker import app

    def ready() -> bool:
        assert proc.proc is not None
        if proc.proc.poll() is not None:
            pytest.fail(f"worker exited early:\n{proc.log_text()[-3000:]}")
        return bool(app.control.ping(timeout=0.5))

    wait_for(ready, timeout_s=60, interval_s=0.2)
    yield proc
    proc.stop()


@pytest.fixture
def direct_env(redis_server: EphemeralRedis, sandbox: Sandbox) -> dict[str, str]:
    """Settings for pipeline-level tests: their own database, so the worker never sees it."""
    client = redis.Redis.from_url(db_url(redis_server, DIRECT_DB))
    client.flushdb()
    return custsync_env(redis_server, sandbox, DIRECT_DB)


def pipeline_for(env: dict[str, str], **overrides: str) -> Pipeline:
    """A pipeline run in the test process itself, on ``direct_env`` plus overrides."""
    return Pipeline(Runtime(load_settings({**env, **overrides})))


class WorkerPool:
    """Several worker subprocesses on one database, restartable (for crash tests)."""

    def __init__(self, env: dict[str, str], log_dir: Path, size: int) -> None:
        self.env = env
        self.log_dir = log_dir
        self.workers = [WorkerProcess(env, log_dir / f"worker-{i}.log") for i in range(size)]
        self.runtime = Runtime(load_settings(env))
        from custsync.worker import producer_app

        self.app = producer_app(self.runtime)

    def start(self) -> WorkerPool:
        for w in self.workers:
            w.start()
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        def ready() -> bool:
            replies = self.app.control.ping(timeout=0.5)
            return len(replies) >= sum(1 for w in self.workers if w.proc and w.proc.poll() is None)

        wait_for(ready, timeout_s=60, interval_s=0.2)

    def kill(self, index: int) -> None:
        proc = self.workers[index].proc
        assert proc is not None
        proc.kill()
        proc.wait(10)

    def restart(self, index: int) -> None:
        self.workers[index].start()

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    def log_text(self) -> str:
        return "\n".join(w.log_text() for w in self.workers if w.log_path.exists())

    def counters(self, target: str) -> dict[str, int]:
        raw = self.runtime.redis.hgetall(self.runtime.keys.counters(target))
        return {k: int(v) for k, v in raw.items()}


@pytest.fixture
def pool_factory(
    redis_server: EphemeralRedis, sandbox: Sandbox, tmp_path: Path
) -> Iterator[Callable[..., WorkerPool]]:
    """Start workers on their own database, with extra settings; stopped at teardown."""
    pools: list[WorkerPool] = []

    def make(db: int, size: int = 2, **overrides: str) -> WorkerPool:
        redis.Redis.from_url(db_url(redis_server, db)).flushdb()
        env = custsync_env(redis_server, sandbox, db, **overrides)
        pool = WorkerPool(env, tmp_path, size)
        pools.append(pool)
        return pool.start()

    yield make
    for pool in pools:
        pool.stop()


def apply_fresh_events(
    pool: WorkerPool, worker: WorkerProcess, client: SandboxClient, lastname: str, count: int
) -> None:
    """``count`` new Minted customers' updates, published, each waited for until applied."""
    from custsync.producer import enqueue
    from tests.events import MINTED_EXAMPLE, envelope, new_id

    customers = [new_id("AF") for _ in range(count)]
    client.put_customers("minted", {c: {**MINTED_EXAMPLE, "external_id": c} for c in customers})
    events = [envelope("minted", c, {**MINTED_EXAMPLE, "lastname": lastname}) for c in customers]
    enqueue([(e, None) for e in events], pool.app)
    for event in events:

        def applied(event_id: str = event["event_id"]) -> bool:
            return any(o["outcome"] == "applied" for o in worker.outcomes(event_id))

        wait_for(applied, timeout_s=90, interval_s=0.2)


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[EphemeralRedis]:
    """A Redis of the test's own (append-only), which the test may stop and restart."""
    server = EphemeralRedis(tmp_path / "redis", appendonly=True).start()
    yield server
    server.stop()
