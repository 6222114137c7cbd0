"""Forgetting a customer (erasure): afterwards a SCAN of every key in Redis finds neither the
customer's values nor their id, and another customer's data is untouched."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from custsync.delivery import Delivery
from custsync.embedded.server import EphemeralRedis
from custsync.http.app import create_app
from custsync.http.operators import add_api_key
from custsync.privacy import mask_id
from custsync.producer import enqueue
from custsync.runtime import Runtime
from custsync.sandbox import Sandbox
from custsync.settings import load_settings
from custsync.state.retryset import schedule
from tests.conftest import run_cli
from tests.dlq_support import Quiet, entry, json_lines, queued_count, redis_contents
from tests.events import MINTED_EXAMPLE, envelope, new_id

GONE_VALUE, KEPT_VALUE = "Morrowquistel", "Keepsakeward"


@pytest.fixture
def quiet(redis_server: EphemeralRedis, sandbox: Sandbox, tmp_path: Path) -> Quiet:
    return Quiet(redis_server, sandbox, CUSTSYNC_OPERATORS_FILE=str(tmp_path / "ops.json"))


def _plant(q: Quiet, customer: str, value: str) -> None:
    """The customer's payloads everywhere custsync keeps them."""
    changes = {**MINTED_EXAMPLE, "lastname": value}
    q.rt.dlq.add_many(
        [entry(customer_id=customer, changes=changes), entry(customer_id=customer, changes=changes)]
    )
    pipe = q.rt.redis.pipeline()
    later = envelope("minted", customer, changes)
    schedule(pipe, q.rt.keys, "minted", later, Delivery(attempts=1), time.time() + 600)
    pipe.hset(q.rt.keys.version("minted", customer), "_v", "2026-01-01T00:00:00Z")
    pipe.execute()
    enqueue([(envelope("minted", customer, changes), None)], q.app)  # queue and journal


def test_forget_leaves_no_trace_of_the_customer_and_keeps_the_others(quiet: Quiet) -> None:
    gone, kept = new_id("ERASE"), new_id("KEEP")
    _plant(quiet, gone, GONE_VALUE)
    _plant(quiet, kept, KEPT_VALUE)
    before = redis_contents(quiet.raw)
    assert GONE_VALUE.encode() in before and gone.encode() in before  # the search sees them

    done = run_cli(quiet.env, "dlq", "forget", gone, "--yes")
    assert done.returncode == 0, done.stderr
    assert f"forgot {mask_id(gone)}: dlq 2, retry 1, journal 1, queue 1" in done.stdout

    after = redis_contents(quiet.raw)
    assert GONE_VALUE.encode() not in after
    assert gone.encode() not in after
    assert KEPT_VALUE.encode() in after and kept.encode() in after
    assert quiet.rt.dlq.count() == 2 and queued_count(quiet.raw) == 1
    audit = run_cli(quiet.env, "audit", "--json").stdout
    (line,) = json_lines(audit)
    assert (line["action"], line["scope"], line["count"]) == (
        "forget",
        {"customer": mask_id(gone)},
        5,
    )
    assert gone not in audit


def test_forget_needs_yes_without_a_terminal_and_an_operator_over_http(quiet: Quiet) -> None:
    gone = new_id("ERASE")
    _plant(quiet, gone, GONE_VALUE)
    assert run_cli(quiet.env, "dlq", "forget", gone).returncode == 2  # no --yes, no terminal
    assert quiet.rt.dlq.count() == 2
    ops = Path(quiet.env["CUSTSYNC_OPERATORS_FILE"])
    viewer, operator = add_api_key(ops, "v", "viewer"), add_api_key(ops, "o", "operator")
    client = create_app(Runtime(load_settings(quiet.env))).test_client()

    def forget(key: str) -> Any:
        return client.post(
            f"/v1/customers/{gone}/forget", headers={"Authorization": f"Bearer {key}"}
        )

    assert forget(viewer).status_code == 403
    answer = forget(operator)
    assert answer.status_code == 200
    assert answer.get_json()["forgotten"] == {"dlq": 2, "retry": 1, "journal": 1, "queue": 1}
    assert GONE_VALUE.encode() not in redis_contents(quiet.raw)
