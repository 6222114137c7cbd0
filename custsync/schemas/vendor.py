"""Vendor "Updating a Customer" body: a partial update, checked field by field.

The document's individual/corporate rule (individuals need firstName, lastName, tckn;
corporates companyName, taxNumber, taxOffice) holds for the partner's record *after* the
update, which only the partner knows: an event carries just the fields that changed, so
custsync checks each field it sends and leaves the kind rule to the partner's 422.
"""

from __future__ import annotations

from marshmallow import RAISE, Schema, validate

from custsync.schemas import fields

# Stricter than "required": an empty code addresses no record (the partner treats it as missing).
_CODE = validate.Length(min=1)


class VendorChangesSchema(Schema):
    class Meta:
        unknown = RAISE

    updateCode = fields.String(validate=_CODE)
    code = fields.String(required=True, validate=_CODE)
    erpCode = fields.String(required=True, validate=_CODE)
    firstName = fields.String()
    lastName = fields.String()
    companyName = fields.String()
    isCompany = fields.JsonBoolean()
    isForeignNational = fields.JsonBoolean()
    tckn = fields.String()
    taxNumber = fields.String()
    taxOffice = fields.String()
    email = fields.String()  # the document gives no format, unlike Minted's `string <email>`
    phone = fields.String()
    mobile = fields.String()
    countryCode = fields.String()
    cityCode = fields.String()
    districtCode = fields.Integer(strict=True)
    currencyCode = fields.String()  # an undefined one is the partner's 404, not a shape error
    address = fields.String()
    paymentSetId = fields.String()
    customerRepresentativeIds = fields.List(fields.String())
    canUseMobile = fields.JsonBoolean()
    sendMail = fields.JsonBoolean()
    isActive = fields.JsonBoolean()
    title = fields.String()
