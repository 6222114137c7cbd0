"""``custsync dlq`` commands against a real Redis database no worker reads: what each command
prints, what it leaves in Redis, and what it puts on the queue (which stays there to count)."""

from __future__ import annotations

import json
import signal
import stat
from collections import Counter
from pathlib import Path

import pytest
import redis

from custsync import exitcodes
from custsync.broker.reading import items_in
from custsync.embedded.server import EphemeralRedis
from custsync.privacy import mask_id
from custsync.sandbox import Sandbox
from tests.conftest import db_url, wait_for
from tests.dlq_support import (
    Quiet,
    entry,
    json_lines,
    queued_count,
    queued_event_ids,
    queued_raw,
    start_cli,
)
from tests.events import MINTED_EXAMPLE

BROKER_DB = 13  # "another broker": a second database, so one Lua script cannot span both


@pytest.fixture
def quiet(redis_server: EphemeralRedis, sandbox: Sandbox) -> Quiet:
    return Quiet(redis_server, sandbox)


def test_list_pages_newest_first_and_filters_by_time(quiet: Quiet) -> None:
    entries = [entry(customer_id=f"C-{i}", age_s=10.0 * (i + 1)) for i in range(5)]
    quiet.rt.dlq.add_many(entries)
    ids = [e.event_id for e in entries]  # newest first already

    first = quiet.cli("dlq", "list", "--limit", "2", "--json")
    assert [row["event_id"] for row in json_lines(first.stdout)] == ids[:2]
    cursor = first.stderr.split("next page: --cursor ")[1].split()[0]
    second = quiet.cli("dlq", "list", "--limit", "2", "--cursor", cursor)
    assert [line.split()[0] for line in second.stdout.splitlines()[1:]] == ids[2:4]
    assert "2 entries of 5; next page: --cursor " in second.stderr
    recent = quiet.cli("dlq", "list", "--since", "25s", "--json")
    assert [row["event_id"] for row in json_lines(recent.stdout)] == ids[:2]


def test_stats_count_by_target_and_reason_with_oldest_and_arrivals(quiet: Quiet) -> None:
    rejected = entry(reason="rejected", status=422, age_s=90_000)
    nameless = entry(target="", reason="invalid", status=None, age_s=30)
    quiet.rt.dlq.add_many(
        [
            entry(age_s=10),
            entry(age_s=100),
            entry(age_s=5000),
            entry("vendor", age_s=20),
            entry("vendor", age_s=7200),
            rejected,
            nameless,
        ]
    )

    result = quiet.cli("dlq", "stats", "--json")
    stats = json_lines(result.stdout)[0]
    assert stats["total"] == 7
    assert stats["by_target"] == {
        "minted": {"not_found": 3, "rejected": 1},
        "vendor": {"not_found": 2},
        "-": {"invalid": 1},
    }
    assert stats["by_status"] == {"404": 5, "422": 1}
    assert stats["oldest"]["event_id"] == rejected.event_id
    assert stats["arrivals"] == {"last_hour": 4, "last_24h": 6}
    assert stats["over_cap"] is False
    text = quiet.cli("dlq", "stats").stdout
    assert "7 entries" in text
    assert "minted    not_found           3" in text


def test_purge_needs_a_selection_and_yes_and_prints_what_it_removed(quiet: Quiet) -> None:
    locked = entry(reason="rejected", status=422, error="minted answered 422: Locked")
    kept, other = entry(), entry("vendor")
    quiet.rt.dlq.add_many([locked, kept, other])

    assert quiet.cli("dlq", "purge").returncode == 2
    unconfirmed = quiet.cli("dlq", "purge", "--reason", "rejected")
    assert unconfirmed.returncode == 2
    assert "--yes" in unconfirmed.stderr
    assert quiet.cli("dlq", "purge", "--all", "--reason", "rejected", "--yes").returncode == 2
    assert quiet.ids() == {locked.event_id, kept.event_id, other.event_id}

    by_grep = quiet.cli("dlq", "purge", "--grep", "LOCKED", "--yes")
    assert by_grep.returncode == 0
    assert by_grep.stdout.split() == ["removed", locked.event_id, "minted", "rejected"]
    assert quiet.ids() == {kept.event_id, other.event_id}
    leftovers = [k for k in quiet.raw.scan_iter("custsync:dlq:idx:*") if b"rejected" in k]
    assert leftovers == []  # its index rows went with it

    by_id = quiet.cli("dlq", "purge", kept.event_id, "no-such-id", "--yes", "--json")
    assert [row["event_id"] for row in json_lines(by_id.stdout)] == [kept.event_id]
    assert "not in the DLQ: no-such-id" in by_id.stderr
    assert quiet.ids() == {other.event_id}


def test_export_writes_private_envelopes_that_publish_accepts(quiet: Quiet, tmp_path: Path) -> None:
    missing = [entry(customer_id=f"C-{i}", age_s=100.0 - i) for i in range(3)]
    quiet.rt.dlq.add_many([*missing, entry(reason="rejected", status=422)])
    out = tmp_path / "dlq.ndjson"

    exported = quiet.cli("dlq", "export", "--reason", "not_found", "--show-payload", "-o", str(out))
    assert exported.returncode == 0
    assert "exported 3 envelopes" in exported.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        e.envelope
        for e in missing  # oldest first
    ]
    published = quiet.cli("publish", str(out))
    assert published.returncode == 0, published.stderr
    assert sorted(queued_event_ids(quiet.raw)) == sorted(e.event_id for e in missing)

    full = quiet.cli("dlq", "export", "--entries", "--show-payload", missing[0].event_id)
    (record,) = json_lines(full.stdout)
    assert (record["event_id"], record["reason"], record["status"]) == (
        missing[0].event_id,
        "not_found",
        404,
    )
    assert record["customer_id"] == missing[0].customer_id
    assert "PERSONAL DATA" in quiet.cli("dlq", "export", "--help").stdout
    masked = quiet.cli("dlq", "export", "--reason", "not_found")  # the default: masked entries
    rows = json_lines(masked.stdout)
    assert [row["customer"] for row in rows] == [mask_id(e.customer_id) for e in missing]
    assert all("customer_id" not in row and "C-" not in json.dumps(row) for row in rows)
    assert "exported 3 masked entries" in masked.stderr
    (tmp_path / "masked.ndjson").write_text(masked.stdout)
    refused = quiet.cli("publish", str(tmp_path / "masked.ndjson"))
    assert refused.returncode == exitcodes.INVALID_INPUT  # a masked export is never published
    assert sorted(queued_event_ids(quiet.raw)) == sorted(e.event_id for e in missing)


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("dlq", "list", "--since", "yesterday"), 2, "--since: 'yesterday' is neither"),
        (("dlq", "list", "--reason", "lost"), 2, "--reason 'lost' is not one of"),
        (("dlq", "list", "--status", "abc"), 2, "--status 'abc'"),
        (("dlq", "show", "no-such-id"), 1, "no DLQ entry with event id or entry id 'no-such-id'"),
        (("dlq", "replay", "--reason", "not_found"), 2, "add --yes"),
        (("dlq", "replay"), 2, "nothing selected"),
        (("dlq", "replay", "--all", "--rate", "0", "--yes"), 2, "--rate '0'"),
    ],
)
def test_bad_input_is_one_line_without_a_traceback(
    quiet: Quiet, args: tuple[str, ...], code: int, words: str
) -> None:
    quiet.rt.dlq.add_many([entry()])
    result = quiet.cli(*args)
    assert result.returncode == code
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("custsync: ")
    assert words in result.stderr
    assert result.stdout == ""
    assert quiet.rt.dlq.count() == 1


def test_two_replays_of_one_filter_at_once_enqueue_each_event_once(quiet: Quiet) -> None:
    entries = [entry(customer_id=f"C-{i}") for i in range(120)]
    quiet.rt.dlq.add_many(entries)
    args = ("dlq", "replay", "--reason", "not_found", "--yes", "--rate", "80", "--json")

    racers = [start_cli(quiet.env, *args) for _ in range(2)]
    summaries = []
    for proc in racers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        summaries.append(json_lines(out)[0])

    queued = Counter(queued_event_ids(quiet.raw))
    assert set(queued) == {e.event_id for e in entries}
    assert set(queued.values()) == {1}
    assert sum(s["replayed"] for s in summaries) == len(entries)
    assert quiet.rt.dlq.count() == 0


def test_replay_sends_a_fresh_budget_and_the_replay_count(quiet: Quiet) -> None:
    old = entry(age_s=500)
    old.replays, old.attempts = 2, 8
    quiet.rt.dlq.add_many([old])

    result = quiet.cli("dlq", "replay", old.event_id, "--yes", "--force")
    assert result.returncode == 0, result.stderr
    (raw,) = queued_raw(quiet.raw)
    ((envelope, delivery),) = items_in(raw)  # a batch of one, moved by the replay script
    assert envelope == old.envelope
    assert (delivery["attempts"], delivery["replays"], delivery["force"]) == (0, 3, True)
    assert delivery["first_seen_at"] > old.dead_lettered_at


def test_with_another_broker_replay_claims_each_entry_then_enqueues(
    redis_server: EphemeralRedis, sandbox: Sandbox
) -> None:
    broker = db_url(redis_server, BROKER_DB)
    quiet = Quiet(redis_server, sandbox, CUSTSYNC_BROKER_URL=broker)
    broker_client = redis.Redis.from_url(broker)
    broker_client.flushdb()
    entries = [entry(customer_id=f"C-{i}") for i in range(5)]
    quiet.rt.dlq.add_many(entries)

    result = quiet.cli("dlq", "replay", "--all", "--yes")
    assert result.returncode == 0, result.stderr
    assert sorted(queued_event_ids(broker_client)) == sorted(e.event_id for e in entries)
    assert quiet.rt.dlq.count() == 0
    assert queued_count(quiet.raw) == 0
    assert list(quiet.raw.scan_iter("custsync:replaying:*")) == []  # claims released
    broker_client.flushdb()


def test_ctrl_c_stops_a_replay_cleanly_and_the_same_command_finishes_it(quiet: Quiet) -> None:
    entries = [entry(customer_id=f"C-{i}") for i in range(30)]
    quiet.rt.dlq.add_many(entries)
    args = ("dlq", "replay", "--reason", "not_found", "--yes")

    proc = start_cli(quiet.env, *args, "--rate", "10")
    wait_for(lambda: quiet.rt.dlq.count() <= 27, timeout_s=30)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "run the same command again" in err
    assert "Traceback" not in err
    moved = queued_event_ids(quiet.raw)
    assert 0 < len(moved) < 30
    assert len(moved) + quiet.rt.dlq.count() == 30  # each event in exactly one place

    assert quiet.cli(*args).returncode == 0
    queued = Counter(queued_event_ids(quiet.raw))
    assert set(queued) == {e.event_id for e in entries}
    assert set(queued.values()) == {1}


def test_show_and_purge_by_event_id_see_every_entry_of_that_id(quiet: Quiet) -> None:
    first, second = entry(changes={**MINTED_EXAMPLE, "lastname": "One"}), entry()
    second.event_id = first.event_id  # a producer reused an id for another change
    second.envelope = {**second.envelope, "event_id": first.event_id}
    quiet.rt.dlq.add_many([first, second])

    both = quiet.cli("dlq", "show", first.event_id, "--json")
    shown = json.loads(both.stdout)
    assert isinstance(shown, list)
    assert {e["entry_id"] for e in shown} == {first.entry_id, second.entry_id}
    one = json.loads(quiet.cli("dlq", "show", second.entry_id, "--json").stdout)
    assert one["entry_id"] == second.entry_id and one["envelope"]["changes"]["lastname"] == "***"
    text = quiet.cli("dlq", "show", first.event_id).stdout
    assert text.startswith(f"2 entries with event id {first.event_id}")

    purged = quiet.cli("dlq", "purge", first.event_id, "--yes", "--json")
    assert {row["entry_id"] for row in json_lines(purged.stdout)} == {
        first.entry_id,
        second.entry_id,
    }
    assert quiet.rt.dlq.count() == 0
