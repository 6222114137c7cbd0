"""Is a broker message a valid call of ``custsync.apply_update`` or ``custsync.apply_batch``?
Checked before Celery sees it.

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

from custsync.state.keys import BATCH_ITEMS_MAX, BATCH_TASK_NAME, TASK_NAME

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


@dataclass(frozen=True)
class BatchCall:
    items: list[TaskCall]  # in the order the producer packed them


def _text(**kw: Any) -> fields.String:
    return fields.String(allow_none=True, validate=validate.Length(max=1024), **kw)


class _HeadersSchema(Schema):
    """The protocol v2 headers Celery reads, with the types it needs."""

    class Meta:
        unknown = INCLUDE  # other headers travel unread

    task = fields.String(required=True, validate=validate.OneOf([TASK_NAME, BATCH_TASK_NAME]))
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


def _check_wrapping(body: Any) -> tuple[list[Any], Mapping[str, Any]]:
    """Protocol v2's ``[args, kwargs, embed]``, without callbacks: (args, kwargs)."""
    if not isinstance(body, list) or len(body) != 3:
        raise Malformed("body", "not protocol v2's [args, kwargs, embed] list")
    args, kwargs, embed = body
    if not isinstance(args, list) or not isinstance(kwargs, Mapping):
        raise Malformed("body", "args must be a list and kwargs an object")
    if embed is not None and not isinstance(embed, Mapping):
        raise Malformed("body.embed", "not an object")
    if (embed and any(embed.get(k) for k in _EMBED_KEYS)) or set(embed or {}) - set(_EMBED_KEYS):
        raise Malformed("body.embed", "callbacks, chains and chords are not accepted")
    return args, kwargs


def check_body(body: Any) -> TaskCall:
    """Protocol v2's ``[args, kwargs, embed]`` binding to ``apply_update(envelope, delivery)``."""
    args, kwargs = _check_wrapping(body)
    named = dict(zip(("envelope", "delivery"), args, strict=False))
    if len(args) > 2 or set(kwargs) - {"envelope", "delivery"} or set(named) & set(kwargs):
        raise Malformed("body", "apply_update takes (envelope, delivery=None)")
    named.update(kwargs)
    if "envelope" not in named:
        raise Malformed("body", "no envelope argument")
    return TaskCall(named["envelope"], check_delivery(named.get("delivery")))


def check_batch_body(body: Any) -> BatchCall:
    """Protocol v2's body binding to ``apply_batch(items)``; each item is
    ``{"envelope": ..., "delivery": ...}`` (delivery optional), as the journal stores it."""
    args, kwargs = _check_wrapping(body)
    if len(args) > 1 or set(kwargs) - {"items"} or (args and kwargs):
        raise Malformed("body", "apply_batch takes (items)")
    items = args[0] if args else kwargs.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= BATCH_ITEMS_MAX:
        raise Malformed("body.items", f"must be a list of 1 to {BATCH_ITEMS_MAX} items")
    calls = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or "envelope" not in item:
            raise Malformed(f"body.items[{i}]", "not an object with an envelope")
        if set(item) - {"envelope", "delivery"}:
            raise Malformed(f"body.items[{i}]", "only envelope and delivery are accepted")
        try:
            delivery = check_delivery(item.get("delivery"))
        except Malformed as exc:
            raise Malformed(f"body.items[{i}].{exc.part}", str(exc).split(": ", 1)[1]) from None
        calls.append(TaskCall(item["envelope"], delivery))
    return BatchCall(calls)


# Room for protocol v2's wrapping and the delivery record around an envelope of max_bytes.
_BODY_OVERHEAD_BYTES = 4096


# A batch holds at most BATCH_ITEMS_MAX events; producers split before this many bytes too.
BATCH_BYTES_MAX = 16 * 1024 * 1024


def max_body_bytes(task: Any, max_event_bytes: int) -> int:
    """The largest body the guard decodes for this task."""
    if task == BATCH_TASK_NAME:
        return max(BATCH_BYTES_MAX, 2 * max_event_bytes)
    return max_event_bytes + _BODY_OVERHEAD_BYTES


def check_content(content_type: Any, content_encoding: Any, size: int, max_bytes: int) -> None:
    """``max_bytes``: ``max_body_bytes`` of the message's task."""
    if content_type != JSON:
        raise Malformed("content-type", f"must be {JSON}")
    if content_encoding not in (None, "", "utf-8", "utf8"):
        raise Malformed("content-encoding", "must be utf-8")
    if size > max_bytes:
        limit = f"over the limit of {max_bytes} (CUSTSYNC_MAX_EVENT_BYTES)"
        raise Malformed("body", f"{size} bytes, {limit}")
