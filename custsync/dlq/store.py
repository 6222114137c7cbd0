"""DLQ storage in Redis: one JSON record per failure, keyed by its entry id, plus indexes.

One entry per failure, never per event id alone: two different events that share an id (a
producer's bug) stay two entries, and an id that fails validation never becomes a key.
Every index is a sorted set of entry ids scored by dead-lettered time: the whole DLQ, one
per value of event id, target, reason, customer and HTTP status, and one per (target,
reason) pair, so the commonest filter and ``dlq stats`` need no intersection. Small value
sets (targets, reasons, statuses) let stats enumerate their indexes without a scan. One more
index per failure group (``groups.group_id``), with the group's label in one hash, answers
``dlq groups`` without loading entries. An entry leaves the DLQ only through one Lua script
(``take``) that deletes it with its index rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from custsync.dlq.entry import DeadLetter, entry_id_for
from custsync.dlq.groups import GroupKey, group_id, group_key, group_label, key_of_label
from custsync.dlq.retention import Retention, RetentionPolicy
from custsync.state.keys import Keys
from custsync.state.scripts import Scripts

INDEXED = ("event_id", "target", "reason", "customer_id", "status")
VALUED = ("target", "reason", "status")  # few distinct values: kept in sets for stats
PAIR = "target_reason"
GROUP = "group"  # the failure group (target, reason, status, normalised error) by its id

TAKEN, GONE, CHANGED = 1, 0, -1  # what ``take`` found
_MOVE_ANSWERS = {"1": TAKEN, "0": GONE, "x": CHANGED}


def move_answers(answer: str) -> list[int]:
    """``move_batch``'s answer, one code per entry."""
    return [_MOVE_ANSWERS[c] for c in answer]


def pair_value(target: str, reason: str) -> str:
    return f"{target}:{reason}"


def _index_values(entry: DeadLetter) -> list[tuple[str, str]]:
    return [(f, str(getattr(entry, f))) for f in INDEXED if getattr(entry, f) not in (None, "")]


def index_keys(keys: Keys, entry: DeadLetter) -> list[str]:
    """Every index sorted set that lists this entry."""
    out = [keys.dlq_all]
    out.extend(keys.dlq_by(f, v) for f, v in _index_values(entry))
    if entry.target and entry.reason:
        out.append(keys.dlq_by(PAIR, pair_value(entry.target, entry.reason)))
    out.append(keys.dlq_by(GROUP, group_id(group_key(entry))))
    return out


def group_row(entry: DeadLetter) -> tuple[str, str]:
    """The entry's group id and that group's label, for the group-label hash."""
    key = group_key(entry)
    return group_id(key), group_label(key)


class DlqStore:
    def __init__(self, redis: Any, keys: Keys, policy: RetentionPolicy | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.retention = Retention(self, policy or RetentionPolicy())
        self.scripts = Scripts(redis)

    # -- writing ------------------------------------------------------------------------
    def add(self, entry: DeadLetter, pipe_extra: Any = None) -> DeadLetter:
        """Store a new entry; a replayed event's kept history moves into it.

        Runs as one WATCH/MULTI transaction, so a crash never leaves half an entry.
        ``pipe_extra`` adds more commands (counters) to the same transaction.
        """
        key = self.keys.dlq_entry(entry.entry_id)
        past_key = self.keys.dlq_past(entry.event_id) if entry.event_id else None
        watched = [key] if past_key is None else [key, past_key]

        def write(pipe: Any) -> None:
            found = pipe.mget(watched)  # the entry it replaces (if any), the kept history
            replaced_raw = found[0]
            past_raw = found[1] if past_key is not None else None
            pipe.multi()
            if past_raw:
                _merge_history(entry, json.loads(past_raw))
                pipe.delete(past_key)
            if replaced_raw:
                self._drop_stale_rows(pipe, DeadLetter.from_json(replaced_raw), entry)
            pipe.set(key, entry.to_json())
            self._index(pipe, entry)
            if pipe_extra is not None:
                pipe_extra(pipe)

        self.redis.transaction(write, *watched)
        self.retention.maybe_trim()
        return entry

    def add_many(self, entries: Iterable[DeadLetter], batch: int = 1000) -> int:
        """Bulk load (benchmarks, imports): pipelined, no WATCH, no history merge.

        For new entries; no replay history is merged.
        """
        added = 0
        chunk: list[DeadLetter] = []
        for entry in entries:
            chunk.append(entry)
            if len(chunk) >= batch:
                added += self._write_many(chunk)
                chunk = []
        return added + (self._write_many(chunk) if chunk else 0)

    def _write_many(self, entries: list[DeadLetter]) -> int:
        # One command per index key, not per entry: redis-py's packing is the cost here.
        rows: dict[str, dict[str, float]] = {}
        values: dict[str, set[str]] = {}
        labels = dict(group_row(entry) for entry in entries)
        for entry in entries:
            for index in index_keys(self.keys, entry):
                rows.setdefault(index, {})[entry.entry_id] = entry.dead_lettered_at
            for field, value in _index_values(entry):
                if field in VALUED:
                    values.setdefault(field, set()).add(value)
        pipe = self.redis.pipeline(transaction=False)
        pipe.mset({self.keys.dlq_entry(e.entry_id): e.to_json() for e in entries})
        pipe.hset(self.keys.dlq_groups, mapping=labels)
        # The whole-DLQ index last: a reader meanwhile never sees more entries than group rows.
        for index in sorted(rows, key=lambda name: name == self.keys.dlq_all):
            pipe.zadd(index, rows[index])
        for field, seen in values.items():
            pipe.sadd(self.keys.dlq_values(field), *seen)
        pipe.execute()
        return len(entries)

    def take(
        self,
        entry: DeadLetter,
        raw: str,
        *,
        message: tuple[str, str] | None = None,
        journal_body: str = "",
        journal_event_id: str | None = None,
        keep_history_ms: int = 0,
        client: Any = None,
    ) -> Any:
        """Delete ``entry`` if it is still stored exactly as ``raw``; TAKEN, GONE or CHANGED.

        With ``message`` (list key, payload) the same script LPUSHes it onto the broker queue.
        With ``keep_history_ms`` the entry's history is kept that long, for the event's next
        entry if it fails again. With ``client`` a pipeline, the answer comes from execute().
        """
        queue, payload = message if message else (self.keys.dlq_entry(entry.entry_id), "")
        past = ""
        if keep_history_ms > 0:
            record = {**entry.past(), "replayed_at": time.time()}
            past = json.dumps([*entry.history, record], separators=(",", ":"), default=str)
        return self.scripts(
            "dlq_take",
            keys={
                "entry": self.keys.dlq_entry(entry.entry_id),
                "queue": queue,
                "past": self.keys.dlq_past(entry.event_id or entry.entry_id),
                "journal": self.keys.journal,
                "journal_body": self.keys.journal_body,
                "indexes": index_keys(self.keys, entry),
            },
            args={
                "raw": raw,
                # The journal's name for the message: an edit goes out under its new id.
                "event_id": journal_event_id or entry.event_id or entry_id_for(entry.envelope),
                "message": payload,
                "past": past,
                "past_ttl_ms": max(1, keep_history_ms),
                "journal_body": journal_body,
                "now": f"{time.time():.3f}",
                "entry_id": entry.entry_id,
            },
            client=client,
        )

    def move_batch(
        self,
        moves: Sequence[tuple[DeadLetter, str, str]],
        *,
        queue: str,
        frame: tuple[str, str],
        keep_history_ms: int,
        client: Any = None,
    ) -> Any:
        """Replay ``moves`` (entry, raw as read, batch item JSON) as one ``apply_batch``
        message on ``queue`` in one script: each entry still stored as ``raw`` leaves the DLQ
        and is journaled. Answers one character per entry, "1" taken, "0" gone, "x" changed
        (``move_answers`` reads them); from execute() with a pipeline ``client``."""
        positions: dict[str, int] = {}  # the batch's index keys, each sent once
        entry_keys: list[str] = []
        specs: list[Any] = []
        now = time.time()
        for entry, raw, item in moves:
            mine = [
                positions.setdefault(key, len(positions) + 1)
                for key in index_keys(self.keys, entry)
            ]
            entry_keys += [
                self.keys.dlq_entry(entry.entry_id),
                self.keys.dlq_past(entry.event_id or entry.entry_id),
            ]
            past = ""
            if keep_history_ms > 0:
                record = {**entry.past(), "replayed_at": now}
                past = json.dumps([*entry.history, record], separators=(",", ":"), default=str)
            specs += [
                raw,  # compare-and-delete: a rewritten entry stays for the next run
                entry.event_id or entry_id_for(entry.envelope),
                item,
                past,
                entry.entry_id,
                ",".join(map(str, mine)),
            ]
        return self.scripts(
            "dlq_move",
            keys={
                "queue": queue,
                "journal": self.keys.journal,
                "journal_body": self.keys.journal_body,
                "keys": [*positions, *entry_keys],
            },
            args={
                "head": frame[0],
                "tail": frame[1],
                "now": f"{now:.3f}",
                "past_ttl_ms": max(1, keep_history_ms),
                "n_indexes": len(positions),
                "specs": specs,
            },
            client=client,
        )

    def take_many(
        self, items: Sequence[tuple[DeadLetter, str]], **kw: Any
    ) -> list[tuple[DeadLetter, int]]:
        """``take`` for several entries in one round trip; each stays its own atomic script."""
        pipe = self.redis.pipeline(transaction=False)
        for entry, raw in items:
            self.take(entry, raw, client=pipe, **kw)
        answers = pipe.execute() if items else []
        return [(entry, int(a)) for (entry, _), a in zip(items, answers, strict=True)]

    def _index(self, pipe: Any, entry: DeadLetter) -> None:
        score = entry.dead_lettered_at
        for index in index_keys(self.keys, entry):
            pipe.zadd(index, {entry.entry_id: score})
        for field, value in _index_values(entry):
            if field in VALUED:
                pipe.sadd(self.keys.dlq_values(field), value)
        pipe.hset(self.keys.dlq_groups, *group_row(entry))

    def _drop_stale_rows(self, pipe: Any, replaced: DeadLetter, entry: DeadLetter) -> None:
        """An entry rewritten in place (its group may change): rows only the old one had go,
        so index counts (the groups answer) stay exact."""
        stale = set(index_keys(self.keys, replaced)) - set(index_keys(self.keys, entry))
        for index in stale:
            pipe.zrem(index, entry.entry_id)

    # -- reading ------------------------------------------------------------------------
    def get(self, some_id: str) -> DeadLetter | None:
        """The entry with this entry id, else the newest entry of this event id."""
        raw = self.redis.get(self.keys.dlq_entry(some_id))
        if raw:
            return DeadLetter.from_json(raw)
        newest = self.for_event(some_id, limit=1)
        return newest[0] if newest else None

    def for_event(self, event_id: str, limit: int = 100) -> list[DeadLetter]:
        """Every entry of one event id, newest first (distinct events may share an id)."""
        ids = self.redis.zrevrange(self.keys.dlq_by("event_id", event_id), 0, limit - 1)
        return self.load(ids)

    def resolve(self, some_id: str) -> list[str]:
        """Entry ids for an entry id or an event id, as an operator may type either."""
        if self.redis.exists(self.keys.dlq_entry(some_id)):
            return [some_id]
        return list(self.redis.zrevrange(self.keys.dlq_by("event_id", some_id), 0, -1))

    def get_raw(self, ids: Sequence[str]) -> list[str | None]:
        """The stored JSON of each id (None where gone), in one round trip."""
        if not ids:
            return []
        raws: list[str | None] = self.redis.mget([self.keys.dlq_entry(i) for i in ids])
        return raws

    def past(self, event_id: str) -> list[dict[str, Any]]:
        """History kept for a replayed event that is not (back) in the DLQ."""
        raw = self.redis.get(self.keys.dlq_past(event_id))
        history: list[dict[str, Any]] = json.loads(raw) if raw else []
        return history

    def count(self) -> int:
        return int(self.redis.zcard(self.keys.dlq_all))

    def values(self, field: str) -> list[str]:
        """Values seen for target, reason or status (may include some with no entry left)."""
        return sorted(self.redis.smembers(self.keys.dlq_values(field)))

    def newest(
        self, limit: int = 50, offset: int = 0, index: str | None = None
    ) -> list[DeadLetter]:
        """One page, newest first, from the whole DLQ or one index key."""
        ids = self.redis.zrevrange(index or self.keys.dlq_all, offset, offset + limit - 1)
        return self.load(ids)

    def load(self, ids: Sequence[str]) -> list[DeadLetter]:
        return [DeadLetter.from_json(r) for r in self.get_raw(ids) if r]

    # -- the group index ----------------------------------------------------------------
    def group_labels(self) -> dict[str, GroupKey]:
        """Every group id written so far (some may have no entry left), with its key."""
        labels = self.redis.hgetall(self.keys.dlq_groups)
        return {gid: key_of_label(raw) for gid, raw in labels.items()}

    def ungrouped(self, group_ids: Iterable[str]) -> int:
        """Entries without a group row: the whole DLQ less the sizes of these groups."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.keys.dlq_all)
        for gid in group_ids:
            pipe.zcard(self.keys.dlq_by(GROUP, gid))
        total, *sizes = pipe.execute()
        return int(total) - sum(int(n) for n in sizes)

    def ensure_group_rows(self) -> int:
        """Backfill if some entries (stored before the group index) lack a group row;
        returns how many entries the backfill wrote rows for (0: nothing was missing)."""
        if self.ungrouped(self.group_labels()) <= 0:
            return 0
        return self.backfill_groups()

    def backfill_groups(self, batch: int = 500) -> int:
        """Write every entry's group row (idempotent); returns how many entries it wrote."""
        written, ids = 0, []
        for member, _ in self.redis.zscan_iter(self.keys.dlq_all, count=batch):
            ids.append(member)
            if len(ids) >= batch:
                written, ids = written + self._backfill(ids), []
        return written + (self._backfill(ids) if ids else 0)

    def _backfill(self, ids: list[str]) -> int:
        entry_keys = [self.keys.dlq_entry(i) for i in ids]

        def write(pipe: Any) -> int:
            raws = pipe.mget(entry_keys)
            entries = [DeadLetter.from_json(raw) for raw in raws if raw]
            rows: dict[str, dict[str, float]] = {}
            labels: dict[str, str] = {}
            for entry in entries:
                gid, label = group_row(entry)
                labels[gid] = label
                rows.setdefault(self.keys.dlq_by(GROUP, gid), {})[entry.entry_id] = (
                    entry.dead_lettered_at
                )
            pipe.multi()
            if labels:
                pipe.hset(self.keys.dlq_groups, mapping=labels)
            for index, members in rows.items():
                pipe.zadd(index, members)
            orphans = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
            if orphans:  # their entry is gone: left, they would look ungrouped for ever
                pipe.zrem(self.keys.dlq_all, *orphans)
            return len(entries)

        # Watched: an entry taken (replayed, purged) meanwhile must not get its row back.
        written: int = self.redis.transaction(write, *entry_keys, value_from_callable=True)
        return written


def _merge_history(entry: DeadLetter, history: list[dict[str, Any]]) -> None:
    entry.history = history
    entry.replays = max([entry.replays, *(int(h.get("replays") or 0) for h in history)])
    firsts = [float(h["first_seen_at"]) for h in history if h.get("first_seen_at")]
    if entry.first_seen_at:
        firsts.append(entry.first_seen_at)
    entry.first_seen_at = min(firsts) if firsts else entry.first_seen_at
