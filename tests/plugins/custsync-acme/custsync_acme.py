"""Acme loyalty: ``PUT {base}/acme/customers/{id}``, no auth. A partner custsync never saw."""

from __future__ import annotations

from urllib.parse import quote

from marshmallow import RAISE, Schema, fields, validate

from custsync.schemas.envelope import Event
from custsync.targets.base import PartnerRequest, Target


class AcmeChangesSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True)
    national_id = fields.String()
    tier = fields.String(validate=validate.OneOf(["gold", "silver", "bronze"]))
    opted_in = fields.Boolean()


class AcmeTarget(Target):
    name = "acme"
    changes_schema = AcmeChangesSchema
    public_fields = frozenset({"tier", "opted_in"})  # name and national_id are personal

    def build_request(self, event: Event) -> PartnerRequest:
        url = f"{self.config.base_url}/acme/customers/{quote(event.customer_id, safe='')}"
        return PartnerRequest("PUT", url, event.changes)
