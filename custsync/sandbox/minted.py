"""Minted Connect stand-in: ``PATCH /partner/customer/{external_customer_id}``.

Rules are written from the partner's document (docs/partners/minted.md), not from
custsync's schemas.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from custsync.sandbox.digest import DigestAuth, Verdict
from custsync.sandbox.faults import Faults, Interrupt, Reply
from custsync.sandbox.store import Call, Store

TARGET = "minted"
ID_FIELD = "external_id"
REALM = "minted-sandbox"

# The seed's curl example; its scraped email ("[email protected]") is replaced by a real one.
SEED: dict[str, dict[str, Any]] = {
    "MTD0018232": {
        "external_id": "MTD0018232",
        "firstname": "John",
        "middlename": "",
        "lastname": "Due",
        "email": "john.due@example.com",
        "phone": "+905071112233",
        "gender": "M",
        "identity_number": "12345677938",
        "birthdate": "1970-01-31",
    }
}

_FIELDS = (
    "external_id",
    "firstname",
    "middlename",
    "lastname",
    "email",
    "phone",
    "gender",
    "identity_number",
    "birthdate",
)
_REQUIRED = ("firstname", "lastname", "phone", "identity_number")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def show(value: Any) -> str:
    """The offending value, echoed on one line as real partners do."""
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return f"'{text[:80]}'"


def _length(
    errors: dict[str, list[str]], body: dict[str, Any], name: str, low: int, high: int
) -> None:
    value = body.get(name)
    if isinstance(value, str) and not low <= len(value) <= high:
        limit = f"{low} to {high}" if high < 10**6 else f"at least {low}"
        errors.setdefault(name, []).append(f"{name} {show(value)} must be {limit} characters")


def check_body(body: Any) -> dict[str, list[str]]:
    """Field errors by field name; empty when the body follows the seed's rules."""
    if not isinstance(body, dict):
        return {"body": ["body must be a JSON object"]}
    errors: dict[str, list[str]] = {}
    for name, value in body.items():
        if name not in _FIELDS:
            errors[name] = [f"{name} is not an accepted field"]
        elif not isinstance(value, str):
            errors[name] = [f"{name} must be a string, got {show(value)}"]
    for name in _REQUIRED:
        if name not in body:
            errors[name] = [f"{name} is required"]
    text = {k: v for k, v in body.items() if k in _FIELDS and isinstance(v, str)}
    _length(errors, text, "firstname", 3, 40)
    _length(errors, text, "lastname", 3, 40)
    if text.get("middlename"):  # the seed's own example sends "" for it
        _length(errors, text, "middlename", 3, 40)
    _length(errors, text, "identity_number", 3, 10**6)
    _length(errors, text, "external_id", 1, 110)  # the 200 answer's bound on the stored id
    if text.get("phone") == "":
        errors["phone"] = ["phone must not be empty"]
    email = text.get("email")
    if email is not None and not _EMAIL.fullmatch(email):
        errors["email"] = [f"email {show(email)} is not a valid email"]
    gender = text.get("gender")
    if gender is not None and gender not in ("M", "F"):
        errors["gender"] = [f"gender {show(gender)} must be M or F"]
    birthdate = text.get("birthdate")
    if birthdate is not None and not _is_date(birthdate):
        errors["birthdate"] = [f"birthdate {show(birthdate)} must be a date as YYYY-MM-DD"]
    return errors


def _is_date(text: str) -> bool:
    if not _DATE.fullmatch(text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _fullname(record: dict[str, Any]) -> str:
    parts = (record.get("firstname"), record.get("middlename"), record.get("lastname"))
    return " ".join(p for p in parts if p)


def envelope(code: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"success": False, "code": code, "message": message, **extra, "data": None}


def _field_errors(errors: dict[str, list[str]]) -> Reply:
    messages = [m for ms in errors.values() for m in ms]
    more = f" (and {len(messages) - 1} more errors)" if len(messages) > 1 else ""
    return Reply(422, envelope(422, messages[0] + more, errors=errors))


class MintedApi:
    """Digest-authenticated PATCH of one customer, with the seed's field rules."""

    def __init__(
        self, store: Store, faults: Faults, credentials: tuple[str, str], nonce_lifetime_s: float
    ) -> None:
        self._store = store
        self._faults = faults
        self.digest = DigestAuth(REALM, credentials[0], credentials[1], nonce_lifetime_s)

    @staticmethod
    def route(parts: list[str]) -> tuple[str, str | None]:
        """(route name, customer id) for the path segments after the leading '/'."""
        if len(parts) == 3 and parts[0] == "partner" and parts[1] == "customer" and parts[2]:
            return "customer", parts[2]
        return "", None

    def handle(self, call: Call) -> Reply:
        if call.route != "customer" or call.customer_id is None:
            return Reply(404, envelope(404, "Route Not Found"))
        if call.method != "PATCH":
            return Reply(405, envelope(405, "Method Not Allowed"), {"Allow": "PATCH"})
        verdict = self.digest.verify(call.method, call.path, call.headers.get("authorization"))
        if verdict is not Verdict.OK:
            return self._challenge(stale=verdict is Verdict.STALE)
        stop = self._faults.gate(TARGET, call.customer_id)
        if stop is not None:
            return self._render(stop)
        if call.headers.get("x-client-id") is None:  # present but empty means the default, "web"
            return _field_errors({"x-client-id": ["x-client-id header is required"]})
        content_type = call.headers.get("content-type") or ""
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            return Reply(415, envelope(415, f"Content-Type {show(content_type)} is not supported"))
        errors = check_body(call.body) if call.json_ok else {"body": ["body is not valid JSON"]}
        if errors:
            return _field_errors(errors)
        changes = {k: v for k, v in call.body.items() if k != ID_FIELD}
        with self._store.lock:
            table = self._store.table(TARGET)
            stored = table.get(call.customer_id)
            if stored is None:
                return Reply(404, envelope(404, "Record Not Found"))
            record = table[call.customer_id] = {**stored, **changes}
        data = {**record, "fullname": _fullname(record)}
        return Reply(200, {"data": data, "success": True, "code": 0, "message": ""}, applied=True)

    def _challenge(self, *, stale: bool = False) -> Reply:
        headers = {"WWW-Authenticate": self.digest.challenge(stale=stale)}
        return Reply(401, envelope(401, "Unauthorized"), headers)

    def _render(self, stop: Interrupt) -> Reply:
        if stop.reset:
            return Reply(0, reset=True)
        if stop.status == 401:
            return self._challenge()
        if stop.code is not None:  # a 200 that refuses the update
            return Reply(200, envelope(stop.code, stop.message))
        extra: dict[str, Any] = {"errors": {}} if stop.status == 422 else {}
        headers = None
        if stop.retry_after_s is not None:
            headers = {"Retry-After": str(stop.retry_after_s)}
        return Reply(
            stop.status, envelope(stop.status, stop.message, **extra), headers, early=stop.early
        )
