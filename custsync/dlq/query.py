"""Filters over the DLQ, read through the smallest matching index, never a full scan of keys.

A filter's equality parts (target, reason, customer, status) each name an index; the one with
the fewest entries in the time range is walked newest first, and every loaded entry is checked
against the whole filter (so stale index rows and the remaining parts cost nothing extra).
When one index covers the whole filter, a page is a single ZREVRANGEBYSCORE: O(log N + page).

Pages go by a cursor, never an offset: the position (dead-lettered time, entry id) of the last
entry shown. Every index orders its entries the same way, so a position means the same in any
of them, the next page costs no more than the first, and entries that leave meanwhile (a
replay) shift nothing.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from custsync.dlq.entry import DeadLetter
from custsync.dlq.groups import group_id, group_key
from custsync.dlq.store import GROUP, PAIR, DlqStore, pair_value
from custsync.privacy import named_or_pseudonym
from custsync.targets import REGISTRY

_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_time(text: str, now: float) -> float:
    """``2h``, ``30m``, ``1d12h`` (that long ago) or ISO-8601 (no zone: UTC) as epoch seconds."""
    value = text.strip()
    if _DURATION.fullmatch(value):
        return now - sum(float(n) * _UNIT_S[u] for n, u in _PART.findall(value))
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration like 2h, 30m, 1d nor an ISO-8601 time"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@dataclass(frozen=True)
class Filter:
    target: str | None = None
    reason: str | None = None
    customer_id: str | None = None
    status: int | None = None
    since: float | None = None  # dead-lettered at or after (epoch seconds)
    until: float | None = None  # dead-lettered at or before
    grep: str | None = None  # case-insensitive, in the (masked) error message
    group: str | None = None  # a failure group's id (``dlq groups`` shows it)

    def __post_init__(self) -> None:
        # A target that names no partner is stored as its pseudonym: find it by either.
        if self.target is not None and "…" not in self.target:
            object.__setattr__(self, "target", named_or_pseudonym(self.target, REGISTRY))

    def is_empty(self) -> bool:
        return all(getattr(self, f) is None for f in self.__dataclass_fields__)

    def matches(self, entry: DeadLetter) -> bool:
        checks = (
            self.target is None or entry.target == self.target,
            self.reason is None or entry.reason == self.reason,
            self.customer_id is None or entry.customer_id == self.customer_id,
            self.status is None or entry.status == self.status,
            self.since is None or entry.dead_lettered_at >= self.since,
            self.until is None or entry.dead_lettered_at <= self.until,
            self.grep is None or self.grep.lower() in (entry.error or "").lower(),
            self.group is None or group_id(group_key(entry)) == self.group,
        )
        return all(checks)

    @property
    def low(self) -> str:
        return "-inf" if self.since is None else repr(self.since)

    @property
    def high(self) -> str:
        return "+inf" if self.until is None else repr(self.until)


class BadCursor(ValueError):
    """A cursor this server did not hand out (or one cut or edited on the way)."""


@dataclass(frozen=True)
class Position:
    """Where a page ended: the last entry's score (dead-lettered time) and its id. Indexes
    order entries by score, then id, both descending: the next page is what comes after."""

    score: float
    entry_id: str

    def encode(self) -> str:
        """Opaque to clients: URL-safe base64 of a small JSON array."""
        raw = json.dumps([self.score, self.entry_id], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Position:
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            score, entry_id = json.loads(base64.b64decode(padded, altchars=b"-_", validate=True))
        except (binascii.Error, ValueError, TypeError):
            raise BadCursor("cursor: not a next_cursor this server gave out") from None
        if not (_is_number(score) and isinstance(entry_id, str) and entry_id):
            raise BadCursor("cursor: not a next_cursor this server gave out")
        return cls(float(score), entry_id)

    def is_past(self, entry_id: str, score: float) -> bool:
        """True for an index row at or before this position (already shown)."""
        return score > self.score or (score == self.score and entry_id >= self.entry_id)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Page:
    entries: list[DeadLetter]
    more: bool  # at least one more match after this page
    total: int | None  # known when one index answers the whole filter
    next_cursor: str | None = None  # where the next page starts, when there is one


@dataclass(frozen=True)
class Access:
    """How a query reads: walk one index, test the other equality parts by index membership."""

    walk: str  # the index walked, newest first
    probe: tuple[str, ...]  # indexes a candidate must also be in (one ZSCORE each)
    size: int  # entries of the walked index in the time range
    exact: bool  # the walked index alone answers the whole filter


class Query:
    def __init__(self, store: DlqStore, flt: Filter, batch: int = 500) -> None:
        self.store = store
        self.filter = flt
        self.batch = batch

    def _indexes(self) -> list[tuple[str, frozenset[str]]]:
        """Each usable index with the filter parts it answers."""
        f, keys = self.filter, self.store.keys
        out: list[tuple[str, frozenset[str]]] = []
        if f.target is not None and f.reason is not None:
            pair = keys.dlq_by(PAIR, pair_value(f.target, f.reason))
            out.append((pair, frozenset({"target", "reason"})))
        for name in ("customer_id", "status", "target", "reason"):
            value = getattr(f, name)
            if value is not None:
                out.append((keys.dlq_by(name, str(value)), frozenset({name})))
        if f.group is not None:
            out.append((keys.dlq_by(GROUP, f.group), frozenset({"group"})))
        return out

    def access(self) -> Access:
        """Walk the index with the fewest entries in the time range (O(log N) each to size)."""
        if self.filter.group is not None:  # rows for entries stored before the group index
            self.store.ensure_group_rows()
        indexes = self._indexes()
        if not indexes:
            size = self.store.redis.zcount(
                self.store.keys.dlq_all, self.filter.low, self.filter.high
            )
            return Access(self.store.keys.dlq_all, (), int(size), self.filter.grep is None)
        pipe = self.store.redis.pipeline(transaction=False)
        for key, _ in indexes:
            pipe.zcount(key, self.filter.low, self.filter.high)
        sizes = [int(n) for n in pipe.execute()]
        size, (key, covered) = min(zip(sizes, indexes, strict=True), key=lambda p: p[0])
        asked = frozenset(part for _, parts in indexes for part in parts)
        left = asked - covered
        probe: list[str] = []
        for other, parts in indexes:  # the pair first: one probe for two parts
            if parts <= left:
                probe.append(other)
                left -= parts
        return Access(key, tuple(probe), size, covered == asked and self.filter.grep is None)

    def page(self, limit: int, cursor: str | None = None) -> Page:
        """``limit`` matches, newest first, after ``cursor`` (a page's ``next_cursor``);
        O(log N + what is read), however deep. A bad cursor raises ``BadCursor``."""
        after = Position.decode(cursor) if cursor else None
        how = self.access()
        # After a cursor the first row read is usually the cursor's own entry: one more.
        batch = limit + 1 + int(after is not None) if how.exact else max(limit + 2, self.batch)
        found = list(itertools.islice(self._matches_after(how, after, batch), limit + 1))
        shown = found[:limit]
        more = len(found) > limit
        last = Position(shown[-1][1], shown[-1][0].entry_id) if more else None
        return Page(
            entries=[entry for entry, _ in shown],
            more=more,
            total=how.size if how.exact else None,
            next_cursor=last.encode() if last else None,
        )

    def _matches_after(
        self, how: Access, after: Position | None, batch: int
    ) -> Iterator[tuple[DeadLetter, float]]:
        """Matches with their scores, newest first, from just after ``after``."""
        high = self.filter.high
        if after is not None and after.score < float(high):
            high = repr(after.score)
        for rows in _walk_rows(self.store.redis, how.walk, self.filter.low, high, batch):
            scores = {i: score for i, score in rows if after is None or not after.is_past(i, score)}
            ids = self._in_all(list(scores), how.probe)
            for entry_id, raw in zip(ids, self.store.get_raw(ids), strict=True):
                if raw is None:  # left since the index was read
                    continue
                entry = DeadLetter.from_json(raw)
                if how.exact or self.filter.matches(entry):
                    yield entry, scores[entry_id]

    def __iter__(self) -> Iterator[DeadLetter]:
        """Every match, newest first."""
        return self._matches(self.access())

    def oldest_first(self) -> Iterator[DeadLetter]:
        return self._matches(self.access(), oldest_first=True)

    def _matches(self, how: Access, oldest_first: bool = False) -> Iterator[DeadLetter]:
        walk = _walk_up if oldest_first else _walk
        for ids in walk(self.store.redis, how.walk, self.filter.low, self.filter.high, self.batch):
            for entry in self.store.load(self._in_all(ids, how.probe)):
                if self.filter.matches(entry):
                    yield entry

    def _in_all(self, ids: list[str], probe: tuple[str, ...]) -> list[str]:
        """The ids listed in every ``probe`` index: one round trip, no entry loaded."""
        if not probe or not ids:
            return ids
        pipe = self.store.redis.pipeline(transaction=False)
        for key in probe:
            pipe.zmscore(key, ids)  # Redis >= 6.2
        found = pipe.execute()
        return [i for k, i in enumerate(ids) if all(scores[k] is not None for scores in found)]


def select(
    store: DlqStore, flt: Filter, ids: Sequence[str]
) -> tuple[Iterable[DeadLetter], list[str]]:
    """Entries chosen by ids (narrowed by the filter, if any) or by the filter alone, and the
    ids asked for that are not in the DLQ. A filter's entries stream; ids are loaded now."""
    if not ids:
        return Query(store, flt), []
    found: list[DeadLetter] = []
    missing: list[str] = []
    entry_ids: list[str] = []
    for some_id in dict.fromkeys(ids):  # an entry id, or an event id: all of its entries
        resolved = store.resolve(some_id)
        if not resolved:
            missing.append(some_id)
        entry_ids += resolved
    unique = list(dict.fromkeys(entry_ids))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        for raw in store.get_raw(chunk):
            if raw is not None and flt.matches(entry := DeadLetter.from_json(raw)):
                found.append(entry)
    return found, missing


def _walk(redis: Any, key: str, low: str, high: str, batch: int) -> Iterator[list[str]]:
    """Batches of ids, newest first (see ``_walk_rows``)."""
    for rows in _walk_rows(redis, key, low, high, batch):
        yield [member for member, _ in rows]


def _walk_rows(
    redis: Any, key: str, low: str, high: str, batch: int
) -> Iterator[list[tuple[str, float]]]:
    """Batches of (id, score), newest first, by a score cursor: entries that leave meanwhile
    (another replay) do not shift the cursor, as an offset would."""
    top, skip = high, 0  # skip: members at score ``top`` already returned
    while True:
        rows = redis.zrevrangebyscore(key, top, low, start=skip, num=batch, withscores=True)
        if not rows:
            return
        yield rows
        last = rows[-1][1]
        trailing = sum(1 for _, score in rows if score == last)
        if top != "+inf" and last == float(top):
            skip += len(rows)
        else:
            top, skip = repr(last), trailing
        if len(rows) < batch:
            return


def _walk_up(redis: Any, key: str, low: str, high: str, batch: int) -> Iterator[list[str]]:
    """``_walk`` oldest first."""
    bottom, skip = low, 0
    while True:
        rows = redis.zrangebyscore(key, bottom, high, start=skip, num=batch, withscores=True)
        if not rows:
            return
        yield [member for member, _ in rows]
        last = rows[-1][1]
        if bottom != "-inf" and last == float(bottom):
            skip += len(rows)
        else:
            bottom, skip = repr(last), sum(1 for _, score in rows if score == last)
        if len(rows) < batch:
            return
