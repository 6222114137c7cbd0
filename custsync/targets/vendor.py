"""Vendor "Updating a Customer": PUT with a renewable bearer token (docs/partners/vendor.md)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests
from marshmallow import fields, validate

from custsync.errors import AuthFailed, PartnerUnavailable
from custsync.schemas.envelope import Event
from custsync.schemas.vendor import VendorChangesSchema
from custsync.targets.base import PartnerRequest, Target
from custsync.targets.token import SharedToken

_P = "CUSTSYNC_VENDOR_"


class VendorTarget(Target):
    name = "vendor"
    changes_schema = VendorChangesSchema
    field_level = True  # partial update: fields not sent stay unchanged

    # The document: "ensure that currencyTypeId and paymentSetId values are defined in your
    # system; otherwise, a 404 may occur" (docs/partners/vendor.md). Its message tells which.
    _REFERENCES = ("paymentset", "currency")

    def not_found_advice(self, partner_says: str) -> str:
        said = partner_says.lower().replace("_", "")
        if any(word in said for word in self._REFERENCES):
            return (
                "the vendor does not know a referenced value (paymentSetId or currencyCode):"
                " define it at the vendor or correct the event, then replay"
            )
        return super().not_found_advice(partner_says)

    always_sent = frozenset({"code", "erpCode", "updateCode"})  # which record, and its new code
    public_fields = frozenset(
        {
            "isCompany", "isForeignNational", "canUseMobile", "sendMail", "isActive",
            "countryCode", "cityCode", "districtCode", "currencyCode", "paymentSetId",
            "customerRepresentativeIds",
        }
    )  # fmt: skip  # flags and reference codes; names, ids, contacts and addresses are not

    @classmethod
    def settings_fields(cls) -> dict[str, fields.Field[Any]]:
        return {
            "token_url": fields.String(
                data_key=f"{_P}TOKEN_URL", validate=validate.URL(require_tld=False)
            ),
            "username": fields.String(data_key=f"{_P}USERNAME"),
            "password": fields.String(data_key=f"{_P}PASSWORD"),
            "access_token": fields.String(data_key=f"{_P}ACCESS_TOKEN"),
            "token_renew_margin_s": fields.Float(
                data_key=f"{_P}TOKEN_RENEW_MARGIN_S",
                load_default=60.0,
                validate=validate.Range(min=0),
            ),
        }

    @classmethod
    def check_options(cls, base_url: str, options: Mapping[str, Any]) -> str | None:
        if options.get("access_token"):
            return None
        for key in ("username", "password"):
            if not options.get(key):
                return (
                    f"{_P}{key.upper()}: required when CUSTSYNC_VENDOR_BASE_URL is set"
                    f" (or set {_P}ACCESS_TOKEN)"
                )
        return None

    @classmethod
    def check_event(cls, event: Event) -> dict[str, list[str]]:
        update_code = event.changes.get("updateCode")
        if update_code is not None and update_code != event.customer_id:
            return {"changes.updateCode": ["Must equal customer_id (the current code)."]}
        return {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        opts = self.config.options
        self.token_url = opts.get("token_url") or f"{self.config.base_url}/vendor/auth/token"
        self.renewals = 0
        self.token = SharedToken(
            self.redis,
            self.keys.token(self.name),
            self.keys.token_lock(self.name),
            self._fetch_token,
            renew_margin_s=opts.get("token_renew_margin_s", 60.0),
            on_renew=self._count_renewal,
        )

    def _count_renewal(self) -> None:
        self.renewals += 1
        self.metrics.token_renewal(self.name)

    def build_request(self, event: Event) -> PartnerRequest:
        url = f"{self.config.base_url}/vendor/customer/{quote(event.customer_id, safe='')}"
        return PartnerRequest("PUT", url, event.changes)

    def customer_after(self, event: Event) -> str:
        return str(event.changes.get("code") or event.customer_id)

    def _current_token(self) -> str:
        static = self.config.options.get("access_token")
        return str(static) if static else self.token.get()

    def send(self, event: Event) -> requests.Response:
        req = self.build_request(event)
        token = self._current_token()
        response = self.http(req, event.event_id, {"Authorization": f"Bearer {token}"})
        if response.status_code == 401 and not self.config.options.get("access_token"):
            token = self.token.refused(token)  # renewed once, by one worker
            response = self.http(req, event.event_id, {"Authorization": f"Bearer {token}"})
        return response

    def _fetch_token(self) -> tuple[str, float]:
        opts = self.config.options
        credentials = {"username": opts["username"], "password": opts["password"]}
        try:
            response = self.session.post(
                self.token_url, json=credentials, timeout=self.config.timeout
            )
        except requests.RequestException as exc:
            raise PartnerUnavailable(f"vendor token endpoint: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise PartnerUnavailable(
                f"vendor token endpoint answered {response.status_code}",
                status=response.status_code,
            )
        if response.status_code != 200:
            raise AuthFailed(
                f"vendor token endpoint refused the credentials ({response.status_code})",
                status=response.status_code,
            )
        return _parse_token(response)


def _parse_token(response: requests.Response) -> tuple[str, float]:
    """accessToken/access_token with expiresIn/expires_in/expiresAt (docs/partners/vendor.md)."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, Mapping):
        raise AuthFailed("vendor token endpoint answered without a JSON object")
    token = data.get("accessToken") or data.get("access_token")
    if not isinstance(token, str) or not token:
        raise AuthFailed("vendor token endpoint answered without accessToken")
    lifetime = data.get("expiresIn", data.get("expires_in"))
    if lifetime is None and data.get("expiresAt"):
        try:
            when = datetime.fromisoformat(str(data["expiresAt"]).replace("Z", "+00:00"))
            lifetime = when.timestamp() - time.time()
        except ValueError:
            lifetime = None
    try:
        seconds = float(lifetime) if lifetime is not None else 300.0
    except (TypeError, ValueError):
        seconds = 300.0
    return token, max(1.0, seconds)
