"""Every field rule of both seeds, as (target, changes, the field that must be named)."""

from __future__ import annotations

from typing import Any

from tests.events import MINTED_EXAMPLE, VENDOR_EXAMPLE


def _with(base: dict[str, Any], **over: Any) -> dict[str, Any]:
    """A copy of ``base`` with fields replaced, or removed where the value is ``...``."""
    body = dict(base)
    for key, value in over.items():
        if value is ...:
            body.pop(key)
        else:
            body[key] = value
    return body


def _minted(**over: Any) -> dict[str, Any]:
    return _with(MINTED_EXAMPLE, **over)


def _vendor(**over: Any) -> dict[str, Any]:
    return _with(VENDOR_EXAMPLE, **over)


INVALID_CHANGES: list[tuple[str, str, dict[str, Any], str]] = [
    # (case id, target, changes, field named in the error)
    ("minted-firstname-missing", "minted", _minted(firstname=...), "firstname"),
    ("minted-firstname-short", "minted", _minted(firstname="Jo"), "firstname"),
    ("minted-firstname-long", "minted", _minted(firstname="J" * 41), "firstname"),
    ("minted-lastname-missing", "minted", _minted(lastname=...), "lastname"),
    ("minted-lastname-short", "minted", _minted(lastname="Do"), "lastname"),
    ("minted-middlename-short", "minted", _minted(middlename="Al"), "middlename"),
    ("minted-middlename-long", "minted", _minted(middlename="A" * 41), "middlename"),
    ("minted-email-bad", "minted", _minted(email="not-an-email"), "email"),
    ("minted-phone-missing", "minted", _minted(phone=...), "phone"),
    ("minted-phone-empty", "minted", _minted(phone=""), "phone"),
    ("minted-gender-bad", "minted", _minted(gender="X"), "gender"),
    ("minted-identity-missing", "minted", _minted(identity_number=...), "identity_number"),
    ("minted-identity-short", "minted", _minted(identity_number="12"), "identity_number"),
    ("minted-birthdate-format", "minted", _minted(birthdate="31/01/1970"), "birthdate"),
    ("minted-birthdate-not-a-date", "minted", _minted(birthdate="1970-02-31"), "birthdate"),
    ("minted-unknown-field", "minted", _minted(nickname="Johnny"), "nickname"),
    ("minted-wrong-type", "minted", _minted(firstname=12345), "firstname"),
    ("vendor-code-missing", "vendor", _vendor(code=...), "code"),
    ("vendor-erpcode-missing", "vendor", _vendor(erpCode=...), "erpCode"),
    ("vendor-individual-firstname", "vendor", _vendor(firstName=...), "firstName"),
    ("vendor-individual-lastname", "vendor", _vendor(lastName=...), "lastName"),
    ("vendor-individual-tckn", "vendor", _vendor(tckn=...), "tckn"),
    (
        "vendor-corporate-companyname",
        "vendor",
        _vendor(isCompany=True, taxNumber="1234567890"),
        "companyName",
    ),
    (
        "vendor-corporate-taxnumber",
        "vendor",
        _vendor(isCompany=True, companyName="Acme A.Ş."),
        "taxNumber",
    ),
    ("vendor-iscompany-string", "vendor", _vendor(isCompany="false"), "isCompany"),
    ("vendor-districtcode-string", "vendor", _vendor(districtCode="494"), "districtCode"),
    ("vendor-email-bad", "vendor", _vendor(email="vendor@"), "email"),
    (
        "vendor-reps-not-list",
        "vendor",
        _vendor(customerRepresentativeIds="a90b"),
        "customerRepresentativeIds",
    ),
    ("vendor-unknown-field", "vendor", _vendor(countryCodeISO="TR"), "countryCodeISO"),
]

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
