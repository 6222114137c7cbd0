"""Thread-safe in-memory state: customers per target, the request record, counters.

Stored customer records are never mutated in place (updates replace the dict), so
readers may serialise a record after releasing the lock.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from custsync.sandbox.faults import Reply

TARGETS = ("minted", "vendor")
Record = dict[str, Any]

# Headers kept in the request record; credentials are never kept.
RECORDED_HEADERS = (
    "api-version",
    "x-client-id",
    "accept-language",
    "content-type",
    "idempotency-key",
)


@dataclass(slots=True)
class Call:
    """One request to a partner path, as handlers see it and the record keeps it."""

    target: str
    method: str
    path: str
    route: str  # "customer", "token" or "" for an unknown path
    customer_id: str | None
    headers: dict[str, str | None]  # RECORDED_HEADERS plus "authorization"
    body: Any  # parsed JSON, or None when absent or not JSON
    json_ok: bool
    at: float = field(default_factory=time.time)


@dataclass(slots=True)
class _Stats:
    by_status: Counter[str] = field(default_factory=Counter)
    applied: int = 0
    duplicate_applies: int = 0
    duplicate_keys: list[str] = field(default_factory=list)
    early_requests: int = 0
    tokens_issued: int = 0
    emails: Counter[str] = field(default_factory=Counter)
    applied_keys: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": sum(self.by_status.values()),
            "by_status": dict(self.by_status),
            "applied": self.applied,
            "duplicate_applies": self.duplicate_applies,
            "duplicate_keys": list(self.duplicate_keys),
            "early_requests": self.early_requests,
            "tokens_issued": self.tokens_issued,
            "emails_sent": sum(self.emails.values()),
            "emails_sent_by_customer": dict(self.emails),
        }


def _redact(body: Any) -> Any:
    if isinstance(body, dict) and "password" in body:
        return {**body, "password": "***"}
    return body


def _auth_scheme(value: str | None) -> str | None:
    if not value:
        return None
    scheme = value.split(" ", 1)[0]
    return scheme.capitalize() if scheme.lower() in ("digest", "bearer") else scheme


class Store:
    """Customers, the request record and counters, behind one lock."""

    def __init__(
        self, seed: Mapping[str, Mapping[str, Record]], record_limit: int = 100_000
    ) -> None:
        self.lock = threading.Lock()
        self._seed = {t: dict(seed.get(t, {})) for t in TARGETS}
        self._tables: dict[str, dict[str, Record]] = {t: dict(self._seed[t]) for t in TARGETS}
        self._records: deque[Record] = deque(maxlen=record_limit)
        self._stats = {t: _Stats() for t in TARGETS}
        self._seq = 0  # never reset, so since_seq stays meaningful across resets

    def reset(self) -> None:
        with self.lock:
            self._tables = {t: dict(self._seed[t]) for t in TARGETS}
            self._records.clear()
            self._stats = {t: _Stats() for t in TARGETS}

    def table(self, target: str) -> dict[str, Record]:
        """The live table; hold ``lock`` while reading-then-writing it."""
        return self._tables[target]

    def get(self, target: str, customer_id: str) -> Record | None:
        return self._tables[target].get(customer_id)

    def put(self, target: str, records: Mapping[str, Record]) -> None:
        with self.lock:
            self._tables[target].update(records)

    def all(self, target: str) -> dict[str, Record]:
        with self.lock:
            return dict(self._tables[target])

    def count_email(self, target: str, customer_id: str) -> None:
        """Caller holds ``lock``."""
        self._stats[target].emails[customer_id] += 1

    def move_customer(self, target: str, old: str, new: str) -> None:
        """Caller holds ``lock``; per-customer counters follow a renamed customer."""
        table = self._tables[target]
        table[new] = table.pop(old)
        emails = self._stats[target].emails
        if old in emails:
            emails[new] += emails.pop(old)

    def finish(self, call: Call, reply: Reply) -> None:
        """Record one partner request and count its answer."""
        headers = call.headers
        kept: dict[str, str | None] = {name: headers.get(name) for name in RECORDED_HEADERS}
        kept["auth_scheme"] = _auth_scheme(headers.get("authorization"))
        key = headers.get("idempotency-key")
        status = None if reply.reset else reply.status
        with self.lock:
            self._seq += 1
            self._records.append(
                {
                    "seq": self._seq,
                    "at": call.at,
                    "target": call.target,
                    "method": call.method,
                    "path": call.path,
                    "customer_id": call.customer_id,
                    "idempotency_key": key,
                    "headers": kept,
                    "body": _redact(call.body),
                    "status": status,
                }
            )
            stats = self._stats[call.target]
            stats.by_status["reset" if status is None else str(status)] += 1
            stats.early_requests += reply.early
            stats.tokens_issued += reply.token_issued
            if reply.applied:
                stats.applied += 1
                if key:
                    seen = stats.applied_keys.get(key, 0)
                    stats.applied_keys[key] = seen + 1
                    if seen:
                        stats.duplicate_applies += 1
                        if seen == 1:
                            stats.duplicate_keys.append(key)

    def requests(
        self,
        target: str | None = None,
        key: str | None = None,
        customer_id: str | None = None,
        since_seq: int = 0,
    ) -> list[Record]:
        with self.lock:
            return [
                r
                for r in self._records
                if r["seq"] > since_seq
                and (target is None or r["target"] == target)
                and (key is None or r["idempotency_key"] == key)
                and (customer_id is None or r["customer_id"] == customer_id)
            ]

    def stats(self) -> dict[str, Any]:
        with self.lock:
            per_target = {t: s.as_dict() for t, s in self._stats.items()}
            return {**per_target, "total_requests": sum(s["requests"] for s in per_target.values())}
