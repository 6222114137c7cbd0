"""Minted "Update Customer" body, as the partner's document says (docs/partners/minted.md)."""

from __future__ import annotations

from datetime import date

from marshmallow import RAISE, Schema, ValidationError, validate

from custsync.schemas import fields

_NAME = validate.Length(min=3, max=40)


def _middlename(value: str) -> None:
    # The seed's own example sends "" although the rule says 3 to 40 characters.
    if value and not 3 <= len(value) <= 40:
        raise ValidationError("Length must be between 3 and 40 (or empty).")


def _iso_date(value: str) -> None:
    # The seed's pattern ^[9999-99-99]$ is garbled; it means YYYY-MM-DD.
    try:
        if len(value) != 10:
            raise ValueError
        date.fromisoformat(value)
    except ValueError:
        raise ValidationError("Must be a date as YYYY-MM-DD.") from None


class MintedChangesSchema(Schema):
    class Meta:
        unknown = RAISE

    # The seed's 200 answer bounds external_id to 1-110 characters: longer cannot be stored.
    external_id = fields.String(validate=validate.Length(min=1, max=110))
    firstname = fields.String(required=True, validate=_NAME)
    middlename = fields.String(validate=_middlename)
    lastname = fields.String(required=True, validate=_NAME)
    email = fields.Email()
    # Stricter than "required": an empty phone is no phone (the partner refuses it too).
    phone = fields.String(required=True, validate=validate.Length(min=1))
    gender = fields.String(validate=validate.OneOf(["M", "F"]))
    identity_number = fields.String(required=True, validate=validate.Length(min=3))
    birthdate = fields.String(validate=_iso_date)
