"""The DLQ store as plain code on a real Redis: filters through the indexes agree with a brute
force scan, an entry leaves only through one compare-and-delete, retention trims only the old."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

import pytest

from custsync.dlq.entry import REASONS
from custsync.dlq.query import Filter, Query, parse_time
from custsync.dlq.store import CHANGED, GONE, TAKEN
from custsync.embedded.server import EphemeralRedis
from custsync.runtime import Runtime
from custsync.sandbox import Sandbox
from custsync.settings import load_settings
from tests.dlq_support import Quiet, entry


@pytest.fixture
def quiet(redis_server: EphemeralRedis, sandbox: Sandbox) -> Quiet:
    return Quiet(redis_server, sandbox)


def test_parse_time_takes_durations_and_iso_times() -> None:
    now = 1_800_000_000.0
    assert parse_time("30m", now) == now - 1800
    assert parse_time("1d12h", now) == now - 1.5 * 86_400
    assert parse_time("2026-01-01T00:00:00Z", now) == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert parse_time("2026-01-01T03:00:00+03:00", now) == parse_time("2026-01-01", now)
    for bad in ("yesterday", "2x", "", "1h ago"):
        with pytest.raises(ValueError):
            parse_time(bad, now)


def test_every_filter_agrees_with_a_brute_force_scan(quiet: Quiet) -> None:
    rng = random.Random(7)
    errors = ("timed out", "answered 422: locked", "answered 404: gone")
    entries = [
        entry(
            rng.choice(["minted", "vendor"]),
            rng.choice(REASONS),
            customer_id=f"C-{rng.randrange(12)}",
            status=rng.choice([None, 404, 422, 503]),
            age_s=rng.uniform(0, 7200),
            error=rng.choice(errors),
        )
        for _ in range(300)
    ]
    quiet.rt.dlq.add_many(entries)
    newest_first = sorted(entries, key=lambda e: -e.dead_lettered_at)
    now = time.time()
    filters = [Filter()]
    for _ in range(60):
        filters.append(
            Filter(
                target=rng.choice([None, "minted", "vendor"]),
                reason=rng.choice([None, *REASONS]),
                customer_id=rng.choice([None, f"C-{rng.randrange(12)}"]),
                status=rng.choice([None, 404, 422]),
                since=rng.choice([None, now - 3600]),
                until=rng.choice([None, now - 600]),
                grep=rng.choice([None, "LOCKED"]),
            )
        )
    for flt in filters:
        expected = [e.event_id for e in newest_first if flt.matches(e)]
        query = Query(quiet.rt.dlq, flt, batch=7)  # small batches: cursor edges get used
        assert [e.event_id for e in query] == expected, flt
        assert [e.event_id for e in query.oldest_first()] == expected[::-1], flt
        first = query.page(5)
        assert [e.event_id for e in first.entries] == expected[:5], flt
        assert first.more == (len(expected) > 5)
        assert first.total in (None, len(expected))
        if first.next_cursor:
            second = query.page(5, first.next_cursor)
            assert [e.event_id for e in second.entries] == expected[5:10], flt
            assert second.more == (len(expected) > 10)


def test_an_entry_leaves_only_by_compare_and_delete(quiet: Quiet) -> None:
    store = quiet.rt.dlq
    first, second = entry(), entry()
    store.add_many([first, second])
    (raw_first, raw_second) = store.get_raw([first.entry_id, second.entry_id])
    assert raw_first and raw_second

    assert store.take(first, raw_first) == TAKEN
    assert store.take(first, raw_first) == GONE  # a second replay finds nothing to move
    second.error = "rewritten"
    store.add(second)  # its entry was rewritten since it was read
    assert store.take(second, raw_second) == CHANGED
    assert store.get(second.event_id) is not None
    assert quiet.ids() == {second.event_id}


def test_retention_trims_only_what_is_older_than_the_limit(quiet: Quiet) -> None:
    rt = Runtime(
        load_settings(
            {**quiet.env, "CUSTSYNC_DLQ_RETENTION_S": "3600", "CUSTSYNC_DLQ_MAX_ENTRIES": "2"}
        )
    )
    old = [entry(age_s=7200), entry("vendor", "rejected", status=422, age_s=3700)]
    young = [entry(age_s=3500), entry("vendor", age_s=10)]
    rt.dlq.add_many([*old, *young])

    fresh = rt.dlq.add(entry(age_s=0))  # the pipeline's own write trims, once a minute at most
    assert quiet.ids() == {e.event_id for e in [*young, fresh]}
    for gone in old:
        assert rt.dlq.get(gone.event_id) is None
        for key in quiet.raw.scan_iter("custsync:dlq:idx:*"):
            assert quiet.raw.zscore(key, gone.entry_id) is None

    late = entry(age_s=9000)
    rt.dlq.add_many([late])
    rt.dlq.add(entry(age_s=0))
    assert late.event_id in quiet.ids()  # not on every add: the next trim takes it
    report = rt.dlq.retention.trim()
    assert report.removed == 1
    assert late.event_id not in quiet.ids()
    # Over the count cap, yet nothing younger than the age limit goes: the cap is reported.
    assert (report.count, report.over_cap) == (4, True)


def test_walking_an_index_in_batches_returns_tied_entries_once_each(quiet: Quiet) -> None:
    tied = [entry(customer_id=f"C-{i}", age_s=100) for i in range(20)]
    for e in tied[1:]:
        e.dead_lettered_at = tied[0].dead_lettered_at  # one bulk import, one timestamp
    quiet.rt.dlq.add_many([*tied, entry(age_s=10), entry(age_s=500)])

    for walk in (iter, Query.oldest_first):
        seen = [e.event_id for e in walk(Query(quiet.rt.dlq, Filter(), batch=7))]
        assert len(seen) == 22
        assert set(seen) >= {e.event_id for e in tied}
