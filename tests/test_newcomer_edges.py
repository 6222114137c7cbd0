"""The rough edges a newcomer hit: each message says what is true, in words that fit."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from custsync import exitcodes
from custsync.delivery import Delivery
from custsync.embedded.server import EphemeralRedis
from custsync.privacy import named_or_pseudonym
from custsync.sandbox import Sandbox, SandboxClient
from custsync.targets import REGISTRY
from tests.conftest import WorkerPool, custsync_env, db_url, pipeline_for, wait_for
from tests.dlq_support import Quiet, entry, json_lines, queued_count
from tests.events import MINTED_EXAMPLE, envelope, vendor_changes, vendor_customer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "first-steps.ndjson"
EXAMPLES_DB = 23


@pytest.fixture
def quiet(redis_server: EphemeralRedis, sandbox: Sandbox) -> Quiet:
    return Quiet(redis_server, sandbox)


@pytest.mark.parametrize("verb", ["replay", "purge"])
def test_replay_and_purge_of_an_unknown_id_exit_1_like_show(quiet: Quiet, verb: str) -> None:
    kept = entry()
    quiet.rt.dlq.add_many([kept])
    alone = quiet.cli("dlq", verb, "no-such-id", "--yes")
    assert alone.returncode == exitcodes.FAILURE, alone.stderr
    assert "not in the DLQ" in alone.stdout + alone.stderr
    shown = quiet.cli("dlq", "show", "no-such-id")
    assert shown.returncode == alone.returncode
    both = quiet.cli("dlq", verb, kept.event_id, "no-such-id", "--yes")
    assert both.returncode == exitcodes.FAILURE  # the known one is still handled
    assert quiet.rt.dlq.for_event(kept.event_id) == []
    assert quiet.cli("dlq", verb, "--all", "--yes").returncode == exitcodes.OK


def test_counts_are_singular_or_plural_and_a_targetless_dlq_is_named(quiet: Quiet) -> None:
    targetless = dataclasses.replace(entry(), target=None, reason="malformed", status=None)
    quiet.rt.dlq.add_many([entry(), targetless])
    status = quiet.cli("status").stdout
    assert "DLQ     2 entries" in status
    assert "\nDLQ of no configured target\n  (no target)" in status
    assert status.rstrip().endswith(" malformed 1")
    assert "unconfigured target -" not in status
    quiet.cli("dlq", "purge", "--reason", "malformed", "--yes")
    assert "DLQ     1 entry\n" in quiet.cli("status").stdout
    assert quiet.cli("dlq", "stats").stdout.startswith("1 entry (")


def test_a_target_that_names_no_partner_is_listed_by_its_pseudonym_and_found_by_either(
    quiet: Quiet,
) -> None:
    stored = named_or_pseudonym("crm-x", REGISTRY)  # as the worker stores it
    quiet.rt.dlq.add_many([dataclasses.replace(entry(), target=stored, reason="invalid")])
    listed = json_lines(quiet.cli("dlq", "list", "--json").stdout)
    assert [e["target"] for e in listed] == [stored] and stored != "crm-x"
    for asked in ("crm-x", stored):
        found = json_lines(quiet.cli("dlq", "list", "--json", "--target", asked).stdout)
        assert len(found) == 1, asked
    assert json_lines(quiet.cli("dlq", "list", "--json", "--target", "crm-y").stdout) == []


def test_publish_dry_run_json_says_would_publish_and_a_cut_line_points_at_its_end(
    quiet: Quiet, tmp_path: Path
) -> None:
    good = json.dumps(envelope("minted", "C-1", MINTED_EXAMPLE))
    cut = good[:60]
    path = tmp_path / "events.ndjson"
    path.write_text(f"{good}\n{cut}\n")
    done = quiet.cli("publish", "--dry-run", "--json", str(path))
    summary = json.loads(done.stdout)
    assert summary["would_publish"] == 1 and "published" not in summary
    (problem,) = summary["errors"]
    (message,) = problem["errors"]["_line"]
    assert f"at column {len(cut) + 1}" in message and "truncated" in message
    assert queued_count(quiet.raw) == 0
    text = quiet.cli("publish", "--dry-run", str(path))
    assert "would publish 1 event; 1 invalid line not enqueued" in text.stderr


def test_a_vendor_404_for_a_payment_set_is_told_apart_from_an_unknown_customer(
    direct_env: dict[str, str], sandbox_client: SandboxClient
) -> None:
    pipeline = pipeline_for(direct_env)
    code = vendor_customer(sandbox_client)
    unknown_set = vendor_changes(code, paymentSetId="00000000-0000-4000-8000-00000000dead")
    missing = f"{code}-gone"
    outcomes = [
        pipeline.process(envelope("vendor", cid, changes), Delivery(first_seen_at=time.time()))
        for cid, changes in ((code, unknown_set), (missing, vendor_changes(missing)))
    ]
    assert [(o.outcome, o.reason) for o in outcomes] == [("dead_lettered", "not_found")] * 2
    reference, customer = (pipeline.rt.dlq.for_event(o.event_id)[0].error for o in outcomes)
    assert "paymentSetId or currencyCode" in reference and "define it at the vendor" in reference
    assert "create it there" in customer and "paymentSetId" not in customer
    assert code not in reference + customer  # the customer id by its pseudonym only


def test_the_sandbox_lists_its_customers(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "custsync.cli", "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while not lines or not (lines[-1].startswith("  vendor") or lines[-1] == ""):
            lines.append(proc.stdout.readline())  # "" once it exits
    finally:
        proc.terminate()
        proc.wait(10)
    text = "".join(lines)
    assert "customers it knows" in text
    assert "  minted  MTD0018232\n" in text and "  vendor  501\n" in text


def test_the_example_file_applies_cleanly_against_the_sandbox(
    redis_server: EphemeralRedis, tmp_path: Path
) -> None:
    redis.Redis.from_url(db_url(redis_server, EXAMPLES_DB)).flushdb()
    with Sandbox(port=0) as box:  # its default customers and credentials, as README runs it
        env = custsync_env(redis_server, box, EXAMPLES_DB, **box.env())
        pool = WorkerPool(env, tmp_path, 1).start()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "custsync.cli", "publish", str(EXAMPLES)],
                env={**pool.workers[0].env},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == exitcodes.OK, done.stderr
            events = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
            worker = pool.workers[0]
            terminal = ("applied", "duplicate", "dead_lettered", "superseded")

            def outcome(event_id: str) -> str | None:
                ends = [o["outcome"] for o in worker.outcomes(event_id)]
                return next((o for o in ends if o in terminal), None)

            for event in events:
                wait_for(lambda e=event: outcome(e["event_id"]), timeout_s=30)
                assert outcome(event["event_id"]) == "applied"
            client = SandboxClient(box.url)
            minted = client.get_customer("minted", "MTD0018232")
            vendor = client.get_customer("vendor", "501")
            assert minted is not None and minted["lastname"] == "Doe"
            assert vendor is not None and vendor["phone"] == "5000000001"
            assert vendor["email"] == "vendor.test5@example.org"
            listed = json_lines(
                subprocess.run(
                    [sys.executable, "-m", "custsync.cli", "dlq", "list", "--json"],
                    env={**pool.workers[0].env},
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                ).stdout
            )
            assert listed == []
        finally:
            pool.stop()
