"""The event envelope, the public contract (README, "The event envelope")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, post_load, validate, validates

from custsync.schemas import fields


@dataclass(frozen=True)
class Event:
    """A validated envelope; ``changes`` is still the raw body, checked by the target schema."""

    event_id: str
    target: str
    customer_id: str
    occurred_at: datetime
    changes: dict[str, Any]
    sequence: int = 0
    source: str | None = None
    correlation_id: str | None = None


class EnvelopeSchema(Schema):
    class Meta:
        unknown = RAISE

    event_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    target = fields.String(required=True, validate=validate.Length(min=1, max=64))
    customer_id = fields.String(required=True, validate=validate.Length(min=1, max=256))
    occurred_at = fields.AwareDateTime(required=True, format="iso")
    sequence = fields.Integer(strict=True, validate=validate.Range(min=0), load_default=0)
    # Keys are left to the target schema, which names each unknown one: checking them here
    # too cost a quarter of validation.
    changes = fields.Dict(required=True)
    source = fields.String(validate=validate.Length(max=256), allow_none=True)
    correlation_id = fields.String(validate=validate.Length(max=256), allow_none=True)

    @validates("event_id")
    def _printable_id(self, value: str, **_: Any) -> None:
        if not value.isprintable() or value != value.strip():
            raise ValidationError("Must be printable, without surrounding spaces.")

    @post_load
    def _to_event(self, data: dict[str, Any], **_: Any) -> Event:
        return Event(**data)
