"""The DLQ's operator answers at 100k entries: cursor pages and failure groups.

Loads 100,000 entries (``DlqStore.add_many``) into a Redis of its own: six failure groups
over two targets, 25,000 customers, a week of dead-lettered times, errors that differ per
entry only in what ``normalise`` blanks. Then times, in-process, what ``GET /v1/dlq`` and
``GET /v1/dlq/groups`` (and the console pages) call: a page of 50 (``Query.page`` and each
row's summary) unfiltered, by target+reason, after following the cursor 20 times, by
customer; the groups (``dlq_groups`` and each group as a dict) unfiltered and by target.

Each is a p50 and a max over the repetitions, in ms against the 200 ms budget (ratio
measured ÷ budget, <= 1 is within it; the notes give budget ÷ measured). Once each, for the
record: the groups by reading every entry (as before the group index) and the one-off
backfill of the group index for entries stored before it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from bench.common import (
    BenchError,
    Figure,
    Report,
    custsync_env,
    median,
    minted_changes,
    start_redis,
)
from custsync.dlq.entry import DeadLetter
from custsync.privacy import mask_id

SIZES = {True: 5_000, False: 100_000}
REPEAT = {True: 5, False: 20}
CUSTOMERS = {True: 1_250, False: 25_000}
BUDGET_MS = 200.0
PAGE = 50
DEPTH = 20  # cursors followed before the deep page
SPREAD_S = 7 * 86_400.0

# (target, reason, status, error): the {…} parts vary per entry and normalise away.
GROUPS = (
    ("minted", "not_found", 404, "minted answered 404: customer {customer} not found"),
    ("minted", "rejected", 422, "minted answered 422: field 'email' invalid ({request})"),
    ("minted", "exhausted", 503, "minted answered 503 after 8 attempts, last {request}"),
    ("vendor", "rejected", 422, "vendor answered 422: taxOffice '{office}' unknown"),
    ("vendor", "auth", 401, "vendor refused the credentials (token {request})"),
    ("vendor", "exhausted", None, "vendor timed out after {millis} ms"),
)


def entries(count: int, customers: int, now: float) -> Iterator[DeadLetter]:
    """Newest last, one group after another, each customer in several groups."""
    for i in range(count):
        target, reason, status, error = GROUPS[i % len(GROUPS)]
        customer = f"C-pg-{i % customers:06d}"
        event_id = f"ev-pg-{i:07d}"
        text = error.format(
            customer=mask_id(customer),  # as the pipeline masks it
            request=f"req-{i:08d}",
            office=f"Office{i % 97}",
            millis=1000 + i % 9000,
        )
        yield DeadLetter(
            event_id=event_id,
            target=target,
            customer_id=customer,
            reason=reason,
            error_class="Rejected",
            error=text,
            envelope={
                "event_id": event_id,
                "target": target,
                "customer_id": customer,
                "occurred_at": "2026-01-01T00:00:00+00:00",
                "changes": minted_changes(i),
            },
            status=status,
            response=json.dumps({"success": False, "code": status}),
            attempts=1,
            first_seen_at=now - SPREAD_S + i * SPREAD_S / count - 60,
            dead_lettered_at=now - SPREAD_S + i * SPREAD_S / count,
        )


def timings_ms(func: Callable[[], Any], repeat: int) -> list[float]:
    func()  # warm: the script cache, the connection, the first page of Redis' memory
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def run(workdir: Path, *, quick: bool) -> tuple[Report, str]:
    from custsync.dlq.group_index import dlq_groups
    from custsync.dlq.groups import group
    from custsync.dlq.query import Filter, Query
    from custsync.dlq.store import GROUP
    from custsync.runtime import Runtime
    from custsync.settings import load_settings

    n, repeat = SIZES[quick], REPEAT[quick]
    report = Report("dlq_pages", quick, params={"entries": n, "repeat": repeat, "page": PAGE})
    with contextlib.ExitStack() as stack:
        server = start_redis(workdir, stack)
        client = redis.Redis.from_url(server.url)
        version = str(client.info("server")["redis_version"])
        rt = Runtime(load_settings(custsync_env(server.url, "http://127.0.0.1:9")))
        store = rt.dlq
        t0 = time.perf_counter()
        store.add_many(entries(n, CUSTOMERS[quick], time.time()))
        report.details["fill_s"] = time.perf_counter() - t0
        if store.count() != n:
            raise BenchError(f"DLQ holds {store.count()} entries, expected {n}")

        def page(flt: Filter, cursor: str | None = None) -> Callable[[], Any]:
            def answer() -> Any:  # what GET /v1/dlq does with the page
                found = Query(store, flt).page(PAGE, cursor)
                return [e.summary() for e in found.entries], found.next_cursor

            return answer

        def groups(flt: Filter) -> Callable[[], Any]:
            return lambda: [g.as_dict() for g in dlq_groups(store, flt)]

        deep = None
        for _ in range(DEPTH):
            deep = Query(store, Filter()).page(PAGE, deep).next_cursor
        if deep is None:
            raise BenchError(f"{n} entries hold fewer than {DEPTH + 1} pages")
        one_customer = Filter(customer_id=f"C-pg-{7:06d}")
        cases = {
            "page, unfiltered": page(Filter()),
            "page, target+reason": page(Filter(target="minted", reason="rejected")),
            f"page {DEPTH + 1} (cursor followed {DEPTH} times)": page(Filter(), deep),
            "page, one customer": page(one_customer),
            "groups, unfiltered": groups(Filter()),
            "groups, one target": groups(Filter(target="vendor")),
        }
        if len(dlq_groups(store, Filter())) != len(GROUPS):
            raise BenchError(f"expected {len(GROUPS)} groups: normalise changed?")
        for name, func in cases.items():
            _measure(report, name, timings_ms(func, repeat))

        t0 = time.perf_counter()
        scanned = group(Query(store, Filter()).oldest_first())
        report.details["groups by reading every entry (before), ms"] = (
            time.perf_counter() - t0
        ) * 1000
        client.delete(rt.keys.dlq_groups, *client.keys(rt.keys.dlq_by(GROUP, "*")))
        t0 = time.perf_counter()
        store.ensure_group_rows()
        report.details["one-off backfill of the group index, s"] = time.perf_counter() - t0
        if [g.as_dict() for g in dlq_groups(store, Filter())] != [g.as_dict() for g in scanned]:
            raise BenchError("the groups from the index differ from the groups by reading")
    return report, version


def _measure(report: Report, name: str, times: list[float]) -> None:
    p50, worst = median(times), max(times)
    for stat, value in (("p50", p50), ("max", worst)):
        report.add(Figure.of(f"{name}, {stat}", value, "ms", BUDGET_MS, "budget", high=1.0))
    headroom = {"p50": BUDGET_MS / p50, "max": BUDGET_MS / worst}
    report.details[name] = {"p50_ms": p50, "max_ms": worst, "budget_over_measured": headroom}
    report.notes.append(
        f"{name}: budget ÷ measured {headroom['p50']:.0f} (p50), {headroom['max']:.0f} (max)"
    )
