"""DLQ statistics from index sizes alone: O(targets x reasons), whatever the DLQ holds."""

from __future__ import annotations

import time
from typing import Any

from custsync.dlq.entry import REASONS
from custsync.dlq.store import PAIR, DlqStore, pair_value

NO_TARGET = "-"  # entries whose envelope named no target (invalid)
WINDOWS_S = {"last_hour": 3600, "last_24h": 86_400}


def by_target_reason(store: DlqStore, targets: list[str]) -> dict[str, dict[str, int]]:
    """Counts per target and reason, zeros left out; NO_TARGET holds the rest."""
    keys = store.keys
    pipe = store.redis.pipeline(transaction=False)
    for target in targets:
        for reason in REASONS:
            pipe.zcard(keys.dlq_by(PAIR, pair_value(target, reason)))
    for reason in REASONS:
        pipe.zcard(keys.dlq_by("reason", reason))
    answers = [int(n) for n in pipe.execute()]
    pairs, totals = answers[: len(targets) * len(REASONS)], answers[len(targets) * len(REASONS) :]
    out: dict[str, dict[str, int]] = {}
    for i, target in enumerate(targets):
        row = dict(zip(REASONS, pairs[i * len(REASONS) : (i + 1) * len(REASONS)], strict=True))
        out[target] = {r: n for r, n in row.items() if n}
    rest = {
        reason: total - sum(out[t].get(reason, 0) for t in targets)
        for reason, total in zip(REASONS, totals, strict=True)
    }
    if any(rest.values()):
        out[NO_TARGET] = {r: n for r, n in rest.items() if n}
    return {t: row for t, row in out.items() if row}


def dlq_stats(store: DlqStore, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    keys = store.keys
    statuses = store.values("status")
    pipe = store.redis.pipeline(transaction=False)
    pipe.zcard(keys.dlq_all)
    pipe.zrange(keys.dlq_all, 0, 0, withscores=True)
    pipe.zrevrange(keys.dlq_all, 0, 0, withscores=True)
    for window in WINDOWS_S.values():
        pipe.zcount(keys.dlq_all, now - window, "+inf")
    for status in statuses:
        pipe.zcard(keys.dlq_by("status", status))
    total, oldest, newest, *rest = pipe.execute()
    arrivals = dict(zip(WINDOWS_S, (int(n) for n in rest[: len(WINDOWS_S)]), strict=True))
    by_status = {s: int(n) for s, n in zip(statuses, rest[len(WINDOWS_S) :], strict=True) if int(n)}
    policy = store.retention.policy
    return {
        "total": int(total),
        "by_target": by_target_reason(store, store.values("target")),
        "by_status": by_status,
        "oldest": _point(store, oldest),
        "newest": _point(store, newest),
        # Arrivals still in the DLQ (entries replayed or purged since are not counted).
        "arrivals": arrivals,
        "retention_s": policy.max_age_s,
        "max_entries": policy.max_entries,
        "over_cap": int(total) > policy.max_entries,
    }


def _point(store: DlqStore, rows: list[tuple[str, float]]) -> dict[str, Any] | None:
    if not rows:
        return None
    entry_id, score = rows[0]
    entry = store.get(entry_id)
    event_id = entry.event_id if entry is not None else ""
    return {"entry_id": entry_id, "event_id": event_id, "dead_lettered_at": float(score)}
