"""The failure groups (``dlq groups``, ``GET /v1/dlq/groups``, the console's groups page) from
the group index the store keeps at write time: per group one ZCOUNT and its first and last
entry in the time range, every group in one pipelined round trip, whatever the DLQ holds.

A filter by target, reason, status, group or time is answered from the index; a customer or
a text in the error needs the entries, so those filters read them (``group``). Entries
stored before the group index existed get their rows the first time the groups are asked for
(a one-off backfill, noticed because the groups hold fewer entries than the whole DLQ).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from custsync.dlq.groups import Group, GroupKey, group, largest_first
from custsync.dlq.query import Filter, Query
from custsync.dlq.store import GROUP, DlqStore

SCANNED = ("customer_id", "grep")  # filter parts no group index answers


@dataclass(frozen=True)
class Counted:
    count: int  # entries in the filter's time range
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class Reading:
    ungrouped: int  # entries in the DLQ without a group row
    empty: list[str]  # groups with no entry left at all
    counted: dict[str, Counted]  # the groups asked for


def dlq_groups(store: DlqStore, flt: Filter) -> list[Group]:
    """The groups of the entries ``flt`` selects, largest first."""
    if any(getattr(flt, part) is not None for part in SCANNED):
        return group(Query(store, flt).oldest_first())
    labels = store.group_labels()
    reading = read_groups(store, labels, flt)
    if reading.ungrouped > 0:  # entries stored before the group index: once
        store.backfill_groups()
        labels = store.group_labels()
        reading = read_groups(store, labels, flt)
    forget_empty(store, reading.empty)
    return largest_first(
        Group(*labels[gid], count=c.count, first_seen=c.first_seen, last_seen=c.last_seen, id=gid)
        for gid, c in reading.counted.items()
        if c.count
    )


def wanted(flt: Filter, gid: str, key: GroupKey) -> bool:
    """Whether a group's label passes the filter's group, target, reason and status."""
    target, reason, status, _ = key
    return (
        flt.group in (None, gid)
        and flt.target in (None, target)
        and flt.reason in (None, reason)
        and flt.status in (None, status)
    )


def read_groups(store: DlqStore, labels: dict[str, GroupKey], flt: Filter) -> Reading:
    """Every group's size (for the completeness check) and, for the groups the filter wants,
    count, first and last seen in its time range: one round trip."""
    keys = store.keys
    every = list(labels)
    chosen = [gid for gid in every if wanted(flt, gid, labels[gid])]
    pipe = store.redis.pipeline(transaction=False)
    pipe.zcard(keys.dlq_all)
    for gid in every:
        pipe.zcard(keys.dlq_by(GROUP, gid))
    for gid in chosen:
        index = keys.dlq_by(GROUP, gid)
        pipe.zcount(index, flt.low, flt.high)
        pipe.zrangebyscore(index, flt.low, flt.high, start=0, num=1, withscores=True)
        pipe.zrevrangebyscore(index, flt.high, flt.low, start=0, num=1, withscores=True)
    total, *answers = pipe.execute()
    sizes = [int(n) for n in answers[: len(every)]]
    counts = answers[len(every) :]
    return Reading(
        ungrouped=int(total) - sum(sizes),
        empty=[gid for gid, size in zip(every, sizes, strict=True) if size == 0],
        counted={gid: _counted(counts[3 * i : 3 * i + 3]) for i, gid in enumerate(chosen)},
    )


def _counted(answers: Sequence[Any]) -> Counted:
    """ZCOUNT, then the oldest and the newest row (WITHSCORES) in the range."""
    count, oldest, newest = answers
    return Counted(
        count=int(count),
        first_seen=float(oldest[0][1]) if oldest else 0.0,
        last_seen=float(newest[0][1]) if newest else 0.0,
    )


def forget_empty(store: DlqStore, group_ids: Sequence[str]) -> None:
    """Drop the labels of groups left empty, so the answer costs O(groups with entries).
    Under WATCH: an entry joining the group meanwhile keeps its label."""
    for gid in group_ids:
        index = store.keys.dlq_by(GROUP, gid)

        def drop(pipe: Any, gid: str = gid, index: str = index) -> None:
            if pipe.zcard(index) == 0:
                pipe.multi()
                pipe.hdel(store.keys.dlq_groups, gid)

        store.redis.transaction(drop, index)
