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


def test_envelope_without_an_event_id_is_kept_under_a_content_hash(
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
    assert entry.event_id.startswith("noid-")
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
