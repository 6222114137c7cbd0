"""Who may send events: the sources of CUSTSYNC_INGEST_SOURCES[_FILE], each with its
Standard Webhooks secrets and/or API keys and an optional rate."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate
from standardwebhooks import Webhook

from custsync.errors import SettingsError

VARIABLE = "CUSTSYNC_INGEST_SOURCES"
NAME = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", error="Not a source name.")


class _SourceSchema(Schema):
    class Meta:
        unknown = RAISE

    webhook_secrets = fields.List(
        fields.String(validate=validate.Regexp(r"^whsec_[A-Za-z0-9+/=]{8,}$")), load_default=[]
    )
    api_keys = fields.List(fields.String(validate=validate.Length(min=16)), load_default=[])
    rate_per_s = fields.Float(load_default=0.0, validate=validate.Range(min=0))
    burst = fields.Integer(load_default=0, validate=validate.Range(min=0))


@dataclass(frozen=True)
class Source:
    name: str
    webhooks: tuple[Webhook, ...]  # one per secret: several while a secret rotates
    key_digests: frozenset[bytes]  # SHA-256 of each API key: keys are not kept
    rate_per_s: float  # 0: unlimited
    burst: int

    def takes_key(self, key: str) -> bool:
        return hashlib.sha256(key.encode()).digest() in self.key_digests


def parse_sources(raw: str | None) -> dict[str, Source]:
    """The sources from the variable's JSON; SettingsError names the source and field."""
    if not raw:
        return {}
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        detail = f"not valid JSON ({exc.msg} at column {exc.colno})"
        raise SettingsError(f"{VARIABLE}: {detail}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{VARIABLE}: must be an object of source name -> settings")
    sources: dict[str, Source] = {}
    for name, entry in data.items():
        try:
            NAME(name)
            loaded = _SourceSchema().load(entry)
        except ValidationError as exc:
            raise SettingsError(f"{VARIABLE}: source {name!r}: {_first(exc)}") from None
        if not loaded["webhook_secrets"] and not loaded["api_keys"]:
            raise SettingsError(f"{VARIABLE}: source {name!r}: no webhook_secrets nor api_keys")
        sources[name] = Source(
            name=name,
            webhooks=tuple(Webhook(s) for s in loaded["webhook_secrets"]),
            key_digests=frozenset(hashlib.sha256(k.encode()).digest() for k in loaded["api_keys"]),
            rate_per_s=loaded["rate_per_s"],
            burst=loaded["burst"] or max(1, int(loaded["rate_per_s"])),
        )
    return sources


def _first(exc: ValidationError) -> str:
    messages = exc.messages
    if isinstance(messages, dict):
        field, errors = next(iter(messages.items()))
        if isinstance(errors, dict):  # a list's item: {index: [message]}
            index, inner = next(iter(errors.items()))
            return f"{field}[{index}]: {' '.join(map(str, inner))} (value not shown)"
        return f"{field}: {' '.join(map(str, errors))}"
    return " ".join(map(str, messages))
