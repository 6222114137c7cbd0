"""A Redis that accepts connections and never answers: every client gives up after
CUSTSYNC_REDIS_TIMEOUT_S, the CLI says in one line what failed and what to check, and a
worker still stops on SIGTERM or SIGINT within its grace period."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from custsync import exitcodes
from custsync.embedded.server import EphemeralRedis
from custsync.producer import enqueue
from custsync.sandbox import Sandbox, SandboxClient
from custsync.shutdown import deadline_s
from tests.conftest import WorkerPool, WorkerProcess, custsync_env, run_cli, wait_for
from tests.events import MINTED_EXAMPLE, envelope, new_id
from tests.hung_server import HungServer

TIMEOUT_S = 1  # CUSTSYNC_REDIS_TIMEOUT_S in these tests
GRACE_S = deadline_s(30, TIMEOUT_S)  # the worker's soft shutdown (30 s), a Redis wait, a margin
ACL_DB = 21


@pytest.fixture
def hung() -> Iterator[HungServer]:
    with HungServer() as server:
        yield server


def _env(url: str, **extra: str) -> dict[str, str]:
    return {
        "CUSTSYNC_REDIS_URL": url,
        "CUSTSYNC_REDIS_TIMEOUT_S": str(TIMEOUT_S),
        "CUSTSYNC_MINTED_BASE_URL": "http://127.0.0.1:9",
        "CUSTSYNC_MINTED_USERNAME": "u",
        "CUSTSYNC_MINTED_PASSWORD": "p",
        **extra,
    }


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "args", [("status",), ("dlq", "list"), ("dlq", "stats"), ("dlq", "show", "x-1")]
)
def test_cli_gives_up_on_a_hung_redis_with_one_line(hung: HungServer, args: tuple[str]) -> None:
    done = run_cli(_env(hung.url), *args)  # run_cli's own limit: 60 s, far above the bound
    assert done.returncode == exitcodes.UNAVAILABLE, done.stderr
    assert done.stderr == (
        f"custsync: cannot reach Redis at {hung.url}: timed out after {TIMEOUT_S} s: the server"
        " accepts connections but does not answer; check that it is Redis and not overloaded"
        " (CUSTSYNC_REDIS_TIMEOUT_S sets the wait)\n"
    )


def test_publish_gives_up_on_a_hung_broker(hung: HungServer, tmp_path: Path) -> None:
    events = tmp_path / "events.ndjson"
    event = envelope("minted", new_id("H"), MINTED_EXAMPLE)
    events.write_text(json.dumps(event) + "\n")
    done = run_cli(_env(hung.url), "publish", str(events))
    assert done.returncode == exitcodes.UNAVAILABLE, done.stderr
    assert done.stderr.count("\n") == 1 and "timed out after 1 s" in done.stderr


@pytest.fixture
def acl_user(redis_server: EphemeralRedis) -> Iterator[str]:
    """A Redis user with a known password (the default user keeps working for other tests)."""
    client = redis.Redis.from_url(redis_server.url)
    client.execute_command("ACL", "SETUSER", "probe", "on", ">right-pw", "~*", "+@all")
    yield f"redis://probe:{{}}@127.0.0.1:{redis_server.port}/{ACL_DB}"
    client.execute_command("ACL", "DELUSER", "probe")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("refused", "connection refused; check the host and port, and that Redis is running"),
        ("password", "authentication failed; check the user and password in the URL"),
        ("tls", "TLS handshake failed; check rediss:// against the server's TLS port and its CA"),
        ("host", "host name not found; check the host in the URL"),
    ],
)
def test_the_line_names_what_failed(
    kind: str, expected: str, hung: HungServer, acl_user: str
) -> None:
    url = {
        "refused": f"redis://127.0.0.1:{_closed_port()}/0",
        "password": acl_user.format("wrong-pw"),
        "tls": f"rediss://127.0.0.1:{hung.port}/0",
        "host": "redis://no-such-host.invalid:6379/0",
    }[kind]
    done = run_cli(_env(url), "status")
    assert done.returncode == exitcodes.UNAVAILABLE, done.stderr
    assert done.stderr.endswith(f": {expected}\n"), done.stderr
    assert done.stderr.count("\n") == 1
    assert "wrong-pw" not in done.stderr
    assert run_cli(_env(acl_user.format("right-pw")), "status").returncode == exitcodes.OK


def _stops_within_grace(proc: subprocess.Popen[bytes], sig: signal.Signals) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        pytest.fail(f"the worker ignored {sig.name} for {GRACE_S} s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_worker_on_a_hung_redis_stops_on_a_signal(
    hung: HungServer, tmp_path: Path, sig: signal.Signals
) -> None:
    worker = WorkerProcess(_env(hung.url, CUSTSYNC_LOG_FORMAT="json"), tmp_path / "w.log").start()
    assert worker.proc is not None
    wait_for(lambda: "Cannot connect" in worker.log_text(), timeout_s=30, interval_s=0.2)
    _stops_within_grace(worker.proc, sig)


def test_a_worker_whose_redis_hangs_mid_run_stops_and_says_so_once(
    sandbox: Sandbox, sandbox_client: SandboxClient, tmp_path: Path
) -> None:
    server = EphemeralRedis(tmp_path / "redis").start()
    env = custsync_env(server, sandbox, 0, CUSTSYNC_REDIS_TIMEOUT_S=str(TIMEOUT_S))
    pool = WorkerPool(env, tmp_path, 1).start()
    stopped = False
    try:
        cid = new_id("HM")
        sandbox_client.put_customer("minted", cid, {**MINTED_EXAMPLE, "external_id": cid})
        event = envelope("minted", cid, {**MINTED_EXAMPLE, "lastname": "Beforehang"})
        enqueue([(event, None)], pool.app)
        worker = pool.workers[0]
        wait_for(lambda: worker.outcomes(event["event_id"]), timeout_s=30)
        assert worker.outcomes(event["event_id"])[-1]["outcome"] == "applied"
        os.kill(server.pid, signal.SIGSTOP)  # accepts connections, answers nothing
        stopped = True
        lines = lambda: worker.log_text().count("retry poller: cannot reach Redis")  # noqa: E731
        wait_for(lines, timeout_s=30, interval_s=0.2)
        time.sleep(4 * TIMEOUT_S)  # several polls of the outage
        assert lines() == 1
        assert "retry poller failed" not in worker.log_text()
        assert worker.proc is not None
        _stops_within_grace(worker.proc, signal.SIGTERM)
    finally:
        if stopped:
            os.kill(server.pid, signal.SIGCONT)
        pool.stop()
        server.stop()


def test_the_watchdog_ends_a_shutdown_stuck_past_its_deadline() -> None:
    stuck = (
        "import time; from custsync.shutdown import arm_watchdog;"
        " arm_watchdog(0.5, 0); time.sleep(60); print('still here')"
    )
    done = subprocess.run(
        [sys.executable, "-c", stuck], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 1  # a forced exit is a failure, whatever the shutdown's code
    assert "still here" not in done.stdout
