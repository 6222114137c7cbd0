"""Where a delivery lands: the Redis writes of each outcome, and its Result.

Every write that ends a delivery also forgets the event's journal entry, in the same
round trip.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from custsync import observability
from custsync.delivery import Delivery
from custsync.dlq.entry import DeadLetter, entry_id_for, event_id_of
from custsync.errors import CustsyncError, InvalidEvent
from custsync.outcomes import Outcome, Result
from custsync.privacy import mask_text, maskable, named_or_pseudonym, personal_values
from custsync.runtime import Runtime
from custsync.schemas.envelope import Event
from custsync.state.journal import Journal
from custsync.state.retryset import schedule
from custsync.targets import REGISTRY
from custsync.targets.base import Target


@dataclass(frozen=True)
class Arrival:
    """One delivery, before its envelope is known to be valid."""

    raw: Any
    delivery: Delivery
    started: float  # perf_counter at the start, for the outcome's duration

    @property
    def event_id(self) -> str:
        return entry_id_for(self.raw)  # an invalid envelope's stable name, for logs

    @property
    def changes(self) -> Any:
        return self.raw.get("changes") if isinstance(self.raw, Mapping) else None

    @property
    def public(self) -> frozenset[str]:
        return frozenset()  # nothing is known about an invalid event's fields

    def field(self, name: str) -> str:
        """target, customer_id or correlation_id, from the raw envelope; a target that names
        no partner by its pseudonym (it is stored, logged and counted under that)."""
        value = self.raw.get(name) if isinstance(self.raw, Mapping) else None
        if not isinstance(value, str):
            return ""
        return named_or_pseudonym(value, REGISTRY) if name == "target" else value


@dataclass(frozen=True)
class Job(Arrival):
    """A valid event on its way to its partner: nothing in it is optional."""

    event: Event
    target: Target
    version: str
    holder: str  # this delivery's token on the customer's in-flight lock

    @property
    def event_id(self) -> str:
        return self.event.event_id

    @property
    def changes(self) -> Any:
        return self.event.changes

    @property
    def public(self) -> frozenset[str]:
        return self.target.public_fields

    def field(self, name: str) -> str:
        return str(getattr(self.event, name) or "")


def mask(text: str, job: Arrival) -> str:
    known = maskable(personal_values(job.changes, job.public), REGISTRY)
    return mask_text(text, known, job.field("customer_id"))


class Landing:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.keys = runtime.keys
        self.redis = runtime.redis
        self.journal = Journal(self.redis, self.keys)

    def result(self, outcome: Outcome, job: Arrival, attempt: int, **kw: Any) -> Result:
        return Result(
            outcome,
            job.event_id,
            job.field("target"),
            job.field("customer_id"),
            attempt=attempt,
            duration_ms=(time.perf_counter() - job.started) * 1000,
            correlation_id=job.field("correlation_id") or None,
            **kw,
        )

    def wait(
        self,
        job: Job,
        outcome: Outcome,
        delivery: Delivery,
        due: float,
        **kw: Any,
    ) -> Result:
        """The event waits in the retry set until ``due``; the journal lets go of it."""
        pipe = self.redis.pipeline(transaction=True)
        schedule(pipe, self.keys, job.event.target, job.raw, delivery, due)
        self.journal.forget(pipe, job.event.event_id)
        pipe.hincrby(self.keys.counters(job.event.target), outcome.value, 1)
        minute = self.keys.minute(job.event.target, int(time.time() // 60))
        pipe.hincrby(minute, outcome.value, 1)
        pipe.expire(minute, 7200)  # the console's chart shows the last hour
        pipe.execute()
        return self.result(outcome, job, delivery.attempts, due_in_s=due - time.time(), **kw)

    def defer(self, job: Job, until: float, *, reason: str, status: int | None = None) -> Result:
        """Wait without using an attempt: a pause, a busy customer, a rate slot."""
        now = time.time()
        # Spread the waiting events so the partner is not flooded the moment it resumes.
        due = max(until, now) + random.uniform(0, 0.05 + 0.25 * max(0.0, until - now))
        return self.wait(job, Outcome.DEFERRED, job.delivery, due, reason=reason, status=status)

    def dead_letter(
        self,
        job: Arrival,
        exc: CustsyncError,
        delivery: Delivery,
        *,
        reason: str | None = None,
        extra: Callable[[Any], None] | None = None,
    ) -> Result:
        reason = reason or str(getattr(exc, "reason", "rejected"))
        status = getattr(exc, "status", None)
        error = mask(str(exc), job)
        now = time.time()
        entry = DeadLetter(
            event_id=job.event.event_id if isinstance(job, Job) else event_id_of(job.raw),
            target=job.field("target"),
            customer_id=job.field("customer_id"),
            reason=reason,
            error_class=type(exc).__name__,
            error=error,
            envelope=job.raw,
            status=status,
            response=getattr(exc, "response_body", None),
            attempts=delivery.attempts,
            first_seen_at=delivery.first_seen_at or now,
            dead_lettered_at=now,
            replays=delivery.replays,
            correlation_id=job.field("correlation_id") or None,
            field_errors=exc.details if isinstance(exc, InvalidEvent) else None,
        )
        counter_key = self.keys.counters(entry.target or "-")

        minute = self.keys.minute(entry.target or "-", int(now // 60))

        def also(pipe: Any) -> None:
            pipe.hincrby(counter_key, f"{Outcome.DEAD_LETTERED.value}:{reason}", 1)
            pipe.hincrby(minute, Outcome.DEAD_LETTERED.value, 1)
            pipe.expire(minute, 7200)  # the console's chart shows the last hour
            self.journal.forget(pipe, entry_id_for(job.raw))
            if extra is not None:
                extra(pipe)

        self.rt.dlq.add(entry, pipe_extra=also)
        observability.report_dead_letter(entry)
        return self.result(
            Outcome.DEAD_LETTERED, job, delivery.attempts, status=status, reason=reason, error=error
        )
