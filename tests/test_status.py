"""``custsync status`` against a real Redis: what an operator sees per target, and a clear exit
when Redis cannot be reached."""

from __future__ import annotations

import json
import socket
import time

import pytest

from custsync.delivery import Delivery
from custsync.embedded.server import EphemeralRedis
from custsync.producer import enqueue
from custsync.sandbox import Sandbox
from custsync.state.retryset import schedule
from tests.dlq_support import Quiet, cli, entry, json_lines
from tests.events import MINTED_EXAMPLE, envelope


@pytest.fixture
def quiet(redis_server: EphemeralRedis, sandbox: Sandbox) -> Quiet:
    return Quiet(redis_server, sandbox)


def test_status_shows_queue_retries_dlq_pause_breaker_and_last_success(quiet: Quiet) -> None:
    rt, keys, now = quiet.rt, quiet.rt.keys, time.time()
    waiting = envelope("minted", "C-1", dict(MINTED_EXAMPLE))
    pipe = rt.redis.pipeline()
    schedule(pipe, keys, "minted", waiting, Delivery(attempts=1), now + 60)
    pipe.set(keys.pause("vendor"), json.dumps({"until": now + 120, "reason": "throttled"}))
    pipe.hset(keys.breaker("minted"), mapping={"failures": 5, "c:C-9": 1})  # 5: the threshold
    pipe.hset(keys.breaker("minted"), "opened_until", now + 30)
    pipe.set(keys.last_success("minted"), now - 5)
    pipe.execute()
    rt.dlq.add_many([entry(), entry(), entry("vendor", "rejected", status=422)])
    enqueue([(waiting, None)], quiet.app)  # two messages (one call would send one batch)
    enqueue([(waiting, None)], quiet.app)

    result = quiet.cli("status", "--json")
    assert result.returncode == 0, result.stderr
    state = json_lines(result.stdout)[0]
    assert (state["queue"]["name"], state["queue"]["waiting"]) == ("custsync", 2)
    assert state["queue"]["queues"]["custsync.minted"] == 2  # the partner's own queue
    assert state["targets"]["minted"]["queued"] == 2
    assert state["dlq_total"] == 3
    minted, vendor = state["targets"]["minted"], state["targets"]["vendor"]
    assert minted["retry"]["size"] == 1
    assert minted["retry"]["next_due"] == pytest.approx(now + 60, abs=1)
    assert minted["dlq"] == {"not_found": 2}
    assert minted["breaker"] == {
        "state": "open",
        "failing_customers": 5,
        "threshold": 5,
        "open_until": pytest.approx(now + 30, abs=1),
    }
    assert vendor["breaker"]["state"] == "closed"
    assert minted["last_success"] == pytest.approx(now - 5, abs=1)
    assert minted["paused"] is None
    assert vendor["paused"]["reason"] == "throttled"
    assert vendor["dlq"] == {"rejected": 1}
    assert vendor["last_success"] is None

    text = quiet.cli("status").stdout
    assert "queues  2 messages waiting, 0 in progress (all queues; a batch is one message)" in text
    assert "  custsync.minted     2 messages waiting" in text
    assert "retry set     1 waiting, next due in " in text
    assert "breaker       open until " in text and "5 customers failing of 5 to open" in text
    assert "breaker       closed\n" in text  # vendor
    assert "C-9" not in text  # the failing customers are counted, never named
    assert "paused        until " in text and "(throttled)" in text
    assert "last success  never" in text


def test_status_exits_4_with_the_password_masked_when_redis_is_unreachable(
    quiet: Quiet,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free now, closed below: nothing listens there
    env = {**quiet.env, "CUSTSYNC_REDIS_URL": f"redis://:s3cr3t-pw@127.0.0.1:{port}/0"}

    result = cli(env, "status")
    assert result.returncode == 4
    assert (
        result.stderr
        == f"custsync: cannot reach Redis at redis://:***@127.0.0.1:{port}/0: connection refused;"
        " check the host and port, and that Redis is running\n"
    )
    assert "s3cr3t" not in result.stdout + result.stderr
