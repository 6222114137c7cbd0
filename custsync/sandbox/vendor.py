"""Vendor API stand-in: ``POST /vendor/auth/token`` and ``PUT /vendor/customer/{code}``.

Rules are written from the partner's document (docs/partners/vendor.md); the token endpoint
follows what we assumed there, since the document's authentication chapter is missing.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from typing import Any

from custsync.sandbox.faults import Faults, Interrupt, Reply
from custsync.sandbox.minted import show
from custsync.sandbox.store import Call, Store

TARGET = "vendor"
ID_FIELD = "code"
DEFAULT_PAYMENT_SET = "504978bf-bebd-40c5-89aa-b76f3a20341c"
CURRENCIES = frozenset({"TRY", "USD", "EUR", "GBP"})

# The seed's example body minus sendMail (an action, not a field); its scraped email replaced.
SEED: dict[str, dict[str, Any]] = {
    "501": {
        "code": "501",
        "erpCode": "501",
        "phone": "5000000000",
        "countryCode": "TR",
        "cityCode": "10",
        "districtCode": 494,
        "currencyCode": "TRY",
        "address": "test",
        "taxOffice": "Silifke",
        "paymentSetId": DEFAULT_PAYMENT_SET,
        "customerRepresentativeIds": ["a90b225c-fa6e-418d-8c03-93946a05e355"],
        "isForeignNational": False,
        "isCompany": False,
        "firstName": "vendor",
        "lastName": "test5",
        "email": "vendor.test5@example.com",
        "mobile": "5000000000",
        "canUseMobile": False,
        "isActive": True,
        "tckn": "00000000000",
    }
}

_STRING, _BOOL, _INT, _STRINGS = "a string", "a boolean", "an integer", "an array of strings"
_STRING_FIELDS = (
    "updateCode", "code", "erpCode", "firstName", "lastName", "companyName", "tckn", "taxNumber",
    "taxOffice", "email", "phone", "mobile", "countryCode", "cityCode", "currencyCode", "address",
    "paymentSetId", "title",
)  # fmt: skip
_BOOL_FIELDS = ("isCompany", "isForeignNational", "canUseMobile", "sendMail", "isActive")
_TYPES: dict[str, str] = {
    **dict.fromkeys(_STRING_FIELDS, _STRING),
    **dict.fromkeys(_BOOL_FIELDS, _BOOL),
    "districtCode": _INT,
    "customerRepresentativeIds": _STRINGS,
}
_NOT_STORED = ("updateCode", "sendMail")  # request-only: which record, and an action
_INDIVIDUAL = ("firstName", "lastName", "tckn")
_CORPORATE = ("companyName", "taxNumber", "taxOffice")
_UNAUTHORIZED = {"message": "token expired or invalid"}


def _has_type(kind: str, value: Any) -> bool:
    if kind == _STRING:
        return isinstance(value, str)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _errors(status: int, errors: dict[str, list[str]]) -> Reply:
    messages = [m for ms in errors.values() for m in ms]
    more = f" (and {len(messages) - 1} more errors)" if len(messages) > 1 else ""
    return Reply(status, {"message": messages[0] + more, "errors": errors})


def check_shape(body: Any, path_code: str) -> Reply | None:
    """400 for unknown fields and wrong types, 422 for missing code/erpCode."""
    if not isinstance(body, dict):
        return _errors(400, {"body": ["body must be a JSON object"]})
    bad: dict[str, list[str]] = {}
    for name, value in body.items():
        kind = _TYPES.get(name)
        if kind is None:
            bad[name] = [f"{name} is not a known field"]
        elif not _has_type(kind, value):
            bad[name] = [f"{name} must be {kind}, got {show(value)}"]
    update_code = body.get("updateCode", path_code)
    if "updateCode" not in bad and update_code != path_code:
        bad["updateCode"] = [
            f"updateCode {show(update_code)} differs from the path's {show(path_code)}"
        ]
    if bad:
        return _errors(400, bad)
    missing = {n: [f"{n} is required"] for n in ("code", "erpCode") if not body.get(n)}
    return _errors(422, missing) if missing else None


def check_kind(record: dict[str, Any]) -> Reply | None:
    """The individual/corporate rule, on the record as it would be after the update."""
    corporate = record.get("isCompany") is True
    needed = _CORPORATE if corporate else _INDIVIDUAL
    missing = [n for n in needed if not record.get(n)]
    if not missing:
        return None
    kind = "corporate (isCompany true)" if corporate else "individual (isCompany false)"
    message = f"{kind} customer needs {', '.join(needed)}: missing {', '.join(missing)}"
    return Reply(422, {"message": message, "errors": {n: [f"{n} is required"] for n in missing}})


class VendorApi:
    """Bearer tokens and the partial-update PUT of one customer."""

    def __init__(
        self, store: Store, faults: Faults, credentials: tuple[str, str], token_ttl_s: float
    ) -> None:
        self._store = store
        self._faults = faults
        self._credentials = credentials
        self._default_ttl = token_ttl_s
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._lock = threading.Lock()
        self.payment_sets: frozenset[str] = frozenset({DEFAULT_PAYMENT_SET})

    def reset(self) -> None:
        with self._lock:
            self.payment_sets = frozenset({DEFAULT_PAYMENT_SET})

    def add_payment_sets(self, ids: list[str]) -> frozenset[str]:
        with self._lock:
            self.payment_sets = self.payment_sets | set(ids)
            return self.payment_sets

    def expire_tokens(self) -> int:
        now = time.monotonic()
        with self._lock:
            live = sum(1 for expiry in self._tokens.values() if expiry > now)
            self._tokens = {}
        return live

    @staticmethod
    def route(parts: list[str]) -> tuple[str, str | None]:
        """(route name, customer code) for the path segments after the leading '/'."""
        if len(parts) == 3 and parts[0] == "vendor":
            if parts[1] == "customer" and parts[2]:
                return "customer", parts[2]
            if parts[1] == "auth" and parts[2] == "token":
                return "token", None
        return "", None

    def handle(self, call: Call) -> Reply:
        if call.route == "token":
            return self._issue_token(call) if call.method == "POST" else _not_allowed("POST")
        if call.route != "customer" or call.customer_id is None:
            return Reply(404, {"message": "route not found"})
        if call.method != "PUT":
            return _not_allowed("PUT")
        if not self._token_valid(call.headers.get("authorization")):
            return _refused()
        stop = self._faults.gate(TARGET, call.customer_id)
        if stop is not None:
            return _render(stop)
        content_type = call.headers.get("content-type") or ""
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            return Reply(415, {"message": f"Content-Type {show(content_type)} is not supported"})
        if not call.json_ok:
            return _errors(400, {"body": ["body is not valid JSON"]})
        return check_shape(call.body, call.customer_id) or self._update(call.customer_id, call.body)

    def _update(self, code: str, body: dict[str, Any]) -> Reply:
        for name, known in (("paymentSetId", self.payment_sets), ("currencyCode", CURRENCIES)):
            if name in body and body[name] not in known:
                return Reply(404, {"message": f"{name} {show(body[name])} not defined"})
        changes = {k: v for k, v in body.items() if k not in _NOT_STORED}
        new_code = body["code"]
        with self._store.lock:
            table = self._store.table(TARGET)
            stored = table.get(code)
            if stored is None:
                return Reply(404, {"message": f"customer {show(code)} not found"})
            record = {**stored, **changes}
            refused = check_kind(record)
            if refused is not None:
                return refused
            if new_code != code:
                if new_code in table:
                    return Reply(409, {"message": f"customer code {show(new_code)} already exists"})
                self._store.move_customer(TARGET, code, new_code)
            table[new_code] = record
            if body.get("sendMail") is True:
                self._store.count_email(TARGET, new_code)
        return Reply(200, record, applied=True)

    def _issue_token(self, call: Call) -> Reply:
        stop = self._faults.gate(TARGET, None, full=False)
        if stop is not None:
            return _render(stop)
        body = call.body
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) for k in ("username", "password")
        ):
            return Reply(400, {"message": "username and password are required"})
        user_ok = hmac.compare_digest(body["username"].encode(), self._credentials[0].encode())
        password_ok = hmac.compare_digest(body["password"].encode(), self._credentials[1].encode())
        if not (user_ok and password_ok):
            return Reply(401, {"message": "invalid username or password"})
        ttl = self._faults.value(TARGET, "token_ttl_s") or self._default_ttl
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            if len(self._tokens) > 10_000:
                self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + ttl
        expires_in = int(ttl) if ttl == int(ttl) else ttl
        answer = {"accessToken": token, "expiresIn": expires_in, "tokenType": "Bearer"}
        return Reply(200, answer, token_issued=True)

    def _token_valid(self, header: str | None) -> bool:
        if not header or header[:7].lower() != "bearer ":
            return False
        expiry = self._tokens.get(header[7:].strip())
        return expiry is not None and expiry > time.monotonic()


def _not_allowed(method: str) -> Reply:
    return Reply(405, {"message": "method not allowed"}, {"Allow": method})


def _refused() -> Reply:
    return Reply(401, dict(_UNAUTHORIZED), {"WWW-Authenticate": 'Bearer error="invalid_token"'})


def _render(stop: Interrupt) -> Reply:
    if stop.reset:
        return Reply(0, reset=True)
    if stop.status == 401:
        return _refused()
    headers = None if stop.retry_after_s is None else {"Retry-After": str(stop.retry_after_s)}
    return Reply(stop.status, {"message": stop.message}, headers, early=stop.early)
