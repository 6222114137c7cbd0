"""A corpus of broker messages that are not valid calls of our task, as raw Redis list items.

Each is derived from a real message (``MessageBuilder``), broken in one way; some are not
messages at all. Names say what is broken, so a failure points at its case.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from typing import Any

from tests.events import MINTED_EXAMPLE, envelope, new_id


def _decode(raw: str) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(raw)
    return message


def _with_body(message: dict[str, Any], body: Any) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body, allow_nan=True)
    message["body"] = base64.b64encode(text.encode()).decode()
    return message


def _body(message: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(message["body"]))


def _edit(mutate: Callable[[dict[str, Any]], Any]) -> Callable[[str], bytes]:
    def build(valid: str) -> bytes:
        message = _decode(valid)
        result = mutate(message)
        out = message if result is None else result
        return out if isinstance(out, bytes) else json.dumps(out, allow_nan=True).encode()

    return build


def _header(name: str, value: Any) -> Callable[[str], bytes]:
    return _edit(lambda m: m["headers"].__setitem__(name, value))


def _prop(name: str, value: Any) -> Callable[[str], bytes]:
    return _edit(lambda m: m["properties"].__setitem__(name, value))


def _drop_prop(name: str) -> Callable[[str], bytes]:
    return _edit(lambda m: m["properties"].pop(name))


def _args(body: Callable[[Any], Any]) -> Callable[[str], bytes]:
    return _edit(lambda m: _with_body(m, body(_body(m))))


def _delivery(delivery: Any) -> Callable[[Any], Any]:
    return lambda b: [b[0], {"delivery": delivery}, b[2]]


RANDOM = random.Random(20261204)
PICKLE = "application/x-python-serialize"

# (case, how to break a valid message); the argument is the valid message's JSON.
CASES: list[tuple[str, Callable[[str], bytes]]] = [
    ("not-json", lambda _: b"this is not json"),
    ("random-bytes", lambda _: bytes(RANDOM.getrandbits(8) for _ in range(300))),
    ("json-array", lambda _: b"[1, 2, 3]"),
    ("json-string", lambda _: b'"a string"'),
    ("json-null", lambda _: b"null"),
    ("deep-nesting", lambda _: b"[" * 200_000 + b"]" * 200_000),
    ("empty-object", lambda _: b"{}"),
    ("properties-missing", _edit(lambda m: m.pop("properties"))),
    ("properties-a-list", _edit(lambda m: m.__setitem__("properties", []))),
    ("delivery-tag-missing", _drop_prop("delivery_tag")),
    ("delivery-tag-number", _prop("delivery_tag", 7)),
    ("delivery-info-missing", _drop_prop("delivery_info")),
    ("body-encoding-unknown", _prop("body_encoding", "rot13")),
    ("body-encoding-number", _prop("body_encoding", 64)),
    ("body-bad-base64", _edit(lambda m: m.__setitem__("body", "not base64!"))),
    ("body-not-a-string", _edit(lambda m: m.__setitem__("body", {"a": 1}))),
    ("body-not-json", _edit(lambda m: _with_body(m, "{not json"))),
    ("body-one-element", _args(lambda b: [b[0][0]])),
    ("body-envelope-only", _args(lambda b: b[0][0])),
    ("body-two-elements", _args(lambda b: b[:2])),
    ("body-args-not-list", _args(lambda b: [b[0][0], {}, {}])),
    ("body-three-args", _args(lambda b: [[b[0][0], None, 3], {}, b[2]])),
    ("body-unknown-kwarg", _args(lambda b: [b[0], {"priority": "high"}, b[2]])),
    ("body-envelope-twice", _args(lambda b: [b[0], {"envelope": b[0][0]}, b[2]])),
    ("body-no-envelope", _args(lambda b: [[], {}, b[2]])),
    ("embed-callbacks", _args(lambda b: [b[0], b[1], {"callbacks": [{"task": "x"}]}])),
    ("embed-not-object", _args(lambda b: [b[0], b[1], "chain"])),
    ("delivery-attempts-infinity", _args(_delivery({"attempts": float("inf")}))),
    ("delivery-attempts-huge", _args(_delivery({"attempts": 10**30}))),
    ("delivery-first-seen-nan", _args(_delivery({"first_seen_at": float("nan")}))),
    ("delivery-first-seen-future", _args(_delivery({"first_seen_at": 1e18}))),
    ("delivery-not-object", _args(_delivery([1, 2]))),
    ("delivery-unknown-key", _args(_delivery({"retries": 3}))),
    ("content-type-empty", _edit(lambda m: m.__setitem__("content-type", ""))),
    ("content-type-pickle", _edit(lambda m: m.__setitem__("content-type", PICKLE))),
    ("content-type-number", _edit(lambda m: m.__setitem__("content-type", 5))),
    ("content-encoding-latin", _edit(lambda m: m.__setitem__("content-encoding", "latin-1"))),
    ("headers-missing", _edit(lambda m: m.pop("headers"))),
    ("headers-a-list", _edit(lambda m: m.__setitem__("headers", ["task"]))),
    ("header-compression-unknown", _header("compression", "application/x-nonsense")),
    ("header-compression-bad-zlib", _header("compression", "application/x-gzip")),
    ("header-task-unknown", _header("task", "custsync.other_task")),
    ("header-task-number", _header("task", 123)),
    ("header-id-missing", _edit(lambda m: m["headers"].pop("id"))),
    ("header-id-object", _header("id", {"a": 1})),
    ("header-eta-garbage", _header("eta", "next tuesday")),
    ("header-eta-number", _header("eta", 12)),
    ("header-retries-string", _header("retries", "many")),
    ("header-timelimit-string", _header("timelimit", "soon")),
    ("header-timelimit-three", _header("timelimit", [1, 2, 3])),
    ("header-timelimit-infinity", _header("timelimit", [float("inf"), None])),
    ("header-root-id-list", _header("root_id", [1])),
    ("header-ignore-result-string", _header("ignore_result", "yes")),
    ("header-stamps-string", _header("stamps", "x")),
    ("header-group-index-string", _header("group_index", "1")),
]  # fmt: skip


def oversized(valid: str, size: int) -> bytes:
    """A well-formed message whose envelope is larger than the limit."""
    message = _decode(valid)
    body = _body(message)
    body[0][0]["changes"]["middlename"] = "x" * size
    return json.dumps(_with_body(message, body)).encode()


def valid_envelope(customer_id: str) -> dict[str, Any]:
    return envelope("minted", customer_id, {**MINTED_EXAMPLE, "external_id": customer_id})


def marker_envelope() -> dict[str, Any]:
    """An envelope for a customer nobody has: if it were ever applied, the test would see it."""
    return envelope("minted", new_id("GARBAGE"), dict(MINTED_EXAMPLE))
