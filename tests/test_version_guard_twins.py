"""The version guard exists twice: in preflight.lua (the worker) and judge (replay plans).
Both run on the same cases against a real Redis and must agree."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from custsync.embedded.server import EphemeralRedis
from custsync.schemas.envelope import Event
from custsync.state.guard import Limits, StateScripts, judge, version_string
from custsync.state.keys import Keys
from tests.conftest import db_url

TWINS_DB = 19
T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIMITS = Limits(
    lock_ms=1000,
    rate_per_s=0,
    max_sleep_ms=0,
    breaker_failures=5,
    probe_ms=1000,
    poison_deliveries=5,
    deliveries_ttl_s=60,
)
IDS = frozenset({"code", "erpCode", "updateCode"})


def event(seconds: int, changes: dict[str, Any], seq: int = 0) -> Event:
    return Event(
        event_id=f"tw-{uuid.uuid4().hex}",
        target="vendor",
        customer_id=f"C-{uuid.uuid4().hex[:8]}",
        occurred_at=T0 + timedelta(seconds=seconds),
        sequence=seq,
        changes=changes,
    )


def v(seconds: int, seq: int = 0) -> str:
    return version_string(event(seconds, {}, seq))


CASES: list[tuple[str, dict[str, str], int, int, bool, dict[str, Any]]] = [
    # (case, stored hash, event seconds, sequence, field level, changes)
    ("event-level-newer-stored", {"_v": v(10)}, 5, 0, False, {"a": 1}),
    ("event-level-older-stored", {"_v": v(1)}, 5, 0, False, {"a": 1}),
    ("event-level-nothing-stored", {}, 5, 0, False, {"a": 1}),
    ("event-level-same-time-higher-seq", {"_v": v(5, 1)}, 5, 2, False, {"a": 1}),
    ("event-level-same-version", {"_v": v(5)}, 5, 0, False, {"a": 1}),
    ("renamed-after", {"_renamed_at": v(9)}, 5, 0, True, {"code": "x", "email": "e"}),
    ("renamed-before", {"_renamed_at": v(1)}, 5, 0, True, {"code": "x", "email": "e"}),
    ("renamed-event-level", {"_renamed_at": v(9)}, 5, 0, False, {"a": 1}),
    ("field-all-stale", {"f:email": v(9)}, 5, 0, True, {"code": "x", "email": "e"}),
    ("field-some-stale", {"f:email": v(9)}, 5, 0, True, {"code": "x", "email": "e", "m": "1"}),
    ("field-none-stale", {"f:email": v(1)}, 5, 0, True, {"code": "x", "email": "e"}),
    ("field-ids-only", {"f:code": v(9)}, 5, 0, True, {"code": "x", "erpCode": "y"}),
    ("field-event-version-ignored", {"_v": v(9)}, 5, 0, True, {"code": "x", "email": "e"}),
]


@pytest.fixture(scope="module")
def state(redis_server: EphemeralRedis) -> tuple[Any, StateScripts, Keys]:
    client = redis.Redis.from_url(db_url(redis_server, TWINS_DB), decode_responses=True)
    client.flushdb()
    keys = Keys("twins:")
    return client, StateScripts(client, keys), keys


@pytest.mark.parametrize(
    ("stored", "seconds", "seq", "field_level", "changes"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_lua_and_python_guards_agree(
    state: tuple[Any, StateScripts, Keys],
    stored: dict[str, str],
    seconds: int,
    seq: int,
    field_level: bool,
    changes: dict[str, Any],
) -> None:
    client, scripts, keys = state
    ev = event(seconds, changes, seq)
    if stored:
        client.hset(keys.version(ev.target, ev.customer_id), mapping=stored)
    fields = [f for f in changes if f not in IDS] if field_level else []

    gate = scripts.preflight(
        target=ev.target,
        customer_id=ev.customer_id,
        event_id=ev.event_id,
        holder=f"{ev.event_id}#1",
        version=version_string(ev),
        check_version=True,
        field_level=field_level,
        fields=fields,
        limits=LIMITS,
    )
    python = judge(ev, stored, field_level, IDS)

    assert (gate.verdict == "superseded") == python.superseded
    if gate.verdict == "ok":
        assert gate.stale_fields == python.stale_fields
