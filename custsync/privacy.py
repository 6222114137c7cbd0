"""Keep personal data out of logs, errors and Sentry, by allow-list: a value is shown only
if its field is known not to be personal (each Target declares its public fields)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

SECRET_WORDS = ("authorization", "password", "token", "secret", "api_key", "apikey", "dsn")

# Shapes of personal data in free text (emails; national ids, tax numbers, phones), matched
# after the shapes known not to be personal, which are kept whole: task ids, timestamps and
# durations stay readable ("mask values, not shapes").
_SHAPES = re.compile(
    r"(?P<keep>…[0-9a-f]{8}(?![0-9a-f])|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
    r"|(?<![\d.])\d{1,6}\.\d+(?![\d.]))"
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|\+?\d[\d\s-]{4,}\d",
    re.IGNORECASE,
)
MASK = "***"


def _mask_shape(match: re.Match[str]) -> str:
    return match.group() if match.group("keep") else MASK


def mask_text(text: str, known: Iterable[str] = (), customer_id: Any = None) -> str:
    """The customer id by its pseudonym, known personal values masked, then anything shaped
    like an email or a long number."""
    if isinstance(customer_id, str) and len(customer_id) >= 3:
        text = re.sub(rf"(?<!\w){re.escape(customer_id)}(?!\w)", mask_id(customer_id), text)
    values = sorted({v for v in known if len(v) >= 3}, key=len, reverse=True)
    if values:  # whole values only: an address "test" must not turn "tests/" into "***s/"
        pattern = "|".join(re.escape(v) for v in values)
        text = re.sub(rf"(?<!\w)(?:{pattern})(?!\w)", MASK, text)
    return _SHAPES.sub(_mask_shape, text)


def _texts(value: Any) -> list[str]:
    if value is None or value == "" or isinstance(value, bool):
        return []
    if isinstance(value, Mapping):
        return [t for k, v in value.items() for t in (*_texts(k), *_texts(v))]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _texts(v)]
    return [str(value)]


def personal_values(changes: Any, public: frozenset[str] = frozenset()) -> list[str]:
    """Every value of one event's changes not known to be public (allow-list): what to mask
    wherever it is echoed. Changes that are not an object are masked whole."""
    if not isinstance(changes, Mapping):
        return _texts(changes)
    return [t for k, v in changes.items() if k not in public for t in _texts(v)]


def maskable(known: Iterable[str], kept: Iterable[str]) -> list[str]:
    """The known values to mask, less those inside a word that must stay readable: a first
    name "vendor" must not mask the target's name in every message about it."""
    kept = list(kept)
    return [v for v in known if not any(v in word for word in kept)]


def mask_id(value: str) -> str:
    """A stable short pseudonym for a customer id, for log lines and labels."""
    digest = hashlib.blake2b(value.encode(), digest_size=4).hexdigest()
    return f"{value[:2]}…{digest}" if len(value) > 4 else f"…{digest}"


def named_or_pseudonym(value: str, names: Collection[str]) -> str:
    """A value of a known set (a partner's name) as it is, anything else by its pseudonym:
    a client can put any text where a name belongs."""
    return value if not value or value in names else mask_id(value)


def redact_changes(changes: Any, public: frozenset[str] = frozenset()) -> Any:
    """The changes for display: public fields as they are, every other value masked."""
    if not isinstance(changes, Mapping):
        return MASK if changes not in (None, "") else changes
    return {k: (v if k in public or v in (None, "") else MASK) for k, v in changes.items()}


# Envelope fields known not to be personal (ids and times by contract, README "The event
# envelope"); customer_id is shown as a pseudonym, a target only if it names a partner.
ENVELOPE_PUBLIC = frozenset({"event_id", "occurred_at", "sequence", "source", "correlation_id"})


def redact_envelope(
    envelope: Any, public: frozenset[str] = frozenset(), targets: Collection[str] = ()
) -> Any:
    """An envelope for display by allow-list: unknown fields, free text and ids masked."""
    if not isinstance(envelope, Mapping):
        return MASK
    out: dict[str, Any] = {}
    for key, value in envelope.items():
        if key == "changes":
            out[key] = redact_changes(value, public)
        elif key == "customer_id" and isinstance(value, str):
            out[key] = mask_id(value)
        elif key == "target" and isinstance(value, str):
            out[key] = named_or_pseudonym(value, targets)
        elif key in ENVELOPE_PUBLIC and (value is None or isinstance(value, str | int)):
            out[key] = value
        else:
            out[str(key)] = MASK
    return out
