"""What the OpenAPI document says of /v1/events: the answers' shapes (as marshmallow schemas)
and the request body, documented only: the body is parsed after the signature is checked,
so no schema may read it first."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields


class ProblemSchema(Schema):
    error = fields.String(required=True, metadata={"description": "what went wrong, in words"})
    detail = fields.String(required=True, metadata={"description": "never echoes the body"})
    errors = fields.Dict(metadata={"description": "a request's field errors, by location"})


class AcceptedSchema(Schema):
    accepted = fields.Integer(required=True)
    event_ids = fields.List(fields.String(), required=True)


class EventProblemSchema(Schema):
    index = fields.Integer(required=True, metadata={"description": "position in the request"})
    event_id = fields.String(allow_none=True, required=True)
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(),
        required=True,
        metadata={"description": "field (dotted path) -> messages"},
    )


class InvalidSchema(ProblemSchema):
    events = fields.List(fields.Nested(EventProblemSchema), required=True)


_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "required": ["event_id", "target", "customer_id", "occurred_at", "changes"],
    "properties": {
        "event_id": {"type": "string", "minLength": 1, "maxLength": 200},
        "target": {"type": "string", "enum": ["minted", "vendor"]},
        "customer_id": {"type": "string", "minLength": 1},
        "occurred_at": {"type": "string", "format": "date-time"},
        "sequence": {"type": "integer", "minimum": 0},
        "correlation_id": {"type": "string"},
        "changes": {"type": "object", "description": "the partner's fields (docs/partners/)"},
    },
}

REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"oneOf": [_ENVELOPE, {"type": "array", "items": _ENVELOPE}]}
        },
        "application/x-ndjson": {
            "schema": {"type": "string", "description": "one envelope per line"}
        },
    },
}
