"""The DLQ as an operator meets it, end to end: the sandbox rejects a batch, the CLI lists,
filters and shows it, a dry run changes nothing, a replay applies everything, and a replay
killed half-way and run again neither loses nor repeats an event. Own database, own worker."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from custsync.dlq.query import Filter, Query
from custsync.embedded.server import EphemeralRedis
from custsync.privacy import mask_id
from custsync.producer import enqueue
from custsync.runtime import Runtime
from custsync.sandbox import Sandbox, SandboxClient
from custsync.settings import load_settings
from custsync.worker import producer_app
from tests.conftest import WorkerProcess, custsync_env, db_url, wait_for
from tests.dlq_support import DLQ_DB, cli, json_lines, snapshot, start_cli
from tests.events import MINTED_EXAMPLE, envelope, new_id, vendor_changes


class Stack:
    """A worker on DLQ_DB, with a runtime and a sending app for the same database."""

    def __init__(self, env: dict[str, str], worker: WorkerProcess) -> None:
        self.env = env
        self.worker = worker
        self.rt = Runtime(load_settings(env))
        self.app = producer_app(self.rt)

    def send(self, envelopes: list[dict[str, Any]]) -> None:
        enqueue(((e, None) for e in envelopes), self.app)

    def in_dlq(self, since: float) -> list[str]:
        return [e.event_id for e in Query(self.rt.dlq, Filter(since=since))]

    def outcomes(self, event_id: str) -> list[str]:
        return [line["outcome"] for line in self.worker.outcomes(event_id)]

    def wait_outcome(self, event_id: str, outcome: str, times: int = 1) -> None:
        wait_for(lambda: self.outcomes(event_id).count(outcome) >= times, timeout_s=30)


@pytest.fixture(scope="module")
def stack(
    redis_server: EphemeralRedis, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    redis.Redis.from_url(db_url(redis_server, DLQ_DB)).flushdb()
    env = custsync_env(redis_server, sandbox, DLQ_DB)
    log = tmp_path_factory.mktemp("dlq-worker") / "worker.log"
    s = Stack(env, WorkerProcess(env, log).start())

    def ready() -> bool:
        assert s.worker.proc is not None
        if s.worker.proc.poll() is not None:
            pytest.fail(f"worker exited early:\n{s.worker.log_text()[-3000:]}")
        return bool(s.app.control.ping(timeout=0.5))

    wait_for(ready, timeout_s=60, interval_s=0.2)
    yield s
    s.worker.stop()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def missing_batch(n_minted: int, n_vendor: int) -> list[dict[str, Any]]:
    """Events for customers the sandbox does not know yet: each will be answered 404."""
    batch = [envelope("minted", new_id("MTD"), dict(MINTED_EXAMPLE)) for _ in range(n_minted)]
    for _ in range(n_vendor):
        code = new_id("V")
        batch.append(envelope("vendor", code, vendor_changes(code)))
    return batch


def create_customers(client: SandboxClient, batch: list[dict[str, Any]]) -> None:
    for e in batch:
        cid = e["customer_id"]
        if e["target"] == "minted":
            client.put_customer("minted", cid, {**MINTED_EXAMPLE, "external_id": cid})
        else:
            client.put_customer("vendor", cid, vendor_changes(cid))


def dead_letter(stack: Stack, batch: list[dict[str, Any]]) -> float:
    """Send the batch and wait until every event is in the DLQ; returns when it started."""
    started = time.time() - 1.0
    stack.send(batch)
    ids = {e["event_id"] for e in batch}
    wait_for(lambda: ids <= set(stack.in_dlq(started)), timeout_s=30)
    return started


def test_a_rejected_batch_is_listed_filtered_shown_and_replayed_with_the_same_keys(
    stack: Stack, sandbox_client: SandboxClient
) -> None:
    batch = missing_batch(4, 2)
    since = iso(dead_letter(stack, batch))
    minted_ids = {e["event_id"] for e in batch if e["target"] == "minted"}

    listed = json_lines(cli(stack.env, "dlq", "list", "--since", since, "--json").stdout)
    assert {row["event_id"] for row in listed} == {e["event_id"] for e in batch}
    for row in listed:
        assert (row["reason"], row["status"], row["attempts"]) == ("not_found", 404, 1)
        assert {"customer", "target", "first_seen_at", "dead_lettered_at", "error"} <= set(row)
        assert "customer_id" not in row  # a pseudonym unless --show-payload
        assert "envelope" not in row
    narrow = ("--target", "minted", "--reason", "not_found", "--status", "404", "--since", since)
    by_target = cli(stack.env, "dlq", "list", *narrow, "--json")
    assert {row["event_id"] for row in json_lines(by_target.stdout)} == minted_ids
    one = batch[0]
    by_customer = cli(stack.env, "dlq", "list", "--customer", one["customer_id"])
    assert by_customer.returncode == 0
    header, row = by_customer.stdout.splitlines()
    assert header.split()[:4] == ["EVENT", "ID", "TARGET", "CUSTOMER"]
    pseudonym = mask_id(one["customer_id"])
    assert row.split()[:4] == [one["event_id"], "minted", pseudonym, "not_found"]
    revealed = cli(stack.env, "dlq", "list", "--customer", one["customer_id"], "--show-payload")
    assert revealed.stdout.splitlines()[1].split()[2] == one["customer_id"]

    shown = cli(stack.env, "dlq", "show", one["event_id"])
    assert shown.returncode == 0
    assert "not_found (HTTP 404)" in shown.stdout
    assert MINTED_EXAMPLE["identity_number"] not in shown.stdout  # personal data hidden
    assert "dead-lettered  20" in shown.stdout  # a readable time, not epoch seconds
    full = json_lines(
        cli(stack.env, "dlq", "show", one["event_id"], "--json", "--show-payload").stdout
    )
    assert full[0]["envelope"] == one

    create_customers(sandbox_client, batch)
    replay = cli(stack.env, "dlq", "replay", "--reason", "not_found", "--since", since, "--yes")
    assert replay.returncode == 0, replay.stderr
    assert "replayed 6 events" in replay.stdout
    for e in batch:
        stack.wait_outcome(e["event_id"], "applied")
    assert stack.in_dlq(float(datetime.fromisoformat(since).timestamp())) == []
    for e in batch:  # the sandbox filters its record by Idempotency-Key: the event id, twice
        statuses = [r["status"] for r in sandbox_client.requests(key=e["event_id"])]
        assert [s for s in statuses if s != 401] == [404, 200]


def superseded_entry(
    stack: Stack, sandbox_client: SandboxClient
) -> tuple[float, dict[str, Any], str]:
    """An old change rejected, then a newer change of the same customer applied: the DLQ
    entry is superseded. Returns (when it was dead-lettered, its envelope, the customer)."""
    cid = new_id("MTD")
    sandbox_client.put_customer("minted", cid, {**MINTED_EXAMPLE, "external_id": cid})
    sandbox_client.script("minted", cid, [{"status": 422, "message": "locked"}])
    old = envelope("minted", cid, {**MINTED_EXAMPLE, "lastname": "Older"})
    since = dead_letter(stack, [old])
    newer = envelope("minted", cid, {**MINTED_EXAMPLE, "lastname": "Newer"})
    stack.send([newer])
    stack.wait_outcome(newer["event_id"], "applied")
    return since, old, cid


def test_dry_run_shows_the_plan_and_changes_nothing(
    stack: Stack, sandbox_client: SandboxClient, redis_server: EphemeralRedis
) -> None:
    since, old, _ = superseded_entry(stack, sandbox_client)
    bad = envelope("minted", new_id("MTD"), {**MINTED_EXAMPLE, "gender": "X"})
    gone = missing_batch(2, 0)
    dead_letter(stack, [bad, *gone])

    raw = redis.Redis.from_url(db_url(redis_server, DLQ_DB))
    # kombu's consumer and the worker's journal recovery take these locks now and then on
    # their own (every few seconds); everything else is ours.
    quiet_keys = ["unacked_mutex", stack.rt.keys.journal_lock]
    before = snapshot(raw, ignore=quiet_keys)
    plan = cli(stack.env, "dlq", "replay", "--since", iso(since), "--dry-run", "--json")
    text = cli(stack.env, "dlq", "replay", "--since", iso(since), "--dry-run")
    assert snapshot(raw, ignore=quiet_keys) == before

    result = json_lines(plan.stdout)[0]
    assert result["replay"] == 2
    assert result["groups"] == [{"target": "minted", "reason": "not_found", "count": 2}]
    assert result["superseded"] == [old["event_id"]]
    assert [i["event_id"] for i in result["still_invalid"]] == [bad["event_id"]]
    assert "changes.gender" in result["still_invalid"][0]["error"]
    assert "would replay 2 events" in text.stdout
    assert "would skip 1 superseded" in text.stdout
    assert "1 still invalid" in text.stdout
    # Leave the DLQ as the other tests expect it: only their own entries.
    cli(stack.env, "dlq", "purge", "--since", iso(since), "--yes")


def test_a_replay_killed_half_way_and_run_again_applies_each_event_exactly_once(
    stack: Stack, sandbox_client: SandboxClient
) -> None:
    batch = missing_batch(12, 4)
    started = dead_letter(stack, batch)
    create_customers(sandbox_client, batch)
    args = ("dlq", "replay", "--reason", "not_found", "--since", iso(started), "--yes")

    slow = start_cli(stack.env, *args, "--rate", "4")
    wait_for(lambda: len(stack.in_dlq(started)) <= len(batch) - 3, timeout_s=30)
    slow.send_signal(signal.SIGKILL)
    slow.wait(10)
    left = len(stack.in_dlq(started))
    assert 0 < left < len(batch)  # killed in the middle, not before or after

    again = cli(stack.env, *args)
    assert again.returncode == 0, again.stderr
    assert f"replayed {left} events" in again.stdout
    for e in batch:
        stack.wait_outcome(e["event_id"], "applied")
    assert stack.in_dlq(started) == []
    for e in batch:
        applied = [r for r in sandbox_client.requests(key=e["event_id"]) if r["status"] == 200]
        assert len(applied) == 1
        # Waits (a customer lock still held) are not deliveries; a second message would show
        # as a second applied or a duplicate.
        settled = [o for o in stack.outcomes(e["event_id"]) if o != "deferred"]
        assert settled == ["dead_lettered", "applied"]


def test_an_event_that_fails_again_after_a_replay_keeps_its_history(
    stack: Stack, sandbox_client: SandboxClient
) -> None:
    (e,) = missing_batch(1, 0)
    dead_letter(stack, [e])
    replay = cli(stack.env, "dlq", "replay", e["event_id"], "--yes", "--json")
    assert json_lines(replay.stdout)[0]["replayed"] == 1
    stack.wait_outcome(e["event_id"], "dead_lettered", times=2)  # still unknown: 404 again

    shown = json_lines(cli(stack.env, "dlq", "show", e["event_id"], "--json").stdout)[0]
    assert shown["replays"] == 1
    assert len(shown["history"]) == 1
    past = shown["history"][0]
    assert (past["reason"], past["status"], past["replays"]) == ("not_found", 404, 0)
    assert past["replayed_at"] >= past["dead_lettered_at"]
    assert shown["first_seen_at"] == past["first_seen_at"]
    assert [r["status"] for r in sandbox_client.requests(key=e["event_id"])] == [404, 404]
    cli(stack.env, "dlq", "purge", e["event_id"], "--yes")


def test_a_built_message_is_consumed_and_applied_by_a_real_worker(
    stack: Stack, sandbox_client: SandboxClient
) -> None:
    from custsync.broker.messages import build_message

    cid = new_id("MTD")
    sandbox_client.put_customer("minted", cid, {**MINTED_EXAMPLE, "external_id": cid})
    e = envelope("minted", cid, {**MINTED_EXAMPLE, "lastname": "Pushed"})
    key, payload = build_message(stack.app, e, {"attempts": 0, "replays": 3})
    stack.rt.redis.lpush(key, payload)

    stack.wait_outcome(e["event_id"], "applied")
    assert sandbox_client.get_customer("minted", cid)["lastname"] == "Pushed"  # type: ignore[index]
    assert e["event_id"] in stack.worker.log_text()
    assert MINTED_EXAMPLE["identity_number"] not in stack.worker.log_text()


def test_a_replay_moves_without_judging_and_the_worker_judges_on_arrival(
    stack: Stack, sandbox_client: SandboxClient
) -> None:
    # A still-invalid event, one a newer change superseded, and two the partner now knows.
    since, old, cid = superseded_entry(stack, sandbox_client)
    bad = envelope("minted", new_id("MTD"), {**MINTED_EXAMPLE, "gender": "X"})
    fixed = missing_batch(2, 0)
    dead_letter(stack, [bad, *fixed])
    create_customers(sandbox_client, fixed)

    replay = cli(stack.env, "dlq", "replay", "--since", iso(since), "--yes", "--json")
    assert replay.returncode == 0, replay.stderr
    assert json_lines(replay.stdout)[0]["replayed"] == 4  # all moved; none judged here
    for event in fixed:
        stack.wait_outcome(event["event_id"], "applied")
    stack.wait_outcome(old["event_id"], "superseded")
    stack.wait_outcome(bad["event_id"], "dead_lettered", times=2)
    # Back in the DLQ with today's error and its history: one replay so far.
    assert stack.in_dlq(since) == [bad["event_id"]]
    entry = stack.rt.dlq.get(bad["event_id"])
    assert entry is not None and entry.reason == "invalid" and entry.replays == 1
    assert "changes.gender" in entry.error
    assert (sandbox_client.get_customer("minted", cid) or {})["lastname"] == "Newer"
    cli(stack.env, "dlq", "purge", "--since", iso(since), "--yes")
