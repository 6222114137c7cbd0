"""``custsync health`` as the probes run it: a real process, real Redis, a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from custsync import exitcodes
from custsync.embedded.server import EphemeralRedis
from custsync.sandbox import Sandbox
from tests.conftest import WorkerPool, custsync_env

HEALTH_DB = 11


def health(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "custsync.cli", "health", "--timeout", "1", *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("CUSTSYNC_")}, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_healthy_when_redis_answers(redis_server: EphemeralRedis, sandbox: Sandbox) -> None:
    done = health(custsync_env(redis_server, sandbox, HEALTH_DB))
    assert done.returncode == exitcodes.OK, done.stderr
    assert done.stdout.startswith("ok: Redis answered")


def test_unreachable_redis_is_one_line_and_exit_4() -> None:
    done = health({"CUSTSYNC_REDIS_URL": "redis://:secret-pw@127.0.0.1:1/0"})
    assert done.returncode == exitcodes.UNAVAILABLE
    assert done.stderr.count("\n") == 1
    assert "connection refused" in done.stderr and "secret-pw" not in done.stderr


def test_a_stopped_embedded_redis_is_unhealthy_not_started(tmp_path: Path) -> None:
    done = health({"CUSTSYNC_DATA_DIR": str(tmp_path / "redis")}, "--worker")
    assert done.returncode == exitcodes.UNAVAILABLE
    assert "embedded Redis is not running" in done.stderr
    assert not (tmp_path / "redis").exists()


def test_worker_check_needs_a_worker_on_this_host(
    redis_server: EphemeralRedis,
    sandbox: Sandbox,
    pool_factory: Callable[..., WorkerPool],
) -> None:
    env = custsync_env(redis_server, sandbox, HEALTH_DB)
    done = health(env, "--worker")
    assert done.returncode == exitcodes.FAILURE
    assert done.stderr.startswith("custsync: unhealthy: no worker") and done.stderr.count("\n") == 1

    pool = pool_factory(HEALTH_DB, size=1)
    done = health(env, "--worker")
    assert done.returncode == exitcodes.OK, done.stderr
    assert "worker test-" in done.stdout
    assert health(env, "--node", "nobody@nowhere").returncode == exitcodes.FAILURE
    assert pool.workers[0].proc is not None
