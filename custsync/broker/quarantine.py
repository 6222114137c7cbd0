"""A message that is not a valid task call becomes a DLQ entry with reason ``malformed``.

The entry keeps the raw body (capped), the headers (capped) and what was wrong; its
envelope when one can be found in it, so an operator can still replay that event. Only
once the entry is stored is the message acknowledged: nothing is lost, nothing loops.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from typing import Any

from custsync import observability
from custsync.broker.contract import MALFORMED_RAW, Malformed
from custsync.dlq.entry import DeadLetter, event_id_of
from custsync.outcomes import Outcome, Result
from custsync.privacy import named_or_pseudonym
from custsync.runtime import Runtime
from custsync.targets import REGISTRY

RAW_MAX_BYTES = 64 * 1024  # the DLQ never stores an unbounded payload
_HEADER_MAX_CHARS = 256
_HEADERS_MAX = 64


def raw_bytes(message: Any) -> bytes:
    """The message as it arrived: the Redis transport's wrapper keeps the original."""
    properties = getattr(message, "properties", None) or {}
    kept = properties.get(MALFORMED_RAW) if isinstance(properties, Mapping) else None
    if isinstance(kept, str):
        try:
            return base64.b64decode(kept)
        except (binascii.Error, ValueError):
            return kept.encode()
    body = getattr(message, "body", b"")
    if isinstance(body, str):
        return body.encode("utf-8", "replace")
    return body if isinstance(body, bytes) else repr(body).encode()


def _capped_headers(headers: Any) -> dict[str, Any] | None:
    if not isinstance(headers, Mapping):
        return None
    out: dict[str, Any] = {}
    for key, value in list(headers.items())[:_HEADERS_MAX]:
        text = json.dumps(value, default=repr)
        out[str(key)[:_HEADER_MAX_CHARS]] = (
            value if len(text) <= _HEADER_MAX_CHARS else text[:_HEADER_MAX_CHARS] + "…"
        )
    return out


def salvage_envelope(raw: bytes, max_bytes: int) -> Any:
    """An envelope found in a body of the wrong shape (``[envelope]``, ``{"args": [...]}``)."""
    if len(raw) > max_bytes:
        return None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    for _ in range(3):  # [[envelope, ...], {}, {}] -> [envelope, ...] -> envelope
        if isinstance(body, Mapping):
            if "event_id" in body and "changes" in body:
                return body
            body = body.get("args")
        elif isinstance(body, list) and body:
            body = body[0]
        else:
            return None
    return body if isinstance(body, Mapping) and "changes" in body else None


def quarantine(rt: Runtime, message: Any, problem: Malformed) -> DeadLetter:
    """Store the message as a ``malformed`` DLQ entry and log its outcome; no ack here."""
    raw = raw_bytes(message)
    envelope = salvage_envelope(raw, rt.settings.max_event_bytes)
    target = envelope.get("target") if isinstance(envelope, Mapping) else None
    customer = envelope.get("customer_id") if isinstance(envelope, Mapping) else None
    now = time.time()
    entry = DeadLetter(
        event_id=event_id_of(envelope),
        target=named_or_pseudonym(target, REGISTRY) if isinstance(target, str) else "",
        customer_id=customer[:256] if isinstance(customer, str) else "",
        reason="malformed",
        error_class="MalformedMessage",
        error=f"not a valid task message: {problem}",
        envelope=envelope,
        first_seen_at=now,
        dead_lettered_at=now,
        raw=raw[:RAW_MAX_BYTES].decode("utf-8", "replace"),
        headers=_capped_headers(getattr(message, "headers", None)),
    )
    counter = rt.keys.counters(entry.target or "-")
    rt.dlq.add(entry, pipe_extra=lambda pipe: pipe.hincrby(counter, "dead_lettered:malformed", 1))
    observability.report_dead_letter(entry)
    result = Result(
        Outcome.DEAD_LETTERED,
        entry.label,
        entry.target,
        entry.customer_id,
        reason="malformed",
        error=entry.error,
    )
    result.log()
    observability.record_outcome(result)
    return entry
