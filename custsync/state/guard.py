"""The per-event Redis steps, each one atomic script (``state/lua/``).

``preflight`` decides whether an event may go to the partner now (ledger, version guard,
pause and breaker, in-flight lock, shared rate limit, poison counter) and takes the lock;
``after_success`` records the ledger and versions and releases; ``after_failure`` releases
and counts toward the breaker. One round trip each, so two workers can never both pass
the guard for one customer. ``judge`` is the version guard's Python twin, for dry runs and
replay; a test runs both on the same cases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from custsync.schemas.envelope import Event
from custsync.state.keys import Keys
from custsync.state.scripts import Scripts

EVENT_FIELD = "_v"  # the event-level version in the guard's hash
RENAMED_AT = "_renamed_at"  # set on the old code's hash when the customer was renamed


def version_string(event: Event) -> str:
    """``(occurred_at, sequence)`` as a fixed-width string: Lua compares it as text."""
    micros = int(event.occurred_at.timestamp() * 1_000_000)
    return f"{micros:020d}.{event.sequence:010d}"


def guarded_fields(event: Event, field_level: bool, always_sent: frozenset[str]) -> list[str]:
    """The fields the version guard judges one by one (a partial-update partner's)."""
    return [f for f in event.changes if f not in always_sent] if field_level else []


@dataclass(frozen=True)
class Verdict:
    superseded: bool
    stale_fields: frozenset[str] = frozenset()  # fields a newer applied change already wrote


def judge(
    event: Event,
    stored: Mapping[str, str],
    field_level: bool,
    always_sent: frozenset[str] = frozenset(),
) -> Verdict:
    """The version guard of ``preflight.lua``, in Python: for dry runs and replay plans."""
    version = version_string(event)
    if stored.get(RENAMED_AT, "") > version:
        return Verdict(superseded=True)
    if not field_level:
        return Verdict(superseded=stored.get(EVENT_FIELD, "") > version)
    names = guarded_fields(event, field_level, always_sent)
    stale = frozenset(n for n in names if stored.get(f"f:{n}", "") > version)
    return Verdict(superseded=len(names) == len(stale) and bool(stale), stale_fields=stale)


def would_supersede(
    redis: Any, keys: Keys, event: Event, field_level: bool, always_sent: frozenset[str]
) -> Verdict:
    """Read-only: what the guard would decide for ``event`` now."""
    stored = redis.hgetall(keys.version(event.target, event.customer_id))
    return judge(event, stored, field_level, always_sent)


class GateVerdict(StrEnum):
    """What preflight.lua decided."""

    OK = "ok"
    DUPLICATE = "duplicate"
    SUPERSEDED = "superseded"
    PAUSED = "paused"
    PROBING = "probing"
    LOCKED = "locked"
    RATE = "rate"
    POISON = "poison"


class FailureState(StrEnum):
    """What after_failure.lua says of the target after a failed call."""

    CLOSED = "closed"
    OPEN = "open"
    OPENED = "opened"  # this failure opened the breaker
    OWN = "own"  # the customer's own failure: its attempts pay
    SUSPECT = "suspect"  # a repeat failure nobody else's success explains yet


_WAITS = (GateVerdict.PAUSED, GateVerdict.PROBING, GateVerdict.LOCKED, GateVerdict.RATE)


@dataclass(frozen=True)
class Gate:
    """What preflight decided."""

    verdict: GateVerdict
    wait_s: float = 0.0  # for paused/probing/locked/rate: how long; for ok: sleep first
    probe: bool = False
    stale_fields: frozenset[str] = field(default_factory=frozenset)
    detail: str = ""


@dataclass(frozen=True)
class Limits:
    """The knobs preflight needs, per target."""

    lock_ms: int
    rate_per_s: float
    max_sleep_ms: int
    breaker_failures: int
    probe_ms: int
    poison_deliveries: int
    deliveries_ttl_s: int


class StateScripts:
    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = Scripts(redis)

    def preflight(
        self,
        *,
        target: str,
        customer_id: str,
        event_id: str,
        holder: str,
        version: str,
        check_version: bool,
        field_level: bool,
        fields: Sequence[str],
        limits: Limits,
    ) -> Gate:
        k = self.keys
        raw = self.scripts(
            "preflight",
            keys={
                "applied": k.applied(event_id),
                "version": k.version(target, customer_id),
                "inflight": k.inflight(target, customer_id),
                "pause": k.pause(target),
                "breaker": k.breaker(target),
                "probe": k.probe(target),
                "rate": k.rate(target),
                "deliveries": k.deliveries(event_id),
                "counters": k.counters(target),
                "journal": k.journal,
                "journal_body": k.journal_body,
            },
            args={
                "holder": holder,
                "version": version,
                "check_version": int(check_version),
                "field_level": int(field_level),
                "lock_ms": limits.lock_ms,
                "rate_per_s": limits.rate_per_s,
                "max_sleep_ms": limits.max_sleep_ms,
                "breaker_failures": limits.breaker_failures,
                "probe_ms": limits.probe_ms,
                "poison_deliveries": limits.poison_deliveries,
                "deliveries_ttl_s": limits.deliveries_ttl_s,
                "customer_id": customer_id,
                "fields": list(fields),
            },
        )
        verdict = GateVerdict(raw[0])
        if verdict is GateVerdict.OK:
            return Gate(verdict, float(raw[1]) / 1000, bool(int(raw[2])), frozenset(raw[3:]))
        if verdict in _WAITS:
            detail = str(raw[2]) if len(raw) > 2 else ""
            return Gate(verdict, max(0.0, float(raw[1]) / 1000), detail=detail)
        return Gate(verdict, detail=str(raw[1]) if len(raw) > 1 else "")

    def after_success(
        self,
        pipe: Any,
        *,
        target: str,
        customer_id: str,
        new_customer_id: str,
        event_id: str,
        holder: str,
        version: str,
        field_level: bool,
        sent_fields: Sequence[str],
        now: float,
        ledger_ttl_s: int,
        version_ttl_s: int,
    ) -> None:
        k = self.keys
        renamed = new_customer_id != customer_id
        self.scripts(
            "after_success",
            keys={
                "applied": k.applied(event_id),
                "version": k.version(target, customer_id),
                "inflight": k.inflight(target, customer_id),
                "deliveries": k.deliveries(event_id),
                "breaker": k.breaker(target),
                "probe": k.probe(target),
                "counters": k.counters(target),
                "last_success": k.last_success(target),
                "new_version": k.version(target, new_customer_id),
                "journal": k.journal,
                "journal_body": k.journal_body,
                "minute": k.minute(target, int(now // 60)),
            },
            args={
                "holder": holder,
                "version": version,
                "ledger_ttl_s": ledger_ttl_s,
                "now": f"{now:.3f}",
                "field_level": int(field_level),
                "renamed": int(renamed),
                "new_customer_id": new_customer_id,
                "version_ttl_s": version_ttl_s,
                "sent_fields": list(sent_fields),
            },
            client=pipe,
        )

    def after_failure(
        self,
        pipe: Any,
        *,
        target: str,
        customer_id: str,
        event_id: str,
        holder: str,
        breaker: int,
        limits_failures: int,
        cooldown_ms: int,
        cooldown_max_ms: int,
        pause_ms: int = 0,
        pause_reason: str = "",
        first_seen_at: float = 0.0,
    ) -> Any:
        k = self.keys
        return self.scripts(
            "after_failure",
            keys={
                "inflight": k.inflight(target, customer_id),
                "deliveries": k.deliveries(event_id),
                "breaker": k.breaker(target),
                "pause": k.pause(target),
                "probe": k.probe(target),
                "last_success": k.last_success(target),
            },
            args={
                "holder": holder,
                "breaker": breaker,
                "failures": limits_failures,
                "cooldown_ms": cooldown_ms,
                "cooldown_max_ms": cooldown_max_ms,
                "pause_ms": pause_ms,
                "pause_reason": pause_reason,
                "customer_id": customer_id,
                "first_seen_at": f"{first_seen_at:.3f}",
            },
            client=pipe,
        )
