"""Failure groups from the group index on a real Redis: the same answer as grouping every
entry (``group``), for each filter the index answers and after entries leave (replay, purge,
retention, a rewrite); no entry is read to answer; entries stored before the index get
their rows by a one-off backfill; the ``group`` filter selects exactly one group's entries."""

from __future__ import annotations

import base64
import random
import time
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from custsync.dlq.entry import DeadLetter
from custsync.dlq.group_index import dlq_groups
from custsync.dlq.groups import group, group_id, group_key
from custsync.dlq.purge import purge
from custsync.dlq.query import Filter, Query
from custsync.dlq.store import GROUP, TAKEN
from custsync.embedded.server import EphemeralRedis
from custsync.http.app import create_app
from custsync.privacy import mask_id
from custsync.runtime import Runtime
from custsync.sandbox import Sandbox
from custsync.settings import load_settings
from tests.conftest import run_cli
from tests.dlq_support import Quiet, entry, json_lines

GROUPS_DB = 28
OPERATOR, PASSWORD = "olga", "olga-long-password-1"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{OPERATOR}:{PASSWORD}".encode()).decode()}
NOW = time.time()


@pytest.fixture
def quiet(redis_server: EphemeralRedis, sandbox: Sandbox, tmp_path: Path) -> Quiet:
    operators = str(tmp_path / "operators.json")
    return Quiet(redis_server, sandbox, db=GROUPS_DB, CUSTSYNC_OPERATORS_FILE=operators)


def seeded(quiet: Quiet, n: int = 200, seed: int = 3) -> list[DeadLetter]:
    """Entries whose errors differ only in ids, numbers and quoted values (one group each
    way they are written), over two targets, four reasons, three statuses and two days."""
    rng = random.Random(seed)
    errors = (
        "customer '{c}' not found",
        "answered 422: record {n} is locked",
        "timed out after {n} ms",
        "answered 422: field 'email' invalid",
    )
    out = []
    for _ in range(n):
        customer = f"C-{rng.randrange(30):04d}"
        text = rng.choice(errors).format(c=mask_id(customer), n=rng.randrange(10_000, 99_999))
        out.append(
            entry(
                rng.choice(["minted", "vendor"]),
                rng.choice(["not_found", "rejected", "exhausted", "invalid"]),
                customer_id=customer,
                status=rng.choice([None, 404, 422]),
                age_s=rng.uniform(0, 2 * 86_400),
                error=text,
            )
        )
    quiet.rt.dlq.add_many(out)
    return out


def by_scan(entries: list[DeadLetter], flt: Filter) -> list[dict[str, Any]]:
    """What grouping every selected entry gives (the old way)."""
    return [g.as_dict() for g in group(e for e in entries if flt.matches(e))]


def from_index(quiet: Quiet, flt: Filter) -> list[dict[str, Any]]:
    return [g.as_dict() for g in dlq_groups(quiet.rt.dlq, flt)]


def stored(quiet: Quiet) -> list[DeadLetter]:
    return quiet.rt.dlq.load(quiet.rt.redis.zrange(quiet.rt.keys.dlq_all, 0, -1))


def entry_reads(quiet: Quiet) -> int:
    """GET and MGET calls the server has answered so far (how entries are read)."""
    stats = quiet.raw.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("get", "mget"))


def filters_for(entries: list[DeadLetter]) -> list[Filter]:
    some_group = group_id(group_key(entries[0]))
    return [
        Filter(),
        Filter(target="vendor"),
        Filter(reason="rejected"),
        Filter(status=422),
        Filter(target="minted", reason="not_found", status=404),
        Filter(since=NOW - 86_400),
        Filter(until=NOW - 3600, target="minted"),
        Filter(since=NOW - 30 * 3600, until=NOW - 6 * 3600, reason="exhausted"),
        Filter(group=some_group),
        Filter(group=some_group, since=NOW - 86_400),
    ]


def test_groups_from_the_index_equal_a_scan_and_read_no_entry(quiet: Quiet) -> None:
    entries = seeded(quiet)
    quiet.rt.dlq.ensure_group_rows()  # nothing to backfill: every row was written with it
    for flt in filters_for(entries):
        expected = by_scan(entries, flt)
        assert expected, flt
        reads = entry_reads(quiet)
        assert from_index(quiet, flt) == expected, flt
        assert entry_reads(quiet) == reads, f"{flt} read entries"
    assert len({g["error"] for g in by_scan(entries, Filter())}) == 4  # ids, numbers blanked


def test_a_customer_or_a_text_filter_reads_the_entries_and_agrees(quiet: Quiet) -> None:
    entries = seeded(quiet)
    for flt in (Filter(customer_id="C-0007"), Filter(grep="LOCKED", target="minted")):
        assert from_index(quiet, flt) == by_scan(entries, flt) != []


def test_groups_stay_exact_after_replay_purge_retention_and_a_rewrite(quiet: Quiet) -> None:
    store = quiet.rt.dlq
    entries = seeded(quiet)
    old = [entry("vendor", "auth", status=401, error="refused", age_s=40 * 86_400)]
    store.add_many(old)
    replayed = entries[:30]  # ``take`` with a message: as a replay moves an entry
    raws = store.get_raw([e.entry_id for e in replayed])
    for e, raw in zip(replayed, raws, strict=True):
        assert raw is not None
        queued = store.take(e, raw, message=("custsync", "{}"), journal_body="{}")
        assert queued == TAKEN
    flt = Filter(target="minted", reason="rejected")
    purged = purge(store, [e.entry_id for e in entries if flt.matches(e)], flt)
    assert purged
    assert store.retention.trim().removed == 1  # the 40-day-old entry
    rewritten = entries[-1]
    rewritten.error = "a different failure"  # its event failed again: the entry is rewritten
    store.add(rewritten)

    left = stored(quiet)
    assert len(left) == len(entries) - len(replayed) - len(purged)
    for check in filters_for(left):
        assert from_index(quiet, check) == by_scan(left, check), check
    assert all(
        g["target"] != "vendor" or g["reason"] != "auth" for g in from_index(quiet, Filter())
    )


def test_an_emptied_group_is_not_shown_and_its_label_goes(quiet: Quiet) -> None:
    store = quiet.rt.dlq
    lonely = entry("vendor", "auth", status=401, error="credentials refused")
    store.add_many([*seeded(quiet, 20), lonely])
    gid = group_id(group_key(lonely))
    assert any(g["id"] == gid for g in from_index(quiet, Filter()))
    assert purge(store, [lonely.entry_id], Filter())
    assert all(g["id"] != gid for g in from_index(quiet, Filter()))
    assert not quiet.rt.redis.hexists(quiet.rt.keys.dlq_groups, gid)


def _forget_group_rows(quiet: Quiet) -> None:
    """As entries stored before the group index look: no group row, no label."""
    keys = quiet.rt.keys
    quiet.rt.redis.delete(keys.dlq_groups, *quiet.rt.redis.keys(keys.dlq_by(GROUP, "*")))


def test_entries_stored_before_the_group_index_are_backfilled_once(quiet: Quiet) -> None:
    store = quiet.rt.dlq
    entries = seeded(quiet)
    _forget_group_rows(quiet)
    quiet.rt.redis.zadd(quiet.rt.keys.dlq_all, {"gone-long-ago": NOW - 10})  # an orphan row
    assert store.ungrouped(store.group_labels()) == len(entries) + 1

    assert from_index(quiet, Filter(target="minted")) == by_scan(entries, Filter(target="minted"))
    assert store.ungrouped(store.group_labels()) == 0  # the orphan row went too
    reads = entry_reads(quiet)
    assert from_index(quiet, Filter()) == by_scan(entries, Filter())
    assert entry_reads(quiet) == reads  # once: the next answer reads no entry


def test_the_group_filter_backfills_and_selects_exactly_one_group(quiet: Quiet) -> None:
    store = quiet.rt.dlq
    entries = seeded(quiet)
    # Same target, reason and status, another error: a target/reason/status filter takes both.
    twins = [
        entry("minted", "rejected", customer_id=f"C-9{i}", status=422, error=f"rule {i}999 failed")
        for i in range(3)
    ]
    others = [entry("minted", "rejected", status=422, error="answered 422: quota")]
    store.add_many([*twins, *others])
    _forget_group_rows(quiet)
    gid = group_id(group_key(twins[0]))
    chosen = {e.entry_id for e in twins}

    assert {e.entry_id for e in Query(store, Filter(group=gid))} == chosen
    page = Query(store, Filter(group=gid)).page(2)
    rest = Query(store, Filter(group=gid)).page(2, page.next_cursor)
    assert {e.entry_id for e in [*page.entries, *rest.entries]} == chosen
    assert (page.total, rest.next_cursor) == (3, None)
    narrowed = Query(store, Filter(group=gid, customer_id="C-91"))  # walk one, probe the other
    assert [e.entry_id for e in narrowed] == [twins[1].entry_id]
    assert entries  # the rest of the DLQ is still there to not be chosen


@pytest.fixture
def client(quiet: Quiet) -> FlaskClient:
    added = run_cli(
        quiet.env, "operators", "add", OPERATOR, "--role", "operator", stdin=f"{PASSWORD}\n" * 2
    )
    assert added.returncode == 0, added.stderr
    return create_app(Runtime(load_settings(quiet.env)), secure_cookies=False).test_client()


def test_the_api_lists_replays_and_purges_exactly_a_group(
    quiet: Quiet, client: FlaskClient
) -> None:
    entries = seeded(quiet)
    groups = client.get("/v1/dlq/groups?target=vendor", headers=AUTH).get_json()["groups"]
    assert groups == by_scan(entries, Filter(target="vendor"))
    chosen = groups[1]
    members = {e.entry_id for e in entries if group_id(group_key(e)) == chosen["id"]}
    assert len(members) == chosen["count"]

    listed = client.get(f"/v1/dlq?group={chosen['id']}&limit=500", headers=AUTH).get_json()
    assert {row["entry_id"] for row in listed["entries"]} == members
    assert listed["total"] == len(members)
    dry = client.post(
        "/v1/dlq/replay", json={"filter": {"group": chosen["id"]}, "dry_run": True}, headers=AUTH
    ).get_json()
    assert dry["replay"] + dry["superseded"] + dry["still_invalid"] == len(members)
    purged = client.post("/v1/dlq/purge", json={"filter": {"group": chosen["id"]}}, headers=AUTH)
    assert purged.get_json()["purged"] == len(members)
    assert {e.entry_id for e in stored(quiet)} == {e.entry_id for e in entries} - members

    bad = client.get("/v1/dlq?group=C-0001", headers=AUTH)
    assert bad.status_code == 422 and "group" in bad.get_json()["errors"]["query"]


def test_group_labels_hold_no_customer_id_or_pseudonym(quiet: Quiet, client: FlaskClient) -> None:
    entries = seeded(quiet, 60)
    labels = str(quiet.rt.redis.hgetall(quiet.rt.keys.dlq_groups))
    answer = client.get("/v1/dlq/groups", headers=AUTH).get_data(as_text=True)
    for e in entries:
        for text in (e.customer_id, mask_id(e.customer_id)):
            assert text not in labels and text not in answer


def test_the_console_and_the_cli_show_group_ids_that_select_the_group(
    quiet: Quiet, client: FlaskClient
) -> None:
    entries = seeded(quiet, 60)
    top = dlq_groups(quiet.rt.dlq, Filter())[0]
    client.get("/console/login")  # the session key comes from Redis on first use
    with client.session_transaction() as session:
        session["who"], session["role"] = OPERATOR, "operator"
    page = client.get("/console/groups").get_data(as_text=True)
    assert f'<input type="hidden" name="group" value="{top.id}">' in page  # replay: the group
    assert f"/console/dlq?group={top.id}" in page
    rows = client.get(f"/console/dlq?group={top.id}").get_data(as_text=True)
    members = [e for e in entries if group_id(group_key(e)) == top.id]
    assert rows.count('href="/console/dlq/') == len(members) == top.count

    text = quiet.cli("dlq", "groups").stdout
    assert top.id in text.splitlines()[1]
    listed = quiet.cli("dlq", "list", "--group", top.id, "--limit", "500", "--json")
    assert {r["entry_id"] for r in json_lines(listed.stdout)} == {e.entry_id for e in members}
    bad = quiet.cli("dlq", "list", "--group", "nope")
    assert bad.returncode == 2 and "--group" in bad.stderr
