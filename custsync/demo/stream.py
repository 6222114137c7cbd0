"""A realistic stream for the demo: the seeds' examples, generated customers with several
updates each, invalid events, and customers the partner does not know."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

_FIRST = ["Ayşe", "Mehmet", "Elif", "Mustafa", "Zeynep", "Ahmet", "Fatma", "Emre", "Deniz", "Can"]
_LAST = ["Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Aydın", "Arslan", "Doğan", "Koç", "Kurt"]


@dataclass
class Stream:
    minted_customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    vendor_customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    valid: list[dict[str, Any]] = field(default_factory=list)  # published through the producer
    foreign: list[dict[str, Any]] = field(default_factory=list)  # as a careless client would
    unknown_customers: int = 0
    partner_refusals: int = 0


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _minted_body(rng: random.Random, cid: str) -> dict[str, Any]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return {
        "external_id": cid,
        "firstname": first,
        "middlename": "",
        "lastname": last,
        "email": f"{first.lower()}.{uuid.uuid4().hex[:6]}@example.com",
        "phone": "+90" + _digits(rng, 10),
        "gender": rng.choice("MF"),
        "identity_number": _digits(rng, 11),
        "birthdate": f"{rng.randint(1950, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    }


def _vendor_body(rng: random.Random, code: str, corporate: bool = False) -> dict[str, Any]:
    """A whole vendor record: what the partner holds before the stream's partial updates."""
    kind: dict[str, Any] = (
        {"companyName": f"{rng.choice(_LAST)} A.Ş.", "taxNumber": _digits(rng, 10),
         "taxOffice": "Silifke"}
        if corporate
        else {"firstName": rng.choice(_FIRST), "lastName": rng.choice(_LAST),
              "tckn": _digits(rng, 11)}
    )  # fmt: skip
    return {
        "code": code,
        "erpCode": f"ERP{code}",
        **kind,
        "mobile": "5" + _digits(rng, 9),
        "countryCode": "TR",
        "currencyCode": "TRY",
        "isCompany": corporate,
        "isActive": True,
    }


def _vendor_update(rng: random.Random, body: dict[str, Any]) -> dict[str, Any]:
    """A partial update, the vendor's normal case: code, erpCode and what changed."""
    changed: dict[str, Any] = rng.choice(
        [
            {"mobile": "5" + _digits(rng, 9)},
            {"email": f"c{uuid.uuid4().hex[:8]}@example.com"},
            {"address": f"Atatürk Cd. {rng.randint(1, 200)}", "cityCode": "10"},
            {"isActive": rng.random() < 0.8},
        ]
    )
    return {"code": body["code"], "erpCode": body["erpCode"], **changed}


def _envelope(
    target: str, cid: str, changes: dict[str, Any], at: datetime, seq: int
) -> dict[str, Any]:
    return {
        "event_id": f"demo-{uuid.uuid4().hex[:16]}",
        "target": target,
        "customer_id": cid,
        "occurred_at": at.isoformat(),
        "sequence": seq,
        "changes": changes,
        "source": "demo-crm",
    }


def build(customers: int = 300, seed: int = 7) -> Stream:
    rng = random.Random(seed)
    stream = Stream()
    now = datetime.now(UTC)
    # Both seeds' example bodies, as the documents give them.
    stream.minted_customers["MTD0018232"] = {}
    stream.vendor_customers["501"] = {}
    minted_seed = {
        "external_id": str(uuid.uuid4()), "firstname": "John", "middlename": "",
        "lastname": "Due", "email": "john.due@example.com", "phone": "+905071112233",
        "gender": "M", "identity_number": "12345677938", "birthdate": "1970-01-31",
    }  # fmt: skip
    vendor_seed = {
        "code": "501", "erpCode": "501", "phone": "5000000000", "countryCode": "TR",
        "cityCode": "10", "districtCode": 494, "currencyCode": "TRY", "address": "test",
        "taxOffice": "Silifke", "paymentSetId": "504978bf-bebd-40c5-89aa-b76f3a20341c",
        "customerRepresentativeIds": ["a90b225c-fa6e-418d-8c03-93946a05e355"],
        "isForeignNational": False, "isCompany": False, "firstName": "vendor",
        "lastName": "test5", "email": "vendor.test5@example.com", "mobile": "5000000000",
        "canUseMobile": False, "sendMail": True, "isActive": True, "tckn": "00000000000",
    }  # fmt: skip
    stream.valid.append(_envelope("minted", "MTD0018232", minted_seed, now, 0))
    stream.valid.append(_envelope("vendor", "501", vendor_seed, now, 0))

    for i in range(customers):
        target = "minted" if i % 2 == 0 else "vendor"
        cid = f"MTD{100000 + i}" if target == "minted" else f"{7000 + i}"
        if target == "minted":
            body = _minted_body(rng, cid)
        else:
            body = _vendor_body(rng, cid, corporate=i % 4 == 3)
        (stream.minted_customers if target == "minted" else stream.vendor_customers)[cid] = body
        for update in range(rng.randint(1, 3)):
            if target == "minted":  # Minted needs its identity fields on every call
                changes = {**body, "phone": "+90" + _digits(rng, 10)}
            else:
                changes = _vendor_update(rng, body)
            at = now - timedelta(minutes=10) + timedelta(seconds=update)
            stream.valid.append(_envelope(target, cid, changes, at, update))
    rng.shuffle(stream.valid)

    # Customers the partners have never heard of: 404, not_found in the DLQ.
    for i in range(6):
        target = "minted" if i % 2 else "vendor"
        cid = f"MTD9{i:05d}" if target == "minted" else f"99{i:03d}"
        body = _minted_body(rng, cid) if target == "minted" else _vendor_body(rng, cid)
        stream.valid.append(_envelope(target, cid, body, now, 0))
        stream.unknown_customers += 1

    # Valid on its own, refused by the partner: an individual made corporate without a
    # company name or tax number breaks the kind rule on the merged record (422, rejected).
    individual = next(c for c, b in stream.vendor_customers.items() if b and not b["isCompany"])
    kind_change = {"code": individual, "erpCode": f"ERP{individual}", "isCompany": True}
    stream.valid.append(_envelope("vendor", individual, kind_change, now, 9))
    stream.partner_refusals += 1

    # What a careless producer sends without validating: each lands in the DLQ as invalid.
    some_minted = next(iter(stream.minted_customers))
    bad: list[tuple[str, str, dict[str, Any]]] = [
        ("minted", some_minted, {**minted_seed, "gender": "X"}),
        ("minted", some_minted, {**minted_seed, "firstname": "Al"}),
        ("minted", some_minted, {**minted_seed, "birthdate": "31.01.1970"}),
        ("vendor", "501", {"code": "501", "email": "no.erp.code@example.com"}),
        ("vendor", "501", {**vendor_seed, "districtCode": "494"}),
        ("crm-x", "42", {"name": "unknown target"}),
    ]
    for target, cid, changes in bad:
        stream.foreign.append(_envelope(target, cid, changes, now, 0))
    naive = _envelope("minted", some_minted, minted_seed, now, 0)
    naive["occurred_at"] = "2024-05-01 10:00"
    stream.foreign.append(naive)
    return stream
