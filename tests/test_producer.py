"""Producers validate first, enqueue nothing for invalid events, and pipeline the writes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from custsync import exitcodes, publish, publish_many
from custsync.broker.reading import envelopes_in
from custsync.producer import EventValidationError
from custsync.runtime import Runtime
from custsync.settings import load_settings
from custsync.state.keys import BATCH_TASK_NAME, TASK_NAME, partner_queue
from custsync.worker import producer_app
from tests.conftest import run_cli
from tests.events import MINTED_EXAMPLE, envelope, new_id

QUEUE = partner_queue("minted")  # custsync's producers route each event to its partner


@pytest.fixture
def direct(direct_env: dict[str, str]) -> Iterator[tuple[Runtime, Any]]:
    rt = Runtime(load_settings(direct_env))
    yield rt, producer_app(rt)


def queued(rt: Runtime) -> list[dict[str, Any]]:
    """The envelopes waiting on the queue, oldest first, decoded from kombu's Redis message
    format (one per ``apply_update`` message, several per ``apply_batch``)."""
    out = []
    for raw in reversed(rt.redis.lrange(QUEUE, 0, -1)):
        assert json.loads(raw)["headers"]["task"] in (TASK_NAME, BATCH_TASK_NAME)
        out += envelopes_in(raw)
    return out


def test_publish_enqueues_the_envelope_as_a_celery_task(direct: tuple[Runtime, Any]) -> None:
    rt, app = direct
    env = envelope("minted", "MTD0018232", dict(MINTED_EXAMPLE))
    assert publish(env, app=app) == env["event_id"]
    assert queued(rt) == [env]


def test_publish_hides_the_envelope_from_task_argument_displays(
    direct: tuple[Runtime, Any],
) -> None:
    rt, app = direct
    env = envelope("minted", "MTD0018232", dict(MINTED_EXAMPLE))
    publish(env, app=app)
    headers = json.loads(rt.redis.lindex(QUEUE, 0))["headers"]
    assert MINTED_EXAMPLE["identity_number"] not in headers["argsrepr"]
    assert env["event_id"] in headers["argsrepr"]


def test_publish_of_an_invalid_event_raises_and_enqueues_nothing(
    direct: tuple[Runtime, Any],
) -> None:
    rt, app = direct
    env = envelope("minted", "MTD0018232", {**MINTED_EXAMPLE, "firstname": "Jo"})
    with pytest.raises(EventValidationError) as info:
        publish(env, app=app)
    assert "changes.firstname" in info.value.messages
    assert rt.redis.llen(QUEUE) == 0


def test_an_event_over_the_size_limit_is_refused_naming_the_setting(
    direct_env: dict[str, str],
) -> None:
    rt = Runtime(load_settings({**direct_env, "CUSTSYNC_MAX_EVENT_BYTES": "2048"}))
    app = producer_app(rt)
    small = envelope("minted", "C1", dict(MINTED_EXAMPLE))
    publish(small, app=app)
    # Valid field by field (identity_number has no upper bound), too large as a whole.
    big = envelope("minted", "C1", {**MINTED_EXAMPLE, "identity_number": "1" * 2100})
    with pytest.raises(EventValidationError) as info:
        publish(big, app=app)
    assert "CUSTSYNC_MAX_EVENT_BYTES" in info.value.messages["_envelope"][0]
    assert queued(rt) == [small]


def test_publish_many_is_all_or_nothing(direct: tuple[Runtime, Any]) -> None:
    rt, app = direct
    good = [envelope("minted", f"C{i}", dict(MINTED_EXAMPLE)) for i in range(5)]
    bad = envelope("vendor", "V1", {"code": "V1"})
    with pytest.raises(EventValidationError) as info:
        publish_many([*good[:2], bad, *good[2:]], app=app)
    assert set(info.value.messages) == {2}
    assert rt.redis.llen(QUEUE) == 0

    assert publish_many(good, app=app) == 5
    assert queued(rt) == good


def test_publish_many_writes_in_pipelined_batches(direct: tuple[Runtime, Any]) -> None:
    rt, app = direct
    events = [envelope("minted", f"C{i}", dict(MINTED_EXAMPLE)) for i in range(2500)]
    before = rt.redis.info("commandstats").get("cmdstat_lpush", {}).get("calls", 0)
    publish_many(events, app=app)
    # CUSTSYNC_BATCH_MAX (50) events a message, one LPUSH each, sent in pipelines.
    assert rt.redis.llen(QUEUE) == 50
    after = rt.redis.info("commandstats")["cmdstat_lpush"]["calls"]
    assert after - before == 50
    tasks = {json.loads(raw)["headers"]["task"] for raw in rt.redis.lrange(QUEUE, 0, -1)}
    assert tasks == {BATCH_TASK_NAME}
    assert queued(rt) == events  # every event, in publish order
    journaled = rt.redis.zmscore(rt.keys.journal, [e["event_id"] for e in events])
    assert None not in journaled  # each event noted on its own: recovery is per event


def test_batch_max_one_sends_one_plain_message_per_event(direct_env: dict[str, str]) -> None:
    rt = Runtime(load_settings({**direct_env, "CUSTSYNC_BATCH_MAX": "1"}))
    events = [envelope("minted", f"C{i}", dict(MINTED_EXAMPLE)) for i in range(7)]
    publish_many(events, app=producer_app(rt))
    raws = rt.redis.lrange(QUEUE, 0, -1)
    assert len(raws) == 7
    assert {json.loads(raw)["headers"]["task"] for raw in raws} == {TASK_NAME}
    assert queued(rt) == events


def test_a_lone_event_and_the_rest_of_a_batch_go_as_they_fit(direct: tuple[Runtime, Any]) -> None:
    rt, app = direct
    events = [envelope("minted", f"C{i}", dict(MINTED_EXAMPLE)) for i in range(51)]
    publish_many(events, app=app)
    tasks = [json.loads(raw)["headers"]["task"] for raw in reversed(rt.redis.lrange(QUEUE, 0, -1))]
    assert tasks == [BATCH_TASK_NAME, TASK_NAME]  # 50 in one message, the 51st alone
    assert queued(rt) == events


def test_cli_publish_reports_bad_lines_by_number_and_sends_the_rest(
    direct_env: dict[str, str], tmp_path: Path
) -> None:
    rt = Runtime(load_settings(direct_env))
    good = [envelope("minted", new_id("C"), dict(MINTED_EXAMPLE)) for _ in range(3)]
    lines = [
        json.dumps(good[0]),
        "{not json",
        json.dumps(good[1]),
        "",
        json.dumps(envelope("minted", "C9", {**MINTED_EXAMPLE, "gender": "X"})),
        json.dumps(good[2]),
    ]
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(lines) + "\n")

    proc = run_cli(direct_env, "publish", str(path))

    assert proc.returncode == exitcodes.INVALID_INPUT
    assert "line 2: " in proc.stderr and "Not valid JSON" in proc.stderr
    assert "line 5: changes.gender: Must be one of: M, F." in proc.stderr
    assert "published 3 events; 2 invalid lines" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert queued(rt) == good


def test_cli_publish_reads_stdin_and_prints_json(direct_env: dict[str, str]) -> None:
    rt = Runtime(load_settings(direct_env))
    env = envelope("minted", new_id("C"), dict(MINTED_EXAMPLE))
    proc = run_cli(direct_env, "publish", "-", "--json", stdin=json.dumps(env) + "\n")
    assert proc.returncode == exitcodes.OK, proc.stderr
    assert json.loads(proc.stdout) == {"published": 1, "invalid": 0, "errors": []}
    assert queued(rt) == [env]


def test_cli_bad_setting_is_one_line_naming_the_variable(direct_env: dict[str, str]) -> None:
    proc = run_cli({**direct_env, "CUSTSYNC_MINTED_MAX_ATTEMPTS": "many"}, "publish", "-", stdin="")
    assert proc.returncode == exitcodes.CONFIG_ERROR
    assert proc.stderr.strip().count("\n") == 0
    assert "CUSTSYNC_MINTED_MAX_ATTEMPTS" in proc.stderr
    assert "Traceback" not in proc.stderr
