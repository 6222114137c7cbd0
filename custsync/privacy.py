"""Keep personal data out of logs, errors and Sentry (national ids, tax numbers, emails, phones)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

# Field names of both partners that carry personal data.
PERSONAL_FIELDS = frozenset(
    {
        "firstname", "middlename", "lastname", "email", "phone", "identity_number",
        "birthdate", "firstName", "lastName", "companyName", "tckn", "taxNumber",
        "taxOffice", "mobile", "address", "title",
    }
)  # fmt: skip
SECRET_WORDS = ("authorization", "password", "token", "secret", "api_key", "apikey", "dsn")

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DIGITS = re.compile(r"\+?\d[\d\s-]{4,}\d")  # national ids, tax numbers, phones
MASK = "***"


def mask_text(text: str, known: Iterable[str] = ()) -> str:
    """Replace known personal values, then anything shaped like an email or a long number."""
    for value in sorted({v for v in known if len(v) >= 3}, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _EMAIL.sub(MASK, text)
    return _DIGITS.sub(MASK, text)


def personal_values(changes: Any) -> list[str]:
    """The personal values of one event's changes, to mask wherever they are echoed."""
    if not isinstance(changes, Mapping):
        return []
    return [str(v) for k, v in changes.items() if k in PERSONAL_FIELDS and v not in (None, "")]


def mask_id(value: str) -> str:
    """A stable short pseudonym for a customer id, for log lines and labels."""
    digest = hashlib.blake2b(value.encode(), digest_size=4).hexdigest()
    return f"{value[:2]}…{digest}" if len(value) > 4 else f"…{digest}"


def redact_changes(changes: Any) -> Any:
    """A copy of the changes with personal fields masked, for display."""
    if not isinstance(changes, Mapping):
        return changes
    return {
        k: (MASK if k in PERSONAL_FIELDS and v not in (None, "") else v) for k, v in changes.items()
    }
