"""The batch message custsync's producers send: what Celery's own client would send for
``apply_batch(items)``, and the guard's rules for it (one event each way per rule)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from custsync.batch import chains
from custsync.broker.contract import (
    BATCH_BYTES_MAX,
    Malformed,
    TaskCall,
    check_batch_body,
    check_headers,
    max_body_bytes,
)
from custsync.broker.messages import MessageBuilder, batch_label, item_json
from custsync.broker.reading import items_in
from custsync.embedded.server import EphemeralRedis
from custsync.sandbox import Sandbox
from custsync.state.keys import BATCH_ITEMS_MAX, BATCH_TASK_NAME, TASK_NAME
from tests.dlq_support import Quiet
from tests.events import MINTED_EXAMPLE, envelope

NO_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@pytest.fixture
def quiet(redis_server: EphemeralRedis, sandbox: Sandbox) -> Quiet:
    return Quiet(redis_server, sandbox)


def _items(n: int) -> list[dict[str, Any]]:
    return [
        {"envelope": envelope("minted", f"C-{i}", dict(MINTED_EXAMPLE)), "delivery": {}}
        for i in range(n)
    ]


def test_a_built_batch_is_what_celerys_send_task_writes(quiet: Quiet) -> None:
    app = quiet.app
    items = _items(3)
    items[1]["delivery"] = {"attempts": 2, "first_seen_at": 1.5, "replays": 1, "force": False}
    texts = [item_json(i["envelope"], i["delivery"]) for i in items]
    built = json.loads(MessageBuilder(app).build_batch(texts, "custsync.minted", "(<b>,)"))
    app.send_task(BATCH_TASK_NAME, args=(items,), queue="custsync.minted")
    (sent_raw,) = quiet.raw.lrange("custsync.minted", 0, -1)
    sent = json.loads(sent_raw)
    assert built["headers"]["task"] == sent["headers"]["task"] == BATCH_TASK_NAME
    assert set(built) == set(sent)
    assert set(built["properties"]) <= set(sent["properties"])
    body = json.loads(base64.b64decode(built["body"]))
    assert body == json.loads(base64.b64decode(sent["body"])) == [[items], {}, NO_EMBED]
    assert built["properties"]["delivery_info"]["routing_key"] == "custsync.minted"
    assert [e for e, _ in items_in(json.dumps(built))] == [i["envelope"] for i in items]


def test_the_guard_accepts_a_batch_and_binds_each_item() -> None:
    items = _items(2)
    items[0].pop("delivery")  # optional
    call = check_batch_body([[items], {}, NO_EMBED])
    assert call.items == [TaskCall(i["envelope"], i.get("delivery")) for i in items]
    assert check_batch_body([[], {"items": items}, None]).items == call.items
    check_headers({"task": BATCH_TASK_NAME, "id": "x"})
    check_headers({"task": TASK_NAME, "id": "x"})


@pytest.mark.parametrize(
    ("body", "part"),
    [
        ([[[]], {}, None], "body.items"),  # empty
        ([[_items(1) * (BATCH_ITEMS_MAX + 1)], {}, None], "body.items"),  # too many
        ([["not a list"], {}, None], "body.items"),
        ([[_items(1), "extra"], {}, None], "body"),
        ([[_items(1)], {"items": _items(1)}, None], "body"),
        ([[[{"delivery": {}}]], {}, None], "body.items[0]"),  # no envelope
        ([[[{"envelope": {}, "more": 1}]], {}, None], "body.items[0]"),
        ([[[{"envelope": {}, "delivery": {"attempts": -1}}]], {}, None], "body.items[0]"),
        ([[[{"envelope": {}, "delivery": "x"}]], {}, None], "body.items[0]"),
        ([[_items(1)], {}, {"chain": [{}]}], "body.embed"),
    ],
)
def test_the_guard_refuses_a_batch_naming_the_part(body: Any, part: str) -> None:
    with pytest.raises(Malformed) as caught:
        check_batch_body(body)
    assert caught.value.part.startswith(part)


def test_a_batch_may_be_larger_than_one_event_but_is_bounded() -> None:
    assert max_body_bytes(TASK_NAME, 256 * 1024) == 256 * 1024 + 4096
    assert max_body_bytes(BATCH_TASK_NAME, 256 * 1024) == BATCH_BYTES_MAX
    with pytest.raises(Malformed):
        check_headers({"task": "custsync.other", "id": "x"})


def test_the_label_names_the_count_and_first_event_never_a_value() -> None:
    items = _items(3)
    shown = batch_label([i["envelope"] for i in items])
    ids = ", ".join(i["envelope"]["event_id"] for i in items)
    assert shown == f"(<batch of 3 events: {ids}>,)"
    assert MINTED_EXAMPLE["identity_number"] not in shown
    many = batch_label([i["envelope"] for i in _items(400)])
    assert many.startswith("(<batch of 400 events: ") and "more>,)" in many
    assert len(many) < 4200


def test_a_customers_events_run_in_version_order_and_customers_apart() -> None:
    def at(customer: str, second: int, sequence: int = 0) -> TaskCall:
        env = envelope("minted", customer, dict(MINTED_EXAMPLE))
        env["occurred_at"] = f"2026-04-01T00:00:{second:02d}+00:00"
        env["sequence"] = sequence
        return TaskCall(env, None)

    calls = [at("A", 5), at("B", 1), at("A", 1, 2), at("A", 1, 1), "garbage", at("B", 0)]
    calls[4] = TaskCall("garbage", None)
    groups = chains(calls)
    assert sorted(groups) == sorted([[3, 2, 0], [5, 1], [4]])
