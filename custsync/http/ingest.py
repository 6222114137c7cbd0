"""``POST /v1/events``: authenticated, idempotent, rate-limited, all-or-nothing ingest.

Order matters: size and content type are checked from headers, the signature or key before
the body is parsed, then the source's rate, then idempotency, then validation by the same
code as ``custsync publish`` (``publish_many``), which enqueues all or nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Response, current_app, g, request
from flask_smorest import Blueprint
from standardwebhooks import WebhookVerificationError

from custsync.http.answers import answer, problem
from custsync.http.idempotency import Claim, claim
from custsync.http.schemas import (
    REQUEST_BODY,
    AcceptedSchema,
    InvalidSchema,
    ProblemSchema,
)
from custsync.http.sources import Source
from custsync.producer import EventValidationError, publish_many

blp = Blueprint("events", __name__, url_prefix="/v1", description="Event ingest")

JSON, NDJSON = "application/json", "application/x-ndjson"


class Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _authenticate(body: bytes) -> Source:
    sources: dict[str, Source] = current_app.config["CUSTSYNC_SOURCES"]
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        key = auth[len("Bearer ") :].strip()
        for source in sources.values():
            if source.takes_key(key):
                return source
        raise Refused(problem(401, "unauthorized", "unknown API key"))
    if "webhook-signature" in request.headers:
        headers = {k: v for k, v in request.headers.items()}
        for source in sources.values():
            for hook in source.webhooks:
                try:
                    hook.verify(body, headers, json_parse=False)
                except WebhookVerificationError:
                    continue
                return source
        raise Refused(
            problem(401, "unauthorized", "no configured secret verifies this signature and time")
        )
    if not sources and current_app.config["CUSTSYNC_OPEN"]:
        return Source("loopback", (), frozenset(), 0.0, 0)  # no source: loopback only
    raise Refused(problem(401, "unauthorized", "sign with Standard Webhooks or send a Bearer key"))


def _throttle(source: Source) -> None:
    if source.rate_per_s <= 0:
        return
    rt = current_app.config["CUSTSYNC_RUNTIME"]
    wait_ms = rt.scripts(
        "ingest_rate",
        keys={"tat": rt.keys.ingest_rate(source.name)},
        args={
            "now_ms": int(time.time() * 1000),
            "interval_ms": 1000.0 / source.rate_per_s,
            "burst": source.burst,
        },
    )
    if wait_ms:
        refused = problem(429, "rate limited", f"source {source.name} is over its rate")
        refused.headers["Retry-After"] = str(max(1, -(-int(wait_ms) // 1000)))
        raise Refused(refused)


def _events(body: bytes, kind: str) -> list[Any]:
    limit = current_app.config["CUSTSYNC_SETTINGS"].ingest_max_events
    if kind == NDJSON:
        lines = [(n, line) for n, line in enumerate(body.split(b"\n"), 1) if line.strip()]
        events = [_parse(line, f"line {n}: ") for n, line in lines]
    else:
        parsed = _parse(body, "")
        events = parsed if isinstance(parsed, list) else [parsed]
    if not events:
        raise Refused(problem(400, "no events", "the body holds no event"))
    if len(events) > limit:
        raise Refused(problem(413, "too many events", f"at most {limit} events per request"))
    return events


def _parse(raw: bytes, where: str) -> Any:
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise Refused(problem(400, "malformed", f"{where}not UTF-8 text")) from None
    except json.JSONDecodeError as exc:  # the message names a position, never the text
        detail = f"{where}not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        raise Refused(problem(400, "malformed", detail)) from None


def _accept(events: list[Any], source: Source) -> Response:
    for event in events:
        if isinstance(event, dict):
            event["source"] = source.name  # who sent it, as authenticated
    try:
        publish_many(events, app=current_app.config["CUSTSYNC_PRODUCER"])
    except EventValidationError as exc:
        return _invalid(events, exc.messages)
    ids = [e["event_id"] for e in events]
    g.events = len(ids)
    return answer(202, {"accepted": len(ids), "event_ids": ids})


def _invalid(events: list[Any], messages: Any) -> Response:
    found = []
    for index, errors in sorted(messages.items()):
        event = events[index]
        event_id = event.get("event_id") if isinstance(event, dict) else None
        found.append(
            {
                "index": index,
                "event_id": event_id if isinstance(event_id, str) else None,
                "errors": errors,
            }
        )
    body = {
        "error": "invalid events",
        "detail": f"{len(found)} of {len(events)} events are invalid; none was enqueued",
        "events": found,
    }
    return answer(422, body)


@blp.route("/events", methods=["POST"])
@blp.doc(
    summary="Enqueue one event, a JSON array of events, or NDJSON: all or nothing",
    requestBody=REQUEST_BODY,
    security=[{"standardWebhooks": []}, {"apiKey": []}],
)
@blp.response(202, AcceptedSchema, description="every event enqueued")
@blp.alt_response(400, schema=ProblemSchema, description="malformed body")
@blp.alt_response(401, schema=ProblemSchema, description="missing or bad signature or key")
@blp.alt_response(409, schema=ProblemSchema, description="the same id is being handled")
@blp.alt_response(413, schema=ProblemSchema, description="body or event count over the limit")
@blp.alt_response(415, schema=ProblemSchema, description="not JSON nor NDJSON")
@blp.alt_response(422, schema=InvalidSchema, description="invalid events; none enqueued")
@blp.alt_response(429, schema=ProblemSchema, description="over the source's rate: Retry-After")
@blp.alt_response(500, schema=ProblemSchema, description="a fault of ours")
def post_events() -> Response:
    kind = (request.mimetype or "").lower()
    if kind not in (JSON, NDJSON):
        return problem(415, "unsupported media type", f"send {JSON} or {NDJSON}")
    body = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413 before reading it
    try:
        source = _authenticate(body)
        g.source = source.name
        _throttle(source)
        key = request.headers.get("webhook-id") or request.headers.get("Idempotency-Key")
        seen: Claim | None = claim(source.name, key) if key else None
        if seen is not None and seen.earlier is not None:
            return seen.earlier
        try:
            response = _accept(_events(body, kind), source)
        except Refused as refused:
            response = refused.response
        except Exception:
            if seen is not None:
                seen.release()  # a failure of ours: the sender may try again
            raise
        if seen is not None:
            seen.keep(response)
        return response
    except Refused as refused:
        return refused.response
