"""Turn a raw envelope into a validated Event, or an InvalidEvent naming each field."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from marshmallow import Schema, ValidationError

from custsync.errors import InvalidEvent
from custsync.fast_validation import Loader, Unsure, fast_loader
from custsync.schemas.envelope import EnvelopeSchema, Event
from custsync.settings import Settings
from custsync.targets import REGISTRY

if TYPE_CHECKING:
    from custsync.targets.base import Target

_ENVELOPE = EnvelopeSchema()
# Valid events skip marshmallow (a quarter of its cost); any other still goes through it.
_FAST_ENVELOPE = fast_loader(_ENVELOPE)


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error dict as ``{"changes.firstname": [...]}``."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            flat.update(flatten_errors(value, name))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        flat[prefix or "_schema"] = list(messages)
    elif isinstance(messages, list):
        for i, value in enumerate(messages):
            flat.update(flatten_errors(value, f"{prefix}[{i}]"))
    else:
        flat[prefix or "_schema"] = [str(messages)]
    return flat


def describe(errors: Mapping[str, list[str]]) -> str:
    """One line: ``changes.firstname: Length must be between 3 and 40.; ...``."""
    return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in sorted(errors.items()))


def _invalid(errors: dict[str, list[str]]) -> InvalidEvent:
    return InvalidEvent(describe(errors), details=errors)


@functools.cache
def _changes_schema(schema_cls: type[Schema]) -> Schema:
    # Building a schema costs ~3x a load; instances are reusable across threads.
    return schema_cls()


@functools.cache
def _fast_changes(schema_cls: type[Schema]) -> Loader | None:
    return fast_loader(_changes_schema(schema_cls))


def _changes_errors(target: Any, changes: Any) -> dict[str, list[str]]:
    """The changes' field errors under their target's schema (none if that is unknown)."""

    target_cls = REGISTRY.get(target) if isinstance(target, str) else None
    if target_cls is None or not isinstance(changes, Mapping):
        return {}
    try:
        _changes_schema(target_cls.changes_schema).load(changes)
    except ValidationError as exc:
        return flatten_errors(exc.messages, "changes")
    return {}


def validate_event(raw: Any, settings: Settings, *, require_configured: bool = True) -> Event:
    """Validate the envelope, the target and the changes; raise InvalidEvent on any fault."""

    accepted = _accept_fast(raw)
    if accepted is None:
        return _validate_by_schemas(raw, settings, require_configured=require_configured)
    event, target_cls = accepted
    _check_configured(event, settings, require_configured=require_configured)
    _check_across_fields(target_cls, event)
    return event


def _accept_fast(raw: Any) -> tuple[Event, type[Target]] | None:
    """The Event marshmallow would build, when the fast loaders vouch for raw; else None."""

    if _FAST_ENVELOPE is None:
        return None
    try:
        event = _FAST_ENVELOPE(raw)
        target_cls = REGISTRY.get(event.target) if isinstance(event, Event) else None
        if target_cls is None:
            return None  # marshmallow names the unknown target
        load_changes = _fast_changes(target_cls.changes_schema)
        if load_changes is None:
            return None
        load_changes(event.changes)
    except Unsure:
        return None
    return event, target_cls


def _validate_by_schemas(raw: Any, settings: Settings, *, require_configured: bool = True) -> Event:
    """marshmallow's path: the one that names every fault, and the fast path's reference."""

    if not isinstance(raw, Mapping):
        raise _invalid({"_envelope": ["Must be a JSON object."]})
    try:
        event: Event = _ENVELOPE.load(raw)
    except ValidationError as exc:
        errors = flatten_errors(exc.messages)
        errors.update(_changes_errors(raw.get("target"), raw.get("changes")))
        raise _invalid(errors) from None
    target_cls = REGISTRY.get(event.target)
    if target_cls is None:
        known = ", ".join(sorted(REGISTRY))
        raise _invalid({"target": [f"Unknown target; known targets: {known}."]})
    _check_configured(event, settings, require_configured=require_configured)
    errors = _changes_errors(event.target, event.changes)
    if errors:
        raise _invalid(errors)
    _check_across_fields(target_cls, event)
    return event


def _check_configured(event: Event, settings: Settings, *, require_configured: bool) -> None:
    if require_configured and settings.target(event.target) is None:
        var = f"CUSTSYNC_{event.target.upper()}_BASE_URL"
        raise _invalid({"target": [f"Target is not configured ({var} is unset)."]})


def _check_across_fields(target_cls: type[Target], event: Event) -> None:
    problems = target_cls.check_event(event)
    if problems:
        raise _invalid(problems)
