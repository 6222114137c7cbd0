"""DLQ storage in Redis: one JSON record per event id, plus time-ordered indexes.

Every index is a sorted set of event ids scored by dead-lettered time: the whole DLQ, one per
value of target, reason, customer and HTTP status, and one per (target, reason) pair, so the
commonest filter and ``dlq stats`` need no intersection. Small value sets (targets, reasons,
statuses) let stats enumerate their indexes without a scan. An entry leaves the DLQ only
through one Lua script (``take``) that deletes it with its index rows, atomically.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from custsync.dlq.entry import DeadLetter
from custsync.dlq.retention import Retention, RetentionPolicy
from custsync.keys import Keys

INDEXED = ("target", "reason", "customer_id", "status")
VALUED = ("target", "reason", "status")  # few distinct values: kept in sets for stats
PAIR = "target_reason"

TAKEN, GONE, CHANGED = 1, 0, -1  # what ``take`` found

# KEYS: entry, queue list, past, journal, journal body, index sets... ARGV: entry as read,
# event id, message or "", past history or "", past TTL ms, journal body, now.
# Compare-and-delete: an entry rewritten since it was read (the event failed again) is
# left alone, so nobody acts on a stale copy.
_TAKE = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if current ~= ARGV[1] then return -1 end
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[2])
  redis.call('HSET', KEYS[5], ARGV[2], ARGV[6])
  redis.call('LPUSH', KEYS[2], ARGV[3])
end
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[5]) end
redis.call('DEL', KEYS[1])
for i = 6, #KEYS do redis.call('ZREM', KEYS[i], ARGV[2]) end
return 1
"""


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
    return out


class DlqStore:
    def __init__(self, redis: Any, keys: Keys, policy: RetentionPolicy | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.retention = Retention(self, policy or RetentionPolicy())
        self._take = redis.register_script(_TAKE)

    # -- writing ------------------------------------------------------------------------
    def add(self, entry: DeadLetter, pipe_extra: Any = None) -> DeadLetter:
        """Store an entry; an earlier entry (or a replayed one's history) moves into its history.

        Runs as one WATCH/MULTI transaction, so a crash never leaves half an entry.
        ``pipe_extra`` adds more commands (counters) to the same transaction.
        """
        key = self.keys.dlq_entry(entry.event_id)
        past_key = self.keys.dlq_past(entry.event_id)

        def write(pipe: Any) -> None:
            old_raw, past_raw = pipe.mget(key, past_key)
            pipe.multi()
            history: list[dict[str, Any]] = json.loads(past_raw) if past_raw else []
            if old_raw:
                old = DeadLetter.from_json(old_raw)
                history = [*history, *old.history, old.past()]
                self._unindex(pipe, old)
            if past_raw:
                pipe.delete(past_key)
            if history:
                _merge_history(entry, history)
            pipe.set(key, entry.to_json())
            self._index(pipe, entry)
            if pipe_extra is not None:
                pipe_extra(pipe)

        self.redis.transaction(write, key, past_key)
        self.retention.maybe_trim()
        return entry

    def add_many(self, entries: Iterable[DeadLetter], batch: int = 1000) -> int:
        """Bulk load (benchmarks, imports): pipelined, no WATCH, no history merge.

        For ids not in the DLQ yet; an existing id is overwritten and may leave stale index
        rows, which readers skip because they check every entry against the filter.
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
        for entry in entries:
            for index in index_keys(self.keys, entry):
                rows.setdefault(index, {})[entry.event_id] = entry.dead_lettered_at
            for field, value in _index_values(entry):
                if field in VALUED:
                    values.setdefault(field, set()).add(value)
        pipe = self.redis.pipeline(transaction=False)
        pipe.mset({self.keys.dlq_entry(e.event_id): e.to_json() for e in entries})
        for index, members in rows.items():
            pipe.zadd(index, members)
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
        keep_history_ms: int = 0,
        client: Any = None,
    ) -> Any:
        """Delete ``entry`` if it is still stored exactly as ``raw``; TAKEN, GONE or CHANGED.

        With ``message`` (list key, payload) the same script LPUSHes it onto the broker queue.
        With ``keep_history_ms`` the entry's history is kept that long, for the event's next
        entry if it fails again. With ``client`` a pipeline, the answer comes from execute().
        """
        queue, payload = message if message else (self.keys.dlq_entry(entry.event_id), "")
        past = ""
        if keep_history_ms > 0:
            record = {**entry.past(), "replayed_at": time.time()}
            past = json.dumps([*entry.history, record], separators=(",", ":"), default=str)
        return self._take(
            keys=[
                self.keys.dlq_entry(entry.event_id),
                queue,
                self.keys.dlq_past(entry.event_id),
                self.keys.journal,
                self.keys.journal_body,
                *index_keys(self.keys, entry),
            ],
            args=[
                raw,
                entry.event_id,
                payload,
                past,
                max(1, keep_history_ms),
                journal_body,
                f"{time.time():.3f}",
            ],
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
            pipe.zadd(index, {entry.event_id: score})
        for field, value in _index_values(entry):
            if field in VALUED:
                pipe.sadd(self.keys.dlq_values(field), value)

    def _unindex(self, pipe: Any, entry: DeadLetter) -> None:
        for index in index_keys(self.keys, entry):
            pipe.zrem(index, entry.event_id)

    # -- reading ------------------------------------------------------------------------
    def get(self, event_id: str) -> DeadLetter | None:
        raw = self.redis.get(self.keys.dlq_entry(event_id))
        return DeadLetter.from_json(raw) if raw else None

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

    def count_by(self, field: str, value: str) -> int:
        return int(self.redis.zcard(self.keys.dlq_by(field, value)))

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


def _merge_history(entry: DeadLetter, history: list[dict[str, Any]]) -> None:
    entry.history = history
    entry.replays = max([entry.replays, *(int(h.get("replays") or 0) for h in history)])
    firsts = [float(h["first_seen_at"]) for h in history if h.get("first_seen_at")]
    if entry.first_seen_at:
        firsts.append(entry.first_seen_at)
    entry.first_seen_at = min(firsts) if firsts else entry.first_seen_at
