"""Edit and replay: a dead-lettered event, corrected by an operator, goes out as a new event.

The new event gets a new event id (the partner may keep the old Idempotency-Key's answer, so
the same id would only replay the refusal) and keeps the original's time and sequence, so
the version guard still orders it among the customer's other changes. One script takes the
original out of the DLQ and pushes the new event (``DlqStore.take``). The audit links the
two ids and records which fields changed, values masked unless known not to be personal.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from marshmallow import fields as ma_fields

from custsync.broker.messages import MessageBuilder, item_json
from custsync.delivery import Delivery
from custsync.dlq.entry import DeadLetter
from custsync.dlq.store import TAKEN
from custsync.errors import InvalidEvent
from custsync.privacy import mask_text, personal_values
from custsync.runtime import Runtime
from custsync.targets import REGISTRY, public_fields
from custsync.validation import validate_event

MASK = "***"


class EditError(Exception):
    """The edit cannot be sent; the message names the field (values masked)."""


@dataclass(frozen=True)
class Edit:
    entry: DeadLetter
    envelope: dict[str, Any]  # the new event

    @property
    def event_id(self) -> str:
        return str(self.envelope["event_id"])

    def diff(self) -> dict[str, list[Any]]:
        """Changed fields: {field: [before, after]}, values masked unless non-personal."""
        before = _changes(self.entry.envelope)
        after = _changes(self.envelope)
        public = public_fields(self.entry.target)
        out: dict[str, list[Any]] = {}
        for name in sorted(set(before) | set(after)):
            if before.get(name, _ABSENT) == after.get(name, _ABSENT):
                continue
            out[name] = [
                _shown(name, before.get(name, _ABSENT), public),
                _shown(name, after.get(name, _ABSENT), public),
            ]
        return out


_ABSENT = object()


def _changes(envelope: Any) -> dict[str, Any]:
    changes = envelope.get("changes") if isinstance(envelope, dict) else None
    return changes if isinstance(changes, dict) else {}


def _shown(name: str, value: Any, public: frozenset[str]) -> Any:
    if value is _ABSENT:
        return "(absent)"
    return value if name in public else MASK


def form_fields(target: str) -> list[str]:
    """The fields of the partner's schema, in its order: the edit form's inputs."""
    cls = REGISTRY.get(target)
    return list(cls.changes_schema().fields) if cls is not None else []


def typed_value(target: str, name: str, text: str) -> Any:
    """A form's text as the schema wants it: strings stay text, anything else is JSON
    (a number, true/false, a list); what does not parse goes on as text for the schema
    to name."""
    cls = REGISTRY.get(target)
    field = cls.changes_schema().fields.get(name) if cls is not None else None
    if field is None or isinstance(field, ma_fields.String):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def prepare(rt: Runtime, entry: DeadLetter, changes: dict[str, Any]) -> Edit:
    """The edited event, validated as the partner's schema says; EditError if it is not."""
    if not isinstance(entry.envelope, dict) or not entry.target:
        raise EditError("this entry's envelope is not an event object: it cannot be edited")
    envelope = copy.deepcopy(entry.envelope)
    envelope["changes"] = changes
    envelope["event_id"] = str(uuid.uuid4())
    edit = Edit(entry, envelope)
    if not edit.diff():
        raise EditError("nothing changed: edit at least one field")
    try:
        validate_event(envelope, rt.settings)
    except InvalidEvent as exc:
        known = personal_values(changes, public_fields(entry.target))
        raise EditError(mask_text(str(exc), known, entry.customer_id)) from None
    return edit


def send(rt: Runtime, app: Any, edit: Edit, raw: str) -> bool:
    """Take the original out of the DLQ and enqueue the edit, in one step. False if the
    entry changed or left meanwhile (another replay, edit or purge): nothing was sent."""
    delivery = Delivery(attempts=0, first_seen_at=time.time(), replays=edit.entry.replays + 1)
    builder = MessageBuilder(app)
    message = (builder.key_for(edit.envelope), builder.build(edit.envelope, delivery.as_dict()))
    answer = rt.dlq.take(
        edit.entry,
        raw,
        message=message,
        journal_body=item_json(edit.envelope, delivery.as_dict()),
        journal_event_id=edit.event_id,
        keep_history_ms=int(rt.dlq.retention.policy.max_age_s * 1000),
    )
    return int(answer) == TAKEN


def audit_scope(edit: Edit) -> dict[str, Any]:
    return {"from": edit.entry.event_id, "to": edit.event_id, "diff": edit.diff()}
