"""Purge: delete chosen entries for good, each with its index rows, atomically."""

from __future__ import annotations

from collections.abc import Sequence

from custsync.dlq.entry import DeadLetter
from custsync.dlq.query import Filter
from custsync.dlq.store import CHANGED, TAKEN, DlqStore


def purge(store: DlqStore, ids: Sequence[str], flt: Filter, batch: int = 500) -> list[DeadLetter]:
    """Delete the entries ``ids`` that still match ``flt``; returns those removed.

    An entry rewritten since it was selected (its event failed again) is re-read and
    removed only if it still matches.
    """
    removed: list[DeadLetter] = []
    for start in range(0, len(ids), batch):
        pending = list(ids[start : start + batch])
        for _ in range(3):  # a few rounds for entries that change under us
            items = [
                (entry, raw)
                for raw in store.get_raw(pending)
                if raw is not None and flt.matches(entry := DeadLetter.from_json(raw))
            ]
            answers = store.take_many(items)
            removed += [entry for entry, answer in answers if answer == TAKEN]
            pending = [entry.entry_id for entry, answer in answers if answer == CHANGED]
            if not pending:
                break
    return removed
