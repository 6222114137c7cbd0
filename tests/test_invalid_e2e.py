"""Invalid events from any Celery client land in the DLQ as `invalid`, field named, no call."""

from __future__ import annotations

from typing import Any

from custsync.producer import enqueue
from custsync.runtime import Runtime
from custsync.sandbox import SandboxClient
from tests.conftest import WorkerProcess, wait_for
from tests.events import MINTED_EXAMPLE, envelope, new_id
from tests.rules import INVALID_ENVELOPES, SEED_RULES, refused_changes


def test_every_rule_of_both_seeds_dead_letters_as_invalid_without_a_call(
    worker: WorkerProcess, runtime: Runtime, sandbox_client: SandboxClient
) -> None:
    expected: dict[str, tuple[str, str]] = {}
    batch: list[tuple[dict[str, Any], None]] = []
    for rule in SEED_RULES:
        code = new_id("C")
        env = envelope(rule.target, code, refused_changes(rule, code))
        expected[env["event_id"]] = (rule.id, f"changes.{rule.field}")
        batch.append((env, None))
    for case, fragment, field in INVALID_ENVELOPES:
        env = envelope("minted", new_id("C"), dict(MINTED_EXAMPLE))
        env["event_id"] = new_id("ev")  # keep an id so the entry can be found
        for key, value in fragment.items():
            if value is ...:
                env.pop(key)
            else:
                env[key] = value
        if "event_id" not in env or len(str(env["event_id"])) > 128:
            continue  # covered below: such an envelope is stored under a content hash
        expected[env["event_id"]] = (case, field)
        batch.append((env, None))
    enqueue(batch)

    def all_dead_lettered() -> bool:
        return all(runtime.dlq.get(event_id) is not None for event_id in expected)

    wait_for(all_dead_lettered, timeout_s=60)
    for event_id, (case, field) in expected.items():
        entry = runtime.dlq.get(event_id)
        assert entry is not None, case
        assert entry.reason == "invalid", case
        assert entry.field_errors, case
        assert any(k == field or k.startswith(f"{field}.") for k in entry.field_errors), case
        assert field in entry.error, case
        assert entry.attempts == 0, case
    seen_keys = {r["idempotency_key"] for r in sandbox_client.requests()}
    assert not seen_keys & set(expected)


def test_envelope_without_an_event_id_gets_an_entry_of_its_own(
    worker: WorkerProcess, runtime: Runtime
) -> None:
    marker = new_id("orphan")
    env = envelope("minted", marker, dict(MINTED_EXAMPLE))
    env.pop("event_id")
    enqueue([(env, None)])

    def stored() -> Any:
        for entry in runtime.dlq.newest(200):
            if entry.customer_id == marker:
                return entry
        return None

    entry = wait_for(stored)
    assert entry.event_id == "" and entry.entry_id and entry.label == entry.entry_id
    assert entry.reason == "invalid"
    assert entry.envelope == env
    assert "event_id" in (entry.field_errors or {})


def test_non_object_envelope_is_dead_lettered(worker: WorkerProcess, runtime: Runtime) -> None:
    marker = new_id("just-a-string")
    enqueue([(marker, None)])

    def stored() -> Any:
        for entry in runtime.dlq.newest(200):
            if entry.envelope == marker:
                return entry
        return None

    entry = wait_for(stored)
    assert entry.reason == "invalid"
    assert "_envelope" in (entry.field_errors or {})


def test_distinct_events_sharing_an_id_each_keep_their_own_entry(
    worker: WorkerProcess, runtime: Runtime
) -> None:
    shared, spaced = new_id("same"), " sp "
    batch = []
    for n in range(6):  # six different invalid envelopes, one id
        env = envelope("minted", new_id("C"), {**MINTED_EXAMPLE, "gender": f"X{n}"})
        env["event_id"] = shared
        batch.append(env)
    for _ in range(4):  # an id that fails validation is never a key
        env = envelope("minted", new_id("C"), dict(MINTED_EXAMPLE))
        env["event_id"] = spaced
        batch.append(env)
    enqueue([(e, None) for e in batch])

    def all_stored() -> list[Any]:
        found = runtime.dlq.for_event(shared)
        return found if len(found) == 6 else []

    entries = wait_for(all_stored, timeout_s=30)
    assert sorted(e.envelope["changes"]["gender"] for e in entries) == [f"X{n}" for n in range(6)]
    assert len({e.entry_id for e in entries}) == 6
    customers = {e["customer_id"] for e in batch[6:]}

    def spaced_stored() -> list[Any]:
        found = [e for e in runtime.dlq.newest(500) if e.customer_id in customers]
        return found if len(found) == 4 else []

    spaced_entries = wait_for(spaced_stored, timeout_s=30)
    assert all(e.event_id == "" and "event_id" in (e.field_errors or {}) for e in spaced_entries)
    assert runtime.redis.get(runtime.keys.dlq_entry(spaced)) is None
