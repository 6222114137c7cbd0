"""DLQ retention: entries older than the age limit are trimmed as part of normal work.

The age limit is a promise: nothing younger is ever trimmed. The count limit is therefore a
soft cap: above it the worker logs a warning at each trim and ``dlq stats`` / ``status`` flag
the DLQ as over its cap, so an operator purges or replays; a failure is never dropped silently.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from custsync.dlq.entry import DeadLetter

if TYPE_CHECKING:
    from custsync.dlq.store import DlqStore
    from custsync.settings import Settings

log = logging.getLogger("custsync.dlq")


@dataclass(frozen=True)
class RetentionPolicy:
    max_age_s: float = 30 * 86_400.0
    max_entries: int = 1_000_000
    interval_s: float = 60.0  # one trim per process per minute keeps add() cheap
    batch: int = 500
    max_batches: int = 20  # bounds the work one add() can inherit; the rest waits a minute

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(max_age_s=settings.dlq_retention_s, max_entries=settings.dlq_max_entries)


@dataclass(frozen=True)
class TrimReport:
    removed: int
    count: int
    over_cap: bool


class Retention:
    def __init__(self, store: DlqStore, policy: RetentionPolicy) -> None:
        self.store = store
        self.policy = policy
        self._next_at = 0.0  # monotonic; a race between threads only means one extra trim

    def maybe_trim(self) -> TrimReport | None:
        """Trim if this process has not for ``interval_s``; never raises into the caller."""
        now = time.monotonic()
        if now < self._next_at:
            return None
        self._next_at = now + self.policy.interval_s
        try:
            return self.trim()
        except Exception:  # the entry itself is stored; a failed trim is retried next time
            log.warning("DLQ retention trim failed", exc_info=True)
            return None

    def trim(self, now: float | None = None) -> TrimReport:
        """Remove entries dead-lettered strictly before ``now - max_age_s``."""
        cutoff = (time.time() if now is None else now) - self.policy.max_age_s
        redis, keys = self.store.redis, self.store.keys
        removed = 0
        for _ in range(self.policy.max_batches):
            ids = redis.zrangebyscore(keys.dlq_all, "-inf", f"({cutoff}", 0, self.policy.batch)
            if not ids:
                break
            removed += self._remove(ids)
            if len(ids) < self.policy.batch:
                break
        count = self.store.count()
        over = count > self.policy.max_entries
        if over:
            log.warning(
                "the DLQ holds %d entries, over CUSTSYNC_DLQ_MAX_ENTRIES=%d; entries younger "
                "than CUSTSYNC_DLQ_RETENTION_S are kept: replay or purge them",
                count,
                self.policy.max_entries,
            )
        return TrimReport(removed=removed, count=count, over_cap=over)

    def _remove(self, ids: list[str]) -> int:
        raws = self.store.get_raw(ids)
        orphans = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
        if orphans:  # index rows whose entry is gone: nothing else refers to them
            self.store.redis.zrem(self.store.keys.dlq_all, *orphans)
        items = [(DeadLetter.from_json(raw), raw) for raw in raws if raw is not None]
        # Compare-and-delete: an entry rewritten meanwhile is young again and stays.
        taken = self.store.take_many(items)
        return len(orphans) + sum(1 for _, answer in taken if answer == 1)
