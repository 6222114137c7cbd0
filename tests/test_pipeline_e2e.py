"""The README's answer table, row by row, each by a real answer from the sandbox, through a
real worker: publish -> Redis queue -> worker -> sandbox -> applied or DLQ."""

from __future__ import annotations

from typing import Any

import pytest

from custsync import publish
from custsync.producer import enqueue
from custsync.runtime import Runtime
from custsync.sandbox import SandboxClient
from tests.conftest import WorkerProcess, wait_for
from tests.events import (
    MINTED_EXAMPLE,
    envelope,
    minted_customer,
    new_id,
    vendor_changes,
    vendor_customer,
)

pytestmark = pytest.mark.usefixtures("worker")


def final_outcome(worker: WorkerProcess, event_id: str) -> dict[str, Any]:
    """Wait for the event's terminal outcome line (applied or dead-lettered)."""

    def terminal() -> dict[str, Any] | None:
        for line in worker.outcomes(event_id):
            if line["outcome"] in ("applied", "dead_lettered"):
                return line
        return None

    result: dict[str, Any] = wait_for(terminal, timeout_s=30)
    return result


def test_minted_seed_example_is_applied_with_method_path_auth_and_headers(
    worker: WorkerProcess, sandbox_client: SandboxClient
) -> None:
    cid = minted_customer(sandbox_client)
    changes = {**MINTED_EXAMPLE, "lastname": "Doe-Updated"}
    env = envelope("minted", cid, changes)
    publish(env)

    assert final_outcome(worker, env["event_id"])["outcome"] == "applied"
    calls = sandbox_client.requests(key=env["event_id"])
    applied = [c for c in calls if c["status"] == 200]
    assert len(applied) == 1
    call = applied[0]
    assert call["method"] == "PATCH"
    assert call["path"] == f"/partner/customer/{cid}"
    assert call["headers"]["auth_scheme"] == "Digest"
    assert call["headers"]["api-version"] == "2"
    assert call["headers"]["x-client-id"] == "web"
    assert call["headers"]["accept-language"] == "tr"
    assert call["headers"]["content-type"].startswith("application/json")
    assert call["body"] == changes
    assert sandbox_client.get_customer("minted", cid)["lastname"] == "Doe-Updated"


def test_vendor_seed_example_is_applied_with_bearer_token(
    worker: WorkerProcess, sandbox_client: SandboxClient
) -> None:
    code = vendor_customer(sandbox_client)
    changes = vendor_changes(code, address="Atatürk Cd. 1")
    env = envelope("vendor", code, changes)
    publish(env)

    assert final_outcome(worker, env["event_id"])["outcome"] == "applied"
    call = next(c for c in sandbox_client.requests(key=env["event_id"]) if c["status"] == 200)
    assert call["method"] == "PUT"
    assert call["path"] == f"/vendor/customer/{code}"
    assert call["headers"]["auth_scheme"] == "Bearer"
    assert call["body"] == changes
    assert sandbox_client.get_customer("vendor", code)["address"] == "Atatürk Cd. 1"


def test_minted_success_false_is_rejected_with_partner_code(
    worker: WorkerProcess, sandbox_client: SandboxClient, runtime: Runtime
) -> None:
    cid = minted_customer(sandbox_client)
    sandbox_client.script(
        "minted", cid, [{"status": 200, "success": False, "code": 1001, "message": "locked"}]
    )
    env = envelope("minted", cid, {**MINTED_EXAMPLE, "lastname": "Never"})
    publish(env)

    assert final_outcome(worker, env["event_id"])["outcome"] == "dead_lettered"
    entry = runtime.dlq.get(env["event_id"])
    assert entry is not None
    assert (entry.reason, entry.status) == ("rejected", 200)
    assert "1001" in entry.error and "locked" in entry.error
    assert sandbox_client.get_customer("minted", cid)["lastname"] == "Due"


def test_5xx_then_success_retries_with_the_same_idempotency_key(
    worker: WorkerProcess, sandbox_client: SandboxClient, runtime: Runtime
) -> None:
    cid = minted_customer(sandbox_client)
    sandbox_client.script("minted", cid, [{"status": 503}, {"status": 502}])
    env = envelope("minted", cid, {**MINTED_EXAMPLE, "lastname": "Retried"})
    publish(env)

    assert final_outcome(worker, env["event_id"])["outcome"] == "applied"
    outcomes = [o["outcome"] for o in worker.outcomes(env["event_id"])]
    assert outcomes == ["retry_scheduled", "retry_scheduled", "applied"]
    statuses = [
        c["status"] for c in sandbox_client.requests(key=env["event_id"]) if c["status"] != 401
    ]
    assert statuses == [503, 502, 200]
    assert runtime.dlq.get(env["event_id"]) is None


def test_429_pauses_until_retry_after_without_using_an_attempt(
    worker: WorkerProcess, sandbox_client: SandboxClient
) -> None:
    code = vendor_customer(sandbox_client)
    early_before = sandbox_client.stats()["vendor"]["early_requests"]
    sandbox_client.script("vendor", code, [{"status": 429, "retry_after": 1}])
    env = envelope("vendor", code, vendor_changes(code, title="after-429"))
    publish(env)

    final = final_outcome(worker, env["event_id"])
    assert final["outcome"] == "applied"
    assert final["attempt"] == 1  # the 429 did not use an attempt
    assert [o["outcome"] for o in worker.outcomes(env["event_id"])] == ["deferred", "applied"]
    assert sandbox_client.stats()["vendor"]["early_requests"] == early_before


def test_timeout_is_retried(worker: WorkerProcess, sandbox_client: SandboxClient) -> None:
    cid = minted_customer(sandbox_client)
    sandbox_client.script("minted", cid, [{"delay_s": 2.5}])  # read timeout is 1 s
    env = envelope("minted", cid, {**MINTED_EXAMPLE, "lastname": "Slowpoke"})
    publish(env)

    assert final_outcome(worker, env["event_id"])["outcome"] == "applied"
    first = worker.outcomes(env["event_id"])[0]
    assert first["outcome"] == "retry_scheduled"
    assert "timed out" in first["error"]


def test_404_goes_to_the_dlq_as_not_found(
    worker: WorkerProcess, sandbox_client: SandboxClient, runtime: Runtime
) -> None:
    env = envelope("minted", new_id("MISSING"), dict(MINTED_EXAMPLE))
    publish(env)

    assert final_outcome(worker, env["event_id"])["outcome"] == "dead_lettered"
    entry = runtime.dlq.get(env["event_id"])
    assert entry is not None
    assert (entry.reason, entry.status, entry.attempts) == ("not_found", 404, 1)


def test_422_goes_to_the_dlq_as_rejected_with_the_message_masked(
    worker: WorkerProcess, sandbox_client: SandboxClient, runtime: Runtime
) -> None:
    cid = minted_customer(sandbox_client)
    sandbox_client.script(
        "minted", cid, [{"status": 422, "message": "identity_number 98765432101 is blacklisted"}]
    )
    env = envelope("minted", cid, {**MINTED_EXAMPLE, "identity_number": "98765432101"})
    publish(env)

    assert final_outcome(worker, env["event_id"])["outcome"] == "dead_lettered"
    entry = runtime.dlq.get(env["event_id"])
    assert entry is not None
    assert (entry.reason, entry.status) == ("rejected", 422)
    assert "blacklisted" in entry.error
    assert "98765432101" not in entry.error
    assert "98765432101" not in worker.log_text()


def test_vendor_401_renews_the_token_once_and_applies(
    worker: WorkerProcess, sandbox_client: SandboxClient
) -> None:
    warm = vendor_customer(sandbox_client)  # make sure a token exists already
    warm_env = envelope("vendor", warm, vendor_changes(warm))
    publish(warm_env)
    assert final_outcome(worker, warm_env["event_id"])["outcome"] == "applied"

    code = vendor_customer(sandbox_client)
    issued_before = sandbox_client.stats()["vendor"]["tokens_issued"]
    sandbox_client.script("vendor", code, [{"status": 401}])
    env = envelope("vendor", code, vendor_changes(code, title="renewed"))
    publish(env)

    assert final_outcome(worker, env["event_id"])["outcome"] == "applied"
    assert sandbox_client.stats()["vendor"]["tokens_issued"] == issued_before + 1
    assert [c["status"] for c in sandbox_client.requests(key=env["event_id"])] == [401, 200]


def test_budget_spent_goes_to_the_dlq_as_exhausted(
    worker: WorkerProcess, sandbox_client: SandboxClient, runtime: Runtime
) -> None:
    cid = minted_customer(sandbox_client)
    sandbox_client.script("minted", cid, [{"status": 503}] * 6)  # MAX_ATTEMPTS is 4 here
    env = envelope("minted", cid, {**MINTED_EXAMPLE, "lastname": "Exhausted"})
    publish(env)
    # Another customer applied meanwhile shows the partner is up: the failures are this
    # customer's own, so its last attempt is spent (alone, it would wait as "unconfirmed").
    healthy = envelope("minted", minted_customer(sandbox_client), dict(MINTED_EXAMPLE))
    publish(healthy)

    assert final_outcome(worker, healthy["event_id"])["outcome"] == "applied"
    assert final_outcome(worker, env["event_id"])["outcome"] == "dead_lettered"
    entry = runtime.dlq.get(env["event_id"])
    assert entry is not None
    assert (entry.reason, entry.attempts, entry.status) == ("exhausted", 4, 503)
    assert "503" in entry.error
    assert entry.envelope == env


def test_invalid_envelope_from_any_client_is_dead_lettered_without_a_call(
    worker: WorkerProcess, sandbox_client: SandboxClient, runtime: Runtime
) -> None:
    cid = minted_customer(sandbox_client)
    env = envelope("minted", cid, {**MINTED_EXAMPLE, "gender": "X"}, unexpected="field")
    enqueue([(env, None)])  # as a foreign Celery client would: no producer-side validation

    assert final_outcome(worker, env["event_id"])["outcome"] == "dead_lettered"
    entry = runtime.dlq.get(env["event_id"])
    assert entry is not None
    assert entry.reason == "invalid"
    assert entry.field_errors is not None
    assert set(entry.field_errors) == {"unexpected", "changes.gender"}
    assert sandbox_client.requests(key=env["event_id"]) == []
