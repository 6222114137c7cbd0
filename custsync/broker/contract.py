"""Is a broker message a valid call of ``custsync.apply_update``? Checked before Celery sees it.

Any Celery client, or a bug in one, can put anything on the queue. Celery turns some of it
into errors that stop the worker (a body that is not protocol v2's three-element list, a
header of the wrong type) and acknowledges other parts away (an unknown task, an expired
one). So every message is checked here first, field by field, and what fails is a
``Malformed`` that names the part at fault; nothing of the message's content is echoed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, validate

from custsync.state.keys import TASK_NAME

JSON = "application/json"
MALFORMED_HEADER = "x-custsync-malformed"  # set by the Redis transport on raw garbage
MALFORMED_RAW = "x-custsync-raw"  # its body, base64, in the wrapper's properties
_MAX_ATTEMPTS = 1_000_000
_EMBED_KEYS = ("callbacks", "errbacks", "chain", "chord")


class Malformed(Exception):
    """Why a message is not a valid task call; ``part`` names where (e.g. ``headers.eta``)."""

    def __init__(self, part: str, problem: str) -> None:
        super().__init__(f"{part}: {problem}")
        self.part = part


@dataclass(frozen=True)
class TaskCall:
    envelope: Any  # the pipeline validates it: an invalid envelope is the DLQ's `invalid`
    delivery: Mapping[str, Any] | None


def _text(**kw: Any) -> fields.String:
    return fields.String(allow_none=True, validate=validate.Length(max=1024), **kw)


class _HeadersSchema(Schema):
    """The protocol v2 headers Celery reads, with the types it needs."""

    class Meta:
        unknown = INCLUDE  # other headers travel unread

    task = fields.String(required=True, validate=validate.Equal(TASK_NAME))
    id = fields.String(required=True, validate=validate.Length(min=1, max=256))
    lang = _text()
    root_id = _text()
    parent_id = _text()
    group = _text()
    shadow = _text()
    origin = _text()
    argsrepr = fields.String(allow_none=True)
    kwargsrepr = fields.String(allow_none=True)
    eta = fields.AwareDateTime(allow_none=True, format="iso")
    expires = fields.Raw(allow_none=True)
    retries = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0))
    timelimit = fields.List(
        fields.Float(allow_none=True, validate=validate.Range(min=0), allow_nan=False),
        allow_none=True,
        validate=validate.Length(equal=2),
    )
    ignore_result = fields.Boolean(allow_none=True, truthy={True}, falsy={False})
    group_index = fields.Integer(strict=True, allow_none=True)
    replaced_task_nesting = fields.Integer(strict=True, allow_none=True)
    stamped_headers = fields.List(fields.String(), allow_none=True)
    stamps = fields.Dict(allow_none=True)


class _DeliverySchema(Schema):
    """custsync's own delivery record, as ``Delivery.as_dict`` writes it."""

    class Meta:
        unknown = RAISE

    attempts = fields.Integer(strict=True, validate=validate.Range(0, _MAX_ATTEMPTS))
    first_seen_at = fields.Float(allow_nan=False)
    replays = fields.Integer(strict=True, validate=validate.Range(0, _MAX_ATTEMPTS))
    force = fields.Boolean(truthy={True}, falsy={False})


_HEADERS = _HeadersSchema()
_DELIVERY = _DeliverySchema()


def _first_error(exc: ValidationError, prefix: str) -> Malformed:
    messages = exc.messages
    if isinstance(messages, Mapping) and messages:
        name, problem = next(iter(messages.items()))
        if isinstance(problem, list) and problem and isinstance(problem[0], str):
            return Malformed(f"{prefix}.{name}", problem[0].rstrip("."))
        return Malformed(f"{prefix}.{name}", "not valid")
    return Malformed(prefix, "not valid")


def check_headers(headers: Any) -> None:
    if not isinstance(headers, Mapping):
        raise Malformed("headers", "not an object (not a protocol v2 task message)")
    if MALFORMED_HEADER in headers:
        raise Malformed("message", str(headers[MALFORMED_HEADER])[:200])
    try:
        _HEADERS.load(headers)
    except ValidationError as exc:
        raise _first_error(exc, "headers") from None


def check_delivery(delivery: Any) -> Mapping[str, Any] | None:
    if delivery is None:
        return None
    if not isinstance(delivery, Mapping):
        raise Malformed("delivery", "not an object")
    try:
        _DELIVERY.load(delivery)
    except ValidationError as exc:
        raise _first_error(exc, "delivery") from None
    first_seen = delivery.get("first_seen_at")
    if first_seen is not None and not (0 <= first_seen <= time.time() + 86_400):
        raise Malformed("delivery.first_seen_at", "out of range")
    return delivery


def check_body(body: Any) -> TaskCall:
    """Protocol v2's ``[args, kwargs, embed]`` binding to ``apply_update(envelope, delivery)``."""
    if not isinstance(body, list) or len(body) != 3:
        raise Malformed("body", "not protocol v2's [args, kwargs, embed] list")
    args, kwargs, embed = body
    if not isinstance(args, list) or not isinstance(kwargs, Mapping):
        raise Malformed("body", "args must be a list and kwargs an object")
    if embed is not None and not isinstance(embed, Mapping):
        raise Malformed("body.embed", "not an object")
    if (embed and any(embed.get(k) for k in _EMBED_KEYS)) or set(embed or {}) - set(_EMBED_KEYS):
        raise Malformed("body.embed", "callbacks, chains and chords are not accepted")
    named = dict(zip(("envelope", "delivery"), args, strict=False))
    if len(args) > 2 or set(kwargs) - {"envelope", "delivery"} or set(named) & set(kwargs):
        raise Malformed("body", "apply_update takes (envelope, delivery=None)")
    named.update(kwargs)
    if "envelope" not in named:
        raise Malformed("body", "no envelope argument")
    return TaskCall(named["envelope"], check_delivery(named.get("delivery")))


# Room for protocol v2's wrapping and the delivery record around an envelope of max_bytes.
_BODY_OVERHEAD_BYTES = 4096


def check_content(content_type: Any, content_encoding: Any, size: int, max_bytes: int) -> None:
    if content_type != JSON:
        raise Malformed("content-type", f"must be {JSON}")
    if content_encoding not in (None, "", "utf-8", "utf8"):
        raise Malformed("content-encoding", "must be utf-8")
    if size > max_bytes + _BODY_OVERHEAD_BYTES:
        raise Malformed("body", f"{size} bytes, over CUSTSYNC_MAX_EVENT_BYTES ({max_bytes})")
