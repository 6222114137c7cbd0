"""Minted Connect "Update Customer": PATCH with HTTP Digest auth (docs/partners/minted.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests
from marshmallow import fields, validate
from requests.auth import HTTPDigestAuth

from custsync.errors import Rejected
from custsync.schemas.envelope import Event
from custsync.schemas.minted import MintedChangesSchema
from custsync.targets.base import PartnerRequest, Target, partner_message, trim


class MintedTarget(Target):
    name = "minted"
    public_fields = frozenset()  # every field of its body describes a person
    changes_schema = MintedChangesSchema
    field_level = False  # every call must carry the identity fields

    @classmethod
    def settings_fields(cls) -> dict[str, fields.Field[Any]]:
        p = "CUSTSYNC_MINTED_"
        return {
            "username": fields.String(data_key=f"{p}USERNAME"),
            "password": fields.String(data_key=f"{p}PASSWORD"),
            "client_id": fields.String(
                data_key=f"{p}CLIENT_ID", load_default="web", validate=validate.Length(1, 128)
            ),
            "api_version": fields.String(
                data_key=f"{p}API_VERSION", load_default="2", validate=validate.Length(1, 16)
            ),
            "language": fields.String(
                data_key=f"{p}LANGUAGE", load_default="tr", validate=validate.Length(2, 35)
            ),
        }

    @classmethod
    def check_options(cls, base_url: str, options: Mapping[str, Any]) -> str | None:
        for key in ("username", "password"):
            if not options.get(key):
                var = f"CUSTSYNC_MINTED_{key.upper()}"
                return f"{var}: required when CUSTSYNC_MINTED_BASE_URL is set (Digest auth)"
        return None

    def configure_session(self, session: requests.Session) -> None:
        opts = self.config.options
        session.auth = HTTPDigestAuth(opts["username"], opts["password"])
        session.headers.update(
            {
                "api-version": opts["api_version"],
                "x-client-id": opts["client_id"],
                "Accept-Language": opts["language"],
            }
        )

    def build_request(self, event: Event) -> PartnerRequest:
        url = f"{self.config.base_url}/partner/customer/{quote(event.customer_id, safe='')}"
        return PartnerRequest("PATCH", url, event.changes)

    def check_success(self, response: requests.Response) -> None:
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, Mapping) and data.get("success") is True:
            return
        code = data.get("code") if isinstance(data, Mapping) else None
        raise Rejected(
            f"minted answered {response.status_code} with success false"
            f" (code {code}): {partner_message(response)}".rstrip(": "),
            status=response.status_code,
            response_body=trim(response.text, self.response_max_bytes),
        )
