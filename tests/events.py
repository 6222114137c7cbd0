"""Event builders for the tests: the seeds' own example bodies and envelopes around them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from custsync.sandbox import SandboxClient

# Minted "Update Customer" example (docs/partners/minted.md); external_id was a faker template.
MINTED_EXAMPLE: dict[str, Any] = {
    "external_id": "6f1c2d3e-0000-4000-8000-000000000001",
    "firstname": "John",
    "middlename": "",
    "lastname": "Due",
    "email": "john.due@example.com",
    "phone": "+905071112233",
    "gender": "M",
    "identity_number": "12345677938",
    "birthdate": "1970-01-31",
}

# docs/partners/vendor.md: the vendor "Updating a Customer" example.
VENDOR_EXAMPLE: dict[str, Any] = {
    "code": "501",
    "erpCode": "501",
    "phone": "5000000000",
    "countryCode": "TR",
    "cityCode": "10",
    "districtCode": 494,
    "currencyCode": "TRY",
    "address": "test",
    "taxOffice": "Silifke",
    "paymentSetId": "504978bf-bebd-40c5-89aa-b76f3a20341c",
    "customerRepresentativeIds": ["a90b225c-fa6e-418d-8c03-93946a05e355"],
    "isForeignNational": False,
    "isCompany": False,
    "firstName": "vendor",
    "lastName": "test5",
    "email": "vendor.test5@example.com",
    "mobile": "5000000000",
    "canUseMobile": False,
    "sendMail": True,
    "isActive": True,
    "tckn": "00000000000",
}


def envelope(
    target: str, customer_id: str, changes: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "event_id": f"ev-{uuid.uuid4().hex}",
        "target": target,
        "customer_id": customer_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "changes": changes,
    }
    env.update(extra)
    return env


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def vendor_changes(code: str, **overrides: Any) -> dict[str, Any]:
    return {**VENDOR_EXAMPLE, "code": code, "erpCode": f"erp-{code}", **overrides}


def minted_customer(client: SandboxClient) -> str:
    """A new customer the Minted sandbox knows, holding the seed example's values."""
    cid = new_id("MTD")
    client.put_customer("minted", cid, {**MINTED_EXAMPLE, "external_id": cid})
    return cid


def vendor_customer(client: SandboxClient) -> str:
    """A new individual customer the vendor sandbox knows."""
    code = new_id("V")
    client.put_customer("vendor", code, vendor_changes(code))
    return code
