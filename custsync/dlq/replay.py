"""Replay: put dead-lettered events back on the queue, safely, resumably, at a chosen rate.

Replay moves; it does not judge: the worker validates every event and checks its version on
arrival anyway, so an event still invalid comes back to the DLQ with today's errors and
one a newer change superseded ends as ``superseded``. ``plan_replay`` (``--dry-run``, the
console's preview) validates and predicts both.

Safety rests on one rule: an entry leaves the DLQ only once its event is on the queue.
With the Redis broker (the default) one Lua script per batch of up to CUSTSYNC_BATCH_MAX
entries deletes them and pushes them as one ``apply_batch`` message
(``DlqStore.move_batch``): every crash point leaves either all undone or all done, and of
two replays racing for one entry only one finds it. Another broker cannot share a script with
Redis, so there a per-entry claim serializes replays, the event is enqueued, then the entry
deleted: a crash between the two re-sends the event on the next replay (at least once; the
applied ledger makes the duplicate harmless).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from redis.exceptions import LockError

from custsync.batch import version_order
from custsync.broker.messages import MessageBuilder, batch_label, item_json
from custsync.dlq.entry import DeadLetter
from custsync.dlq.query import Filter, select
from custsync.dlq.store import CHANGED, GONE, TAKEN, move_answers
from custsync.errors import InvalidEvent
from custsync.privacy import mask_text, personal_values
from custsync.producer import enqueue
from custsync.runtime import Runtime
from custsync.schemas.envelope import Event
from custsync.state.guard import judge as judge_versions
from custsync.state.guard import version_string
from custsync.targets import REGISTRY, public_fields
from custsync.validation import validate_event

CLAIM_LEASE_S = 60.0  # another broker: how long one replay holds an entry it is moving


def _masked(exc: InvalidEvent, entry: DeadLetter) -> str:

    changes = entry.envelope.get("changes") if isinstance(entry.envelope, dict) else None
    known = personal_values(changes, public_fields(entry.target))
    return mask_text(str(exc), known, entry.customer_id)


class Item(NamedTuple):
    """What a plan keeps of an entry: enough to report and to fetch it again."""

    entry_id: str
    event_id: str  # what reports show: the event id, or the entry id when there is none
    target: str
    reason: str
    customer_id: str
    dead_lettered_at: float  # changes whenever the entry is rewritten: our verdict's freshness

    @classmethod
    def of(cls, entry: DeadLetter) -> Item:
        return cls(
            entry.entry_id,
            entry.label,
            entry.target or "-",
            entry.reason,
            entry.customer_id,
            entry.dead_lettered_at,
        )


@dataclass
class Plan:
    replay: list[Item] = field(default_factory=list)  # in the order they will go
    superseded: list[Item] = field(default_factory=list)
    invalid: list[tuple[Item, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # ids asked for that are not in the DLQ

    def groups(self) -> list[tuple[str, str, int]]:
        counts = Counter((i.target, i.reason) for i in self.replay)
        return [(t, r, n) for (t, r), n in sorted(counts.items())]


def plan_replay(rt: Runtime, flt: Filter, ids: Sequence[str], force: bool) -> Plan:
    """Read-only: what a replay would move, skip and leave."""

    entries, missing = select(rt.dlq, flt, ids)
    plan = Plan(missing=missing)
    valid: list[tuple[DeadLetter, Event]] = []
    for entry in entries:
        try:
            valid.append((entry, validate_event(entry.envelope, rt.settings)))
        except InvalidEvent as exc:
            plan.invalid.append((Item.of(entry), _masked(exc, entry)))
    stored = [{}] * len(valid) if force else _versions(rt, [event for _, event in valid])
    order: dict[str, tuple[str, float]] = {}
    for (entry, event), versions in zip(valid, stored, strict=True):
        if (
            not force
            and judge_versions(
                event,
                versions,
                REGISTRY[event.target].field_level,
                REGISTRY[event.target].always_sent,
            ).superseded
        ):
            plan.superseded.append(Item.of(entry))
            continue
        plan.replay.append(Item.of(entry))
        order[entry.entry_id] = (version_string(event), entry.dead_lettered_at)
    # Oldest change first, so a customer's events reach the version guard in order.
    plan.replay.sort(key=lambda i: order[i.entry_id])
    return plan


def plan_moves(rt: Runtime, flt: Filter, ids: Sequence[str]) -> Plan:
    """What a replay moves: every selected entry, a customer's oldest change first; nothing
    is validated here (the worker does it on arrival)."""
    entries, missing = select(rt.dlq, flt, ids)
    plan = Plan(missing=missing)
    order: dict[str, tuple[tuple[float, int], float]] = {}
    for entry in entries:
        plan.replay.append(Item.of(entry))
        order[entry.entry_id] = (version_order(entry.envelope), entry.dead_lettered_at)
    plan.replay.sort(key=lambda i: order[i.entry_id])
    return plan


def _versions(rt: Runtime, events: Sequence[Event], batch: int = 500) -> list[dict[str, str]]:
    """The version guard's hash of each event's customer, a batch per round trip."""
    out: list[dict[str, str]] = []
    for start in range(0, len(events), batch):
        pipe = rt.redis.pipeline(transaction=False)
        for event in events[start : start + batch]:
            pipe.hgetall(rt.keys.version(event.target, event.customer_id))
        out.extend(pipe.execute())
    return out


@dataclass
class Summary:
    replayed: Counter[tuple[str, str]] = field(default_factory=Counter)
    superseded: list[str] = field(default_factory=list)  # left in the DLQ
    invalid: list[str] = field(default_factory=list)  # left in the DLQ
    gone: list[str] = field(default_factory=list)  # already moved (another replay) or purged
    changed: list[str] = field(default_factory=list)  # failed again meanwhile: left for a rerun

    @property
    def total(self) -> int:
        return sum(self.replayed.values())


def uses_atomic_move(rt: Runtime) -> bool:
    """Whether the broker queue lives in the state Redis, so one script can do both."""
    return rt.broker_shares_state_redis


class Replayer:
    def __init__(self, rt: Runtime, app: Any, *, force: bool = False) -> None:
        self.rt = rt
        self.app = app
        self.force = force
        self.atomic = uses_atomic_move(rt)
        self.keep_history_ms = int(rt.dlq.retention.policy.max_age_s * 1000)
        self.summary = Summary()  # read it after an interruption, too

    def run(
        self,
        items: Sequence[Item],
        rate: float | None = None,
        progress: Callable[[int], object] = lambda n: None,
    ) -> Summary:
        """Move the planned items, oldest change first, at most ``rate`` a second."""
        chunk = max(1, min(200, int(rate / 4))) if rate else 200  # ~4 steps a second when paced
        started = time.monotonic()
        for done in range(0, len(items), chunk):
            if rate:
                time.sleep(max(0.0, started + done / rate - time.monotonic()))
            part = items[done : done + chunk]
            self._chunk(part)
            progress(len(part))
        return self.summary

    def _chunk(self, items: Sequence[Item]) -> None:
        ready: list[tuple[DeadLetter, str]] = []
        raws = self.rt.dlq.get_raw([i.entry_id for i in items])
        for item, raw in zip(items, raws, strict=True):
            if raw is None:
                self.summary.gone.append(item.event_id)
                continue
            # Rewritten since the plan or not, it goes: the worker judges it on arrival.
            ready.append((DeadLetter.from_json(raw), raw))
        if ready:
            answers = self._move_atomic(ready) if self.atomic else self._move_claimed(ready)
            self._record(answers)

    def _delivery(self, entry: DeadLetter) -> dict[str, Any]:
        # Delivery's fields, written out: dataclasses.asdict costs more than the rest of a move.
        return {
            "attempts": 0,
            "first_seen_at": time.time(),
            "replays": entry.replays + 1,
            "force": self.force,
        }

    def _move_atomic(self, ready: list[tuple[DeadLetter, str]]) -> list[tuple[DeadLetter, int]]:
        """One script per batch of one queue's entries, all batches in one round trip."""
        builder = MessageBuilder(self.app)
        per_queue: dict[str, list[tuple[DeadLetter, str, str]]] = {}
        for entry, raw in ready:
            item = item_json(entry.envelope, self._delivery(entry))
            per_queue.setdefault(builder.key_for(entry.envelope), []).append((entry, raw, item))
        pipe = self.rt.redis.pipeline(transaction=False)
        sent: list[list[tuple[DeadLetter, str, str]]] = []
        size = self.rt.settings.batch_max
        for key, moves in per_queue.items():
            queue = key[len(builder.prefix) :]
            for start in range(0, len(moves), size):
                part = moves[start : start + size]
                shown = batch_label([entry.envelope for entry, _, _ in part])
                frame = builder.batch_frame(queue, shown)
                self.rt.dlq.move_batch(
                    part, queue=key, frame=frame, keep_history_ms=self.keep_history_ms, client=pipe
                )
                sent.append(part)
        answers: list[tuple[DeadLetter, int]] = []
        for part, answer in zip(sent, pipe.execute(), strict=True):
            codes = move_answers(answer)
            answers += [(entry, code) for (entry, _, _), code in zip(part, codes, strict=True)]
        return answers

    def _move_claimed(self, ready: list[tuple[DeadLetter, str]]) -> list[tuple[DeadLetter, int]]:

        locks = []
        owned: list[tuple[DeadLetter, str]] = []
        answers: list[tuple[DeadLetter, int]] = []
        for entry, raw in ready:
            lock = self.rt.redis.lock(
                self.rt.keys.replay_lock(entry.entry_id), timeout=CLAIM_LEASE_S, blocking=False
            )
            if lock.acquire():
                locks.append(lock)
                owned.append((entry, raw))
            else:
                answers.append((entry, GONE))  # another replay is moving it right now
        try:
            # Re-read under the claim: one that finished moving it meanwhile deleted it.
            current = self.rt.dlq.get_raw([e.entry_id for e, _ in owned])
            still: list[tuple[DeadLetter, str]] = []
            for (entry, raw), now in zip(owned, current, strict=True):
                if now == raw:
                    still.append((entry, raw))
                else:
                    answers.append((entry, GONE if now is None else CHANGED))
            enqueue(((e.envelope, self._delivery(e)) for e, _ in still), self.app)
            answers += self.rt.dlq.take_many(still, keep_history_ms=self.keep_history_ms)
        finally:
            for lock in locks:
                _release(lock)
        return answers

    def _record(self, answers: Iterable[tuple[DeadLetter, int]]) -> None:
        for entry, answer in answers:
            if answer == TAKEN:
                self.summary.replayed[(entry.target or "-", entry.reason)] += 1
            elif answer == CHANGED:
                self.summary.changed.append(entry.label)
            else:
                self.summary.gone.append(entry.label)


def _release(lock: Any) -> None:

    with contextlib.suppress(LockError):  # the lease ran out first: the claim is already free
        lock.release()
