"""Vendor "Updating a Customer" body, as the seed says (shared/seeds/004_*)."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, validate, validates_schema

from custsync.schemas import fields

_STR = validate.Length(min=1, max=256)
_INDIVIDUAL = ("firstName", "lastName", "tckn")
_CORPORATE = ("companyName", "taxNumber", "taxOffice")


def _strict_bool() -> fields.Boolean:
    # JSON booleans only: "false" as a string must not turn a customer corporate.
    return fields.Boolean(truthy={True}, falsy={False})


class VendorChangesSchema(Schema):
    class Meta:
        unknown = RAISE

    updateCode = fields.String(validate=_STR)
    code = fields.String(required=True, validate=_STR)
    erpCode = fields.String(required=True, validate=_STR)
    firstName = fields.String(validate=_STR)
    lastName = fields.String(validate=_STR)
    companyName = fields.String(validate=_STR)
    isCompany = _strict_bool()
    isForeignNational = _strict_bool()
    tckn = fields.String(validate=_STR)
    taxNumber = fields.String(validate=_STR)
    taxOffice = fields.String(validate=_STR)
    email = fields.Email()
    phone = fields.String(validate=_STR)
    mobile = fields.String(validate=_STR)
    countryCode = fields.String(validate=validate.Length(min=2, max=3))
    cityCode = fields.String(validate=_STR)
    districtCode = fields.Integer(strict=True)
    currencyCode = fields.String(validate=validate.Length(min=3, max=3))
    address = fields.String(validate=validate.Length(max=2048))
    paymentSetId = fields.String(validate=_STR)
    customerRepresentativeIds = fields.List(fields.String(validate=_STR))
    canUseMobile = _strict_bool()
    sendMail = _strict_bool()
    isActive = _strict_bool()
    title = fields.String(validate=validate.Length(max=256))

    @validates_schema
    def _kind_rules(self, data: dict[str, Any], **_: Any) -> None:
        corporate = data.get("isCompany") is True
        needed = _CORPORATE if corporate else _INDIVIDUAL
        kind = "corporate customers (isCompany true)" if corporate else "individual customers"
        missing = {name: [f"Required for {kind}."] for name in needed if not data.get(name)}
        if missing:
            raise ValidationError(missing)
