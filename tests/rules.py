"""Every rule of both partner documents, as one event it accepts and one it refuses.

A rule's ``accepted`` and ``refused`` are fragments laid over a base body: Minted's seed
example (Minted needs its identity fields on every call) or the vendor's smallest partial
update, ``code`` and ``erpCode`` alone. A value of ``...`` removes the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.events import MINTED_EXAMPLE


@dataclass(frozen=True)
class Rule:
    id: str
    target: str
    field: str  # the field the refusal names
    refused: dict[str, Any]
    accepted: dict[str, Any] = field(default_factory=dict)


def over(base: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``fragment`` laid over it; ``...`` removes a field."""
    body = dict(base)
    for key, value in fragment.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def minted_body(fragment: dict[str, Any]) -> dict[str, Any]:
    return over(MINTED_EXAMPLE, fragment)


def vendor_body(code: str, fragment: dict[str, Any]) -> dict[str, Any]:
    return over({"code": code, "erpCode": f"erp-{code}"}, fragment)


SEED_RULES: list[Rule] = [
    # Minted "Update Customer": body params, each with its type, bounds and enum.
    Rule("minted-firstname-required", "minted", "firstname", {"firstname": ...}),
    Rule("minted-firstname-min-3", "minted", "firstname", {"firstname": "Al"},
         {"firstname": "Ali"}),
    Rule("minted-firstname-max-40", "minted", "firstname", {"firstname": "J" * 41},
         {"firstname": "J" * 40}),
    Rule("minted-lastname-required", "minted", "lastname", {"lastname": ...}),
    Rule("minted-lastname-min-3", "minted", "lastname", {"lastname": "Do"}, {"lastname": "Doe"}),
    Rule("minted-lastname-max-40", "minted", "lastname", {"lastname": "D" * 41},
         {"lastname": "D" * 40}),
    Rule("minted-middlename-optional-or-empty", "minted", "middlename", {"middlename": "Al"},
         {"middlename": ""}),
    Rule("minted-middlename-3-to-40", "minted", "middlename", {"middlename": "A" * 41},
         {"middlename": "Can"}),
    Rule("minted-email-format", "minted", "email", {"email": "not-an-email"},
         {"email": "john.new@example.com"}),
    Rule("minted-email-optional", "minted", "email", {"email": ""}, {"email": ...}),
    Rule("minted-phone-required", "minted", "phone", {"phone": ...}, {"phone": "+905070000000"}),
    # Stricter than "required" with a reason (schemas/minted.py); the partner refuses "" too.
    Rule("minted-phone-not-empty", "minted", "phone", {"phone": ""}, {"phone": "5"}),
    Rule("minted-gender-enum", "minted", "gender", {"gender": "X"}, {"gender": "F"}),
    Rule("minted-gender-optional", "minted", "gender", {"gender": "m"}, {"gender": ...}),
    Rule("minted-identity-required", "minted", "identity_number", {"identity_number": ...}),
    Rule("minted-identity-min-3", "minted", "identity_number", {"identity_number": "12"},
         {"identity_number": "123"}),
    Rule("minted-identity-no-max", "minted", "identity_number", {"identity_number": 12345678901},
         {"identity_number": "9" * 80}),
    Rule("minted-birthdate-yyyy-mm-dd", "minted", "birthdate", {"birthdate": "31/01/1970"},
         {"birthdate": "1999-12-31"}),
    Rule("minted-birthdate-a-real-date", "minted", "birthdate", {"birthdate": "1970-02-31"},
         {"birthdate": ...}),
    Rule("minted-external-id-1-to-110", "minted", "external_id", {"external_id": "x" * 111},
         {"external_id": "x" * 110}),
    Rule("minted-strings-only", "minted", "firstname", {"firstname": 12345}),
    Rule("minted-known-fields-only", "minted", "nickname", {"nickname": "Johnny"}),
    # Vendor "Updating a Customer": a partial update; fields not sent stay unchanged.
    Rule("vendor-partial-update", "vendor", "countryCodeISO", {"countryCodeISO": "TR"},
         {"email": "new.address@example.com"}),
    Rule("vendor-code-required", "vendor", "code", {"code": ...}),
    Rule("vendor-code-not-empty", "vendor", "code", {"code": ""}),
    Rule("vendor-erpcode-required", "vendor", "erpCode", {"erpCode": ...}),
    Rule("vendor-erpcode-not-empty", "vendor", "erpCode", {"erpCode": ""}),
    Rule("vendor-booleans-are-json", "vendor", "isActive", {"isActive": "false"},
         {"isActive": False, "canUseMobile": True, "isForeignNational": True}),
    Rule("vendor-iscompany-boolean", "vendor", "isCompany", {"isCompany": 0},
         {"isCompany": False}),
    Rule("vendor-sendmail-boolean", "vendor", "sendMail", {"sendMail": "true"},
         {"sendMail": False}),
    Rule("vendor-districtcode-integer", "vendor", "districtCode", {"districtCode": "494"},
         {"districtCode": 17}),
    Rule("vendor-reps-list-of-strings", "vendor", "customerRepresentativeIds",
         {"customerRepresentativeIds": "a90b"}, {"customerRepresentativeIds": ["r-1", "r-2"]}),
    Rule("vendor-reps-strings-only", "vendor", "customerRepresentativeIds",
         {"customerRepresentativeIds": ["r-1", 2]}, {"customerRepresentativeIds": []}),
    Rule("vendor-strings-are-strings", "vendor", "mobile", {"mobile": 5000000000},
         {"mobile": "5000000000", "phone": "2120000000", "title": "", "cityCode": "34"}),
    Rule("vendor-email-any-string", "vendor", "email", {"email": None},
         {"email": "shared mailbox"}),  # the document gives the vendor's email no format
    Rule("vendor-update-code-is-the-path", "vendor", "updateCode", {"updateCode": "999"},
         {"updateCode": "<code>"}),
    Rule("vendor-individual-fields", "vendor", "tckn", {"tckn": 11111111111},
         {"firstName": "Ada", "lastName": "Kaya", "tckn": "11111111111"}),
    Rule("vendor-address-currency-payment", "vendor", "address", {"address": ["a"]},
         {"address": "Atatürk Cd. 1", "currencyCode": "USD", "countryCode": "DE",
          "paymentSetId": "504978bf-bebd-40c5-89aa-b76f3a20341c"}),
]  # fmt: skip


def refused_changes(rule: Rule, code: str = "C1") -> dict[str, Any]:
    if rule.target == "minted":
        return minted_body(rule.refused)
    return vendor_body(code, rule.refused)


def accepted_changes(rule: Rule, code: str) -> dict[str, Any]:
    fragment = {k: (code if v == "<code>" else v) for k, v in rule.accepted.items()}
    if rule.target == "minted":
        return minted_body(fragment)
    return vendor_body(code, fragment)


INVALID_ENVELOPES: list[tuple[str, dict[str, Any] | Any, str]] = [
    # (case id, envelope or fragment to merge over a valid one, field named); built in tests
    ("event-id-missing", {"event_id": ...}, "event_id"),
    ("event-id-too-long", {"event_id": "e" * 129}, "event_id"),
    ("target-missing", {"target": ...}, "target"),
    ("target-unknown", {"target": "salesforce"}, "target"),
    ("customer-missing", {"customer_id": ...}, "customer_id"),
    ("occurred-at-naive", {"occurred_at": "2024-05-01T10:00:00"}, "occurred_at"),
    ("occurred-at-garbage", {"occurred_at": "yesterday"}, "occurred_at"),
    ("sequence-negative", {"sequence": -1}, "sequence"),
    ("sequence-string", {"sequence": "3"}, "sequence"),
    ("changes-missing", {"changes": ...}, "changes"),
    ("changes-not-object", {"changes": ["a"]}, "changes"),
    ("unknown-top-level", {"priority": "high"}, "priority"),
]
