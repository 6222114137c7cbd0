"""Scrubbing for everything that leaves the worker as text: log lines and Sentry events.

Three layers, cheapest first: the current event's own personal values (known exactly while
its task runs), then secrets by shape (``Bearer …``, ``password=…``, URL credentials), then
privacy.mask_text's emails and long numbers. The current event's id is never masked, so a
scrubbed line can still be found by it.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from custsync.privacy import MASK, SECRET_WORDS, mask_text, maskable, personal_values
from custsync.targets import REGISTRY, declared_fields, public_fields

_SECRET_WORDS = (*SECRET_WORDS, "passwd", "cookie", "credential")
_SCHEME_SECRET = re.compile(r"(?i)\b(bearer|basic|digest)\s+[^\s'\",;}\]]+")
_KEY_VALUE_SECRET = re.compile(
    r"(?i)((?:password|passwd|secret|token|api[_-]?key|authorization|dsn)[\w-]*['\"]?\s*[:=]\s*['\"]?)"
    r"((?:(?:bearer|basic|digest)\s+)?[^'\"\s,;&}\]]+)"
)
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s@]*@")

# The envelope of the event this thread is handling (threads pool: one context per thread).
_current: ContextVar[Any] = ContextVar("custsync_current_envelope", default=None)


class _Handling:
    __slots__ = ("_envelope", "_token")

    def __init__(self, envelope: Any) -> None:
        self._envelope = envelope

    def __enter__(self) -> None:
        self._token = _current.set(self._envelope)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _current.reset(self._token)


def handling(envelope: Any) -> _Handling:
    """``with handling(envelope):`` marks this thread's current event, so scrubbing knows
    its personal values (a ContextVar: the threads pool gives each thread its own)."""
    return _Handling(envelope)


@functools.cache
def _target_names() -> frozenset[str]:
    return frozenset(REGISTRY)


def _context() -> tuple[list[str], str, Any]:
    """(personal values, event id, customer id) of the current event, or nothing outside a
    task."""
    envelope = _current.get()
    if not isinstance(envelope, Mapping):
        return [], "", None
    event_id = envelope.get("event_id")
    event_id = event_id if isinstance(event_id, str) else ""
    # A first name "vendor" must not mask the target's name in every message about it.
    kept = [*_target_names(), event_id]
    known = personal_values(envelope.get("changes"), public_fields(envelope.get("target")))
    return maskable(known, kept), event_id, envelope.get("customer_id")


def _mask_secrets(text: str) -> str:
    text = _URL_CREDENTIALS.sub(rf"\1:{MASK}@", text)
    text = _KEY_VALUE_SECRET.sub(rf"\1{MASK}", text)
    return _SCHEME_SECRET.sub(rf"\1 {MASK}", text)


def scrub_text(text: str) -> str:
    """``text`` without personal values or secrets; the current event id survives."""
    known, event_id, customer_id = _context()
    if event_id and event_id in text:
        parts = text.split(event_id)
        return event_id.join(mask_text(_mask_secrets(p), known, customer_id) for p in parts)
    return mask_text(_mask_secrets(text), known, customer_id)


@functools.cache
def _personal_keys() -> frozenset[str]:
    return frozenset(f.lower() for f in declared_fields())


def is_sensitive_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    return lowered in _personal_keys() or any(word in lowered for word in _SECRET_WORDS)


def scrub_value(value: Any) -> Any:
    """A deep copy of ``value`` with sensitive keys masked and every string scrubbed."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {
            k: (MASK if is_sensitive_key(k) and v not in (None, "") else scrub_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub_value(v) for v in value]
    return value


# -- Sentry ------------------------------------------------------------------------------
# Parts of an event that carry data; the rest (ids, timestamps, SDK info) must stay intact.
_SDK_CONTEXTS = frozenset({"trace", "runtime", "os", "device", "app"})
_OUR_TAGS = frozenset({"event_id", "target", "reason", "http_status", "celery_task_id"})


def _scrub_frames(holder: Any) -> None:
    frames = ((holder or {}).get("stacktrace") or {}).get("frames") or []
    for frame in frames:
        frame.pop("vars", None)  # local variables hold whole envelopes


def scrub_event(event: dict[str, Any], hint: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Sentry ``before_send`` body: mask every data-bearing part of the event in place."""
    for exc in (event.get("exception") or {}).get("values") or []:
        if isinstance(exc.get("value"), str):
            exc["value"] = scrub_text(exc["value"])
        _scrub_frames(exc)
    for thread in (event.get("threads") or {}).get("values") or []:
        _scrub_frames(thread)
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        for key in ("message", "formatted"):
            if isinstance(logentry.get(key), str):
                logentry[key] = scrub_text(logentry[key])
        logentry["params"] = []  # ``formatted`` already holds them, scrubbed
    if isinstance(event.get("message"), str):
        event["message"] = scrub_text(event["message"])
    for key in ("extra", "request"):
        if key in event:
            event[key] = scrub_value(event[key])
    contexts = event.get("contexts")
    if isinstance(contexts, dict):
        for name, ctx in contexts.items():
            if name not in _SDK_CONTEXTS:
                contexts[name] = scrub_value(ctx)
    tags = event.get("tags")
    if isinstance(tags, dict):
        for name, value in tags.items():
            if name not in _OUR_TAGS:
                tags[name] = scrub_value(value)
    event.pop("user", None)
    crumbs = event.get("breadcrumbs")
    values = crumbs.get("values") if isinstance(crumbs, dict) else crumbs
    for crumb in values or []:
        scrub_breadcrumb(crumb)
    return event


def _origin(url: str) -> str:
    """Scheme and host only: partner paths carry customer ids."""
    match = re.match(r"^([a-z][a-z0-9+.-]*://[^/?#]*)", url, re.IGNORECASE)
    return _URL_CREDENTIALS.sub(rf"\1:{MASK}@", match.group(1) + "/…") if match else MASK


def scrub_breadcrumb(crumb: dict[str, Any], hint: Any = None) -> dict[str, Any]:
    """Sentry ``before_breadcrumb`` body: breadcrumbs end up in events, so same rules."""
    if isinstance(crumb.get("message"), str):
        crumb["message"] = scrub_text(crumb["message"])
    data = crumb.get("data")
    if isinstance(data, dict):
        if isinstance(data.get("url"), str):
            data["url"] = _origin(data["url"])
        for key in ("http.query", "http.fragment"):
            data.pop(key, None)
        crumb["data"] = scrub_value(data)
    return crumb


# -- logging -----------------------------------------------------------------------------
OUTCOME_LOGGER = "custsync.outcome"  # built from masked parts by outcomes.Result.log
REPORTED_ATTR = "sentry_reported"  # a record whose alert an explicit Sentry report sends
REPORTED: dict[str, Any] = {REPORTED_ATTR: True}  # pass as ``extra=`` to such a log call


class ScrubFilter(logging.Filter):
    """Masks a record's message and traceback before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == OUTCOME_LOGGER and not record.exc_info:
            return True
        message = record.getMessage()
        scrubbed = scrub_text(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            formatter = logging.Formatter()
            record.exc_text = scrub_text(formatter.formatException(record.exc_info))
        return True
